"""StyleGAN2 generator (official stylegan2-ada-pytorch numerics) as Flax NNX modules, NHWC.

Parameters keep the official storage conventions so conversion is a transpose: dense weights are
stored unscaled and multiplied at run time by `lr_multiplier / sqrt(fan_in)` (biases by
`lr_multiplier`); affine biases already contain the +1; conv kernels are [kh, kw, in, out] in
cross-correlation orientation (the converter flips the official true-convolution conv0 kernels).
"""

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gaussjax.networks import ops
from gaussjax.networks.config import GeneratorConfig

NOISE_MODES = ("const", "random", "none")


class Buffer(nnx.Variable):
    """Non-trainable state that is part of a trained network (w_avg, noise_const)."""


class Dense(nnx.Module):
    """Official FullyConnectedLayer: y = act(x @ (W * lr / sqrt(in)) + b * lr)."""

    def __init__(
        self,
        in_features,
        out_features,
        *,
        rngs,
        activation="linear",
        lr_multiplier=1.0,
        bias_init=0.0,
    ):
        self.weight = nnx.Param(
            jax.random.normal(rngs.params(), (in_features, out_features)) / lr_multiplier
        )
        self.bias = nnx.Param(jnp.full((out_features,), bias_init / lr_multiplier, jnp.float32))
        self.activation = activation
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def __call__(self, x):
        """x: [N, in] -> [N, out] (float32)."""
        y = x @ (self.weight[...] * self.weight_gain)
        return ops.bias_act(y, self.bias[...] * self.bias_gain, act=self.activation)


class MappingNetwork(nnx.Module):
    """z [N, z_dim] (+ one-hot c [N, c_dim]) -> ws [N, num_ws, w_dim]."""

    def __init__(self, cfg: GeneratorConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        if cfg.c_dim > 0:
            self.embed = Dense(cfg.c_dim, cfg.embed_features, rngs=rngs)
        features = [cfg.z_dim + cfg.embed_features] + [cfg.layer_features] * (
            cfg.mapping_layers - 1
        )
        features.append(cfg.w_dim)
        self.layers = nnx.List(
            [
                Dense(
                    fin,
                    fout,
                    rngs=rngs,
                    activation=cfg.mapping_activation,
                    lr_multiplier=cfg.mapping_lr_multiplier,
                )
                for fin, fout in zip(features[:-1], features[1:])
            ]
        )
        self.w_avg = Buffer(jnp.zeros((cfg.w_dim,), jnp.float32))

    def __call__(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None):
        """Args:
          z: [N, z_dim] (may be [N, 0]).
          c: [N, c_dim] class labels (one-hot), required iff c_dim > 0.
          truncation_psi: w_avg + psi * (w - w_avg); 1 disables truncation.
          truncation_cutoff: truncate only ws[:, :cutoff] (None: all).
        Returns:
          ws [N, num_ws, w_dim] float32.
        """
        x = self._embed_inputs(z, c)
        for layer in self.layers:
            x = layer(x)
        ws = jnp.broadcast_to(x[:, None, :], (x.shape[0], self.cfg.num_ws, x.shape[1]))
        if truncation_psi == 1:
            return ws
        w_avg = self.w_avg[...]
        truncated = w_avg + truncation_psi * (ws - w_avg)
        if truncation_cutoff is None:
            return truncated
        layer_mask = (jnp.arange(self.cfg.num_ws) < truncation_cutoff)[None, :, None]
        return jnp.where(layer_mask, truncated, ws)

    def _embed_inputs(self, z, c):
        cfg = self.cfg
        parts = []
        if cfg.z_dim > 0:
            _check_shape("z", z, (cfg.z_dim,))
            parts.append(ops.normalize_2nd_moment(jnp.asarray(z, jnp.float32)))
        if cfg.c_dim > 0:
            if c is None:
                raise ValueError(
                    f"this generator is conditional: pass class labels c of shape [N, {cfg.c_dim}]"
                )
            _check_shape("c", c, (cfg.c_dim,))
            parts.append(ops.normalize_2nd_moment(self.embed(jnp.asarray(c, jnp.float32))))
        return jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


class SynthesisLayer(nnx.Module):
    """Modulated 3x3 conv (+ optional 2x upsampling) -> noise -> bias, lrelu, gain, clamp."""

    def __init__(self, in_ch, out_ch, w_dim, resolution, cfg: GeneratorConfig, *, rngs, up=False):
        self.affine = Dense(w_dim, in_ch, rngs=rngs, bias_init=1.0)
        self.weight = nnx.Param(jax.random.normal(rngs.params(), (3, 3, in_ch, out_ch)))
        self.bias = nnx.Param(jnp.zeros((out_ch,), jnp.float32))
        if cfg.use_noise:
            self.noise_strength = nnx.Param(jnp.zeros((), jnp.float32))
            self.noise_const = Buffer(jax.random.normal(rngs.params(), (resolution, resolution)))
        self.up = up
        self.use_noise = cfg.use_noise
        self.conv_clamp = cfg.conv_clamp
        self.filter_taps = cfg.resample_filter

    def __call__(self, x, w, noise, gain=1.0):
        """x: [N, H, W, in]; w: [N, w_dim]; noise: None or broadcastable to [N, H', W', 1] (unscaled)."""
        styles = self.affine(w)
        x = ops.modulated_conv2d(
            x, self.weight[...], styles, up=self.up, f=ops.setup_filter(self.filter_taps)
        )
        if noise is not None and self.use_noise:
            x = x + (noise * self.noise_strength[...]).astype(x.dtype)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return ops.bias_act(x, self.bias[...], act="lrelu", gain=gain, clamp=clamp)


class ToRGBLayer(nnx.Module):
    """Modulated 1x1 conv without demodulation, bias and clamp; output float32."""

    def __init__(self, in_ch, out_ch, w_dim, cfg: GeneratorConfig, *, rngs):
        self.affine = Dense(w_dim, in_ch, rngs=rngs, bias_init=1.0)
        self.weight = nnx.Param(jax.random.normal(rngs.params(), (1, 1, in_ch, out_ch)))
        self.bias = nnx.Param(jnp.zeros((out_ch,), jnp.float32))
        self.weight_gain = 1.0 / math.sqrt(in_ch)
        self.conv_clamp = cfg.conv_clamp

    def __call__(self, x, w):
        styles = self.affine(w) * self.weight_gain
        x = ops.modulated_conv2d(x, self.weight[...], styles, demodulate=False)
        return ops.bias_act(x, self.bias[...], clamp=self.conv_clamp).astype(jnp.float32)


class SynthesisState(NamedTuple):
    """What flows between synthesis layers; the synthesis network can stop and start at any layer.

    Attributes:
      x: [N, H, W, C] the activation after the layer.
      img: [N, R, R, img_channels] float32 RGB accumulator of the skip architecture as of the last
        finished block, or None (other architectures, or an accumulator restarted at the entry).
      residual: [N, H, W, C] the resnet skip branch of the block input, after a resnet block's conv0
        layer only (the block's conv1 adds it); None otherwise.
    """

    x: jax.Array
    img: jax.Array | None = None
    residual: jax.Array | None = None


class SynthesisBlock(nnx.Module):
    """One resolution: (const | conv0 up) -> conv1 -> [torgb]; resnet adds a 1x1 up skip.

    A block is two synthesis layers (b4: the constant input and conv1), run by `conv0_step` and
    `conv1_step` so the network can enter and leave between them.
    """

    def __init__(self, res, cfg: GeneratorConfig, *, rngs):
        out_ch = cfg.channels(res)
        self.res = res
        self.architecture = cfg.architecture
        self.is_first = res == 4
        self.has_torgb = cfg.architecture == "skip" or res == cfg.img_resolution
        self.filter_taps = cfg.resample_filter
        if self.is_first:
            self.const = nnx.Param(jax.random.normal(rngs.params(), (4, 4, out_ch)))
        else:
            in_ch = cfg.channels(res // 2)
            self.conv0 = SynthesisLayer(in_ch, out_ch, cfg.w_dim, res, cfg, rngs=rngs, up=True)
            if cfg.architecture == "resnet":
                self.skip = nnx.Param(jax.random.normal(rngs.params(), (1, 1, in_ch, out_ch)))
        self.conv1 = SynthesisLayer(out_ch, out_ch, cfg.w_dim, res, cfg, rngs=rngs)
        if self.has_torgb:
            self.torgb = ToRGBLayer(out_ch, cfg.img_channels, cfg.w_dim, cfg, rngs=rngs)

    def input_state(self, batch, dtype, const_input=None) -> SynthesisState:
        """b4's input: the learned constant, or `const_input` [N, 4, 4, C] in its place."""
        if const_input is None:
            x = jnp.broadcast_to(self.const[...].astype(dtype), (batch,) + self.const.shape)
        else:
            _check_shape("const_input", const_input, self.const.shape)
            x = jnp.asarray(const_input).astype(dtype)
        return SynthesisState(x)

    def conv0_step(self, state: SynthesisState, w, noise) -> SynthesisState:
        """The upsampling layer. w: [N, w_dim]; noise: None or [.., H, W, 1]."""
        residual = None
        if self.architecture == "resnet":
            residual = self._skip(state.x) * jnp.asarray(math.sqrt(0.5), state.x.dtype)
        return SynthesisState(self.conv0(state.x, w, noise), state.img, residual)

    def conv1_step(self, state: SynthesisState, w, w_rgb, noise) -> SynthesisState:
        """The second layer, then the block's RGB output. w, w_rgb: [N, w_dim] (conv1, torgb)."""
        if state.residual is not None:
            x = state.residual + self.conv1(state.x, w, noise, gain=math.sqrt(0.5))
        else:
            x = self.conv1(state.x, w, noise)
        img = state.img
        if img is not None:
            img = ops.upsample2d(img, ops.setup_filter(self.filter_taps))
        if self.has_torgb:
            y = self.torgb(x, w_rgb)
            img = y if img is None else img + y
        return SynthesisState(x, img)

    def _skip(self, x):
        kernel = self.skip[...] / math.sqrt(self.skip.shape[2])
        return ops.upsample2d(ops.conv2d(x, kernel, padding=0), ops.setup_filter(self.filter_taps))


class SynthesisNetwork(nnx.Module):
    """W+ codes [N, num_ws, w_dim] -> images [N, H, W, C] float32, nominal range [-1, 1].

    Synthesis layer j (0 <= j < cfg.num_layers) is b4.conv1 for j = 0, then conv0 and conv1 of the
    k-th block for j = 2k-1 and 2k: the order of `cfg.noise_resolutions`. Layer j's conv reads
    ws[:, j]; the torgb after layer 2k reads ws[:, 2k+1] (shared with the next block's conv0, as
    in the official code). The network can return the state after any layer (`stop_layer`) and
    continue from a given state (`start_layer`, `start_state`).
    """

    def __init__(self, cfg: GeneratorConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.blocks = nnx.List(
            [SynthesisBlock(res, cfg, rngs=rngs) for res in cfg.block_resolutions]
        )

    def __call__(
        self,
        ws,
        noise_mode="const",
        key=None,
        noise=None,
        dtype=jnp.float32,
        *,
        const_input=None,
        start_layer=None,
        start_state=None,
        stop_layer=None,
        remat=False,
    ):
        """Args:
          ws: [N, num_ws, w_dim]. Rows read only by skipped layers are ignored.
          noise_mode: 'const' (stored noise maps), 'random' (fresh maps from `key`, independent per
            layer) or 'none'. Ignored when `noise` is given.
          key: PRNG key for 'random'.
          noise: optional explicit per-layer noise maps, one per entry of `cfg.noise_resolutions`,
            each broadcastable to [N, res, res, 1]; they replace the stored maps (and are scaled by the
            learned noise strength, as the official projector's optimised noise buffers are).
          dtype: compute dtype of activations (float32 reference; bfloat16 for accelerators). Styles,
            demodulation and the image skip path stay float32.
          const_input: [N, 4, 4, C] replaces the learned 4x4 constant.
          start_layer, start_state: run layers start_layer+1, ... from `start_state`, the state after
            layer `start_layer` (a SynthesisState whose `img` None restarts the RGB accumulator).
          stop_layer: return the SynthesisState after this layer instead of the image.
          remat: recompute each synthesis block's activations in the backward pass
            (`jax.checkpoint`) instead of keeping them: less memory per image, about one more
            forward pass of compute.
        Returns:
          Images [N, img_resolution, img_resolution, img_channels] float32, or a SynthesisState.
        """
        cfg = self.cfg
        _check_shape("ws", ws, (cfg.num_ws, cfg.w_dim))
        ws = jnp.asarray(ws, jnp.float32)
        noises = self._noise_inputs(ws.shape[0], noise_mode, key, noise)
        if (start_layer is None) != (start_state is None):
            raise ValueError("start_layer and start_state go together")
        first = 0 if start_layer is None else start_layer + 1
        last = cfg.num_layers - 1 if stop_layer is None else stop_layer
        if not -1 <= first - 1 <= last < cfg.num_layers:
            raise ValueError(
                f"layers must satisfy start_layer < stop_layer < {cfg.num_layers}, "
                f"got {start_layer}, {stop_layer}"
            )
        if first == 0:
            state = self.blocks[0].input_state(ws.shape[0], dtype, const_input)
        else:
            state = start_state._replace(
                x=start_state.x.astype(dtype),
                residual=None
                if start_state.residual is None
                else start_state.residual.astype(dtype),
            )
        for block_first, block_last in _block_spans(first, last):
            run = functools.partial(self._layers, block_first, block_last)
            state = (jax.checkpoint(run) if remat else run)(state, ws, noises)
        return state if stop_layer is not None else state.img

    def _layers(self, first, last, state, ws, noises) -> SynthesisState:
        for j in range(first, last + 1):
            state = self._layer(j, state, ws, noises[j])
        return state

    def _layer(self, j, state, ws, noise) -> SynthesisState:
        block = self.blocks[(j + 1) // 2]
        if j % 2 == 1:
            return block.conv0_step(state, ws[:, j], noise)
        return block.conv1_step(state, ws[:, j], ws[:, j + 1], noise)

    def _noise_inputs(self, batch, noise_mode, key, noise):
        cfg = self.cfg
        resolutions = cfg.noise_resolutions
        if noise is not None:
            if len(noise) != len(resolutions):
                raise ValueError(f"expected {len(resolutions)} noise maps, got {len(noise)}")
            return [_noise_nhwc(n, r) for n, r in zip(noise, resolutions)]
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if noise_mode == "none" or not cfg.use_noise:
            return [None] * len(resolutions)
        if noise_mode == "const":
            return [
                _noise_nhwc(layer.noise_const[...], layer.noise_const.shape[0])
                for layer in self.layers()
            ]
        if key is None:
            raise ValueError("noise_mode='random' needs a PRNG key (key=jax.random.key(seed))")
        keys = jax.random.split(key, len(resolutions))
        return [jax.random.normal(k, (batch, r, r, 1)) for k, r in zip(keys, resolutions)]

    def layers(self) -> list[SynthesisLayer]:
        """The noise-carrying layers in synthesis order (b4.conv1, b8.conv0, b8.conv1, ...)."""
        out = []
        for block in self.blocks:
            if not block.is_first:
                out.append(block.conv0)
            out.append(block.conv1)
        return out


class Generator(nnx.Module):
    """StyleGAN2 generator: `.mapping` and `.synthesis` submodules plus its `cfg`."""

    def __init__(self, cfg: GeneratorConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.mapping = MappingNetwork(cfg, rngs=rngs)
        self.synthesis = SynthesisNetwork(cfg, rngs=rngs)

    # The official Generator's attributes.
    z_dim = property(lambda self: self.cfg.z_dim)
    c_dim = property(lambda self: self.cfg.c_dim)
    w_dim = property(lambda self: self.cfg.w_dim)
    num_ws = property(lambda self: self.cfg.num_ws)
    img_resolution = property(lambda self: self.cfg.img_resolution)
    img_channels = property(lambda self: self.cfg.img_channels)

    def __call__(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, **synthesis_kwargs):
        """z [N, z_dim] (+ c [N, c_dim]) -> images [N, H, W, C]; see MappingNetwork / SynthesisNetwork."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)


def _block_spans(first, last):
    """(first, last) layer index pairs of the blocks that layers first..last touch, clipped.

    Block 0 is layer 0; block k >= 1 is layers 2k - 1 (conv0) and 2k (conv1).
    """
    spans = []
    j = first
    while j <= last:
        end = min(last, 2 * ((j + 1) // 2))
        spans.append((j, end))
        j = end + 1
    return spans


def _noise_nhwc(noise, res):
    """[res, res] | [N, res, res] | [N, res, res, 1] -> broadcastable [.., res, res, 1]."""
    noise = jnp.asarray(noise)
    if noise.ndim == 2:
        noise = noise[None, :, :, None]
    elif noise.ndim == 3:
        noise = noise[..., None]
    if noise.shape[1:] != (res, res, 1):
        raise ValueError(f"noise map of shape {noise.shape} does not fit resolution {res}")
    return noise


def _check_shape(name, x, trailing: Sequence[int]):
    if x is None or tuple(np.shape(x)[1:]) != tuple(trailing) or np.ndim(x) != len(trailing) + 1:
        raise ValueError(
            f"{name} must have shape [N, {', '.join(map(str, trailing))}], "
            f"got {None if x is None else tuple(np.shape(x))}"
        )


class PureGenerator:
    """The pure functional form of a Generator: `nnx.split` once, merge inside jitted code.

    `params` is the nnx.State returned by `split`; every method is a pure function of its arguments,
    so it can be used under `jax.jit`, `jax.vmap` and `jax.grad`:

        fns, params = PureGenerator.split(G)
        images = jax.jit(fns.synthesis, static_argnames="noise_mode")(params, ws)
    """

    def __init__(self, graphdef):
        self.graphdef = graphdef

    @classmethod
    def split(cls, generator: Generator):
        graphdef, params = nnx.split(generator)
        return cls(graphdef), params

    def merge(self, params) -> Generator:
        return nnx.merge(self.graphdef, params)

    def mapping(self, params, z, c=None, truncation_psi=1.0, truncation_cutoff=None):
        """z [N, z_dim], c [N, c_dim] | None -> ws [N, num_ws, w_dim]."""
        return self.merge(params).mapping(z, c, truncation_psi, truncation_cutoff)

    def synthesis(
        self, params, ws, noise_mode="const", key=None, noise=None, dtype=jnp.float32, **entry_exit
    ):
        """ws [N, num_ws, w_dim] -> images [N, H, W, C]; `entry_exit`: const_input, start_layer,
        start_state, stop_layer (see SynthesisNetwork.__call__)."""
        return self.merge(params).synthesis(
            ws, noise_mode=noise_mode, key=key, noise=noise, dtype=dtype, **entry_exit
        )

    def __hash__(self):
        return hash(self.graphdef)

    def __eq__(self, other):
        return isinstance(other, PureGenerator) and self.graphdef == other.graphdef


@functools.partial(jax.jit, static_argnums=(0,))
def jit_mapping(fns: PureGenerator, params, z, c=None):
    """fns.mapping(params, z, c) as one compiled program, cached per generator structure (fns is
    static and hashes by its graphdef; a jit of the bound method would trace anew on every call)."""
    return fns.mapping(params, z, c)


@functools.partial(jax.jit, static_argnums=(0,))
def jit_synthesis(fns: PureGenerator, params, ws):
    """fns.synthesis(params, ws) (const noise) as one compiled program, cached as jit_mapping."""
    return fns.synthesis(params, ws)
