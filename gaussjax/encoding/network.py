"""The encoder: an image -> W+ network whose output lives in the Gaussianized space V.

Shape (NHWC): a 1x1 conv from the image, then one residual block per resolution halving it down to
4x4 (the discriminator's layers, training/discriminator.py: equalised learning rate, blurred
downsampling; the generator's channel widths at each resolution, times `width`); a feature pyramid of the
4x4, 8x8 and 16x16 maps (1x1 lateral convs, top-down sums, as pSp); one small head per W+ row on
the pyramid level of that row's synthesis resolution (coarse rows <= 8 px read the 4x4 level,
medium rows <= 32 px the 8x8 level, fine rows the 16x16 level). Each head average-pools its level
to 2x2 and maps it through two linear layers to an offset delta [w_dim].

The offset is relative to the prior, in V:  v = mu + sigma * delta,  w = degaussianize(v), with mu
and sigma = sqrt(diag Sigma) of the prior the encoder was trained with (kept in the module as
buffers). The heads' last layers start at zero, so an untrained encoder returns the prior's mean
code for every image, and the prior energy applies to its output directly.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from gaussjax.analysis.gaussianize import degaussianize
from gaussjax.networks.stylegan2 import Buffer
from gaussjax.training.discriminator import Conv, DiscriminatorBlock

POOLED = 2  # every head reads its level average-pooled to POOLED x POOLED (4 made the heads
# two thirds of the weights: 784k parameters, a 2.8 MB built-in encoder)
LEVELS = (4, 8, 16)  # the pyramid's resolutions: coarse, medium, fine
BLUR_TAPS = (1, 3, 3, 1)  # the downsampling filter (StyleGAN2's)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """What the encoder is built from (recorded beside its weights).

    Attributes:
      img_resolution, img_channels, num_ws, w_dim: the generator's.
      widths: channels of the backbone at img_resolution, img_resolution / 2, ..., 4.
      fpn_channels: channels of every pyramid level.
      negative_slope: the slope `degaussianize` applies (the mapping network's last activation).
    """

    img_resolution: int
    img_channels: int
    num_ws: int
    w_dim: int
    widths: tuple[int, ...]
    fpn_channels: int
    negative_slope: float = 0.2

    @classmethod
    def for_generator(cls, gen_cfg, width: float = 1.0, fpn_channels: int | None = None):
        """The encoder of a generator: its widths at each resolution times `width`."""
        resolutions = [
            gen_cfg.img_resolution // 2**i for i in range(_stages(gen_cfg.img_resolution) + 1)
        ]
        widths = tuple(max(8, int(round(width * gen_cfg.channels(r)))) for r in resolutions)
        return cls(
            img_resolution=gen_cfg.img_resolution,
            img_channels=gen_cfg.img_channels,
            num_ws=gen_cfg.num_ws,
            w_dim=gen_cfg.w_dim,
            widths=widths,
            fpn_channels=fpn_channels or min(widths[-1], 256),
            negative_slope=gen_cfg.mapping_negative_slope,
        )

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, doc: dict):
        return cls(**{**doc, "widths": tuple(doc["widths"])})

    def row_level(self, row: int) -> int:
        """The pyramid resolution row `row` of W+ reads (LEVELS, at most the image's)."""
        synthesis_res = min(self.img_resolution, 2 ** (2 + row // 2))
        level = 4 if synthesis_res <= 8 else 8 if synthesis_res <= 32 else 16
        return min(level, self.img_resolution)


def _stages(resolution: int) -> int:
    if resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"the encoder needs a power-of-two resolution >= 4, got {resolution}")
    return int(math.log2(resolution)) - 2


class RowHeads(nnx.Module):
    """One two-layer head per W+ row of a level: [B, P, P, C] -> [B, rows, w_dim] offsets."""

    def __init__(self, rows: int, c_in: int, w_dim: int, *, rngs: nnx.Rngs):
        fan_in = POOLED * POOLED * c_in
        init = nnx.initializers.normal(1.0 / math.sqrt(fan_in))
        self.hidden = nnx.Param(init(rngs.params(), (rows, fan_in, w_dim)))
        self.hidden_bias = nnx.Param(jnp.zeros((rows, w_dim)))
        self.out = nnx.Param(jnp.zeros((rows, w_dim, w_dim)))  # zero: starts at the prior mean
        self.out_bias = nnx.Param(jnp.zeros((rows, w_dim)))

    def __call__(self, level):
        flat = _pool(level, level.shape[1] // POOLED).reshape(level.shape[0], -1)
        h = jax.nn.leaky_relu(
            jnp.einsum("bi,rio->bro", flat, self.hidden[...]) + self.hidden_bias[...], 0.2
        )
        return jnp.einsum("bri,rio->bro", h, self.out[...]) + self.out_bias[...]


class Encoder(nnx.Module):
    """images [B, R, R, C] in [-1, 1] -> W+ codes [B, num_ws, w_dim] (module docstring)."""

    def __init__(self, cfg: EncoderConfig, v_mean, v_scale, *, rngs: nnx.Rngs):
        self.cfg = cfg
        _stages(cfg.img_resolution)
        self.v_mean = Buffer(jnp.asarray(v_mean, jnp.float32))  # [w_dim] mu of the prior
        self.v_scale = Buffer(jnp.asarray(v_scale, jnp.float32))  # [w_dim] sqrt(diag Sigma)
        self.from_image = Conv(cfg.img_channels, cfg.widths[0], 1, rngs=rngs)
        self.blocks = nnx.List(
            [
                DiscriminatorBlock(a, b, BLUR_TAPS, rngs=rngs)
                for a, b in zip(cfg.widths[:-1], cfg.widths[1:])
            ]
        )
        self.levels = tuple(r for r in LEVELS if r <= cfg.img_resolution)
        self.lateral = nnx.List(
            [
                Conv(self._width_at(r), cfg.fpn_channels, 1, rngs=rngs, act="linear")
                for r in self.levels
            ]
        )
        rows = [cfg.row_level(row) for row in range(cfg.num_ws)]
        # Only the levels some row reads get heads (a 32 px generator has no fine rows).
        self.head_levels = tuple(i for i, r in enumerate(self.levels) if r in rows)
        self.heads = nnx.List(
            [
                RowHeads(rows.count(self.levels[i]), cfg.fpn_channels, cfg.w_dim, rngs=rngs)
                for i in self.head_levels
            ]
        )

    def _width_at(self, res: int) -> int:
        return self.cfg.widths[int(math.log2(self.cfg.img_resolution // res))]

    def pyramid(self, images) -> list:
        """The levels [B, r, r, fpn_channels] at self.levels, coarse first (top-down sums)."""
        x = self.from_image(images)
        features = {self.cfg.img_resolution: x}
        for block in self.blocks:
            x = block(x)
            features[x.shape[1]] = x
        out, above = [], None
        for r, lateral in zip(self.levels, self.lateral):
            p = lateral(features[r])
            if above is not None:
                p = p + jnp.repeat(jnp.repeat(above, 2, axis=1), 2, axis=2)
            out.append(p)
            above = p
        return out

    def offsets(self, images):
        """delta [B, num_ws, w_dim]: the code in units of the prior's per-dimension spread."""
        levels = self.pyramid(images)
        parts = [head(levels[i]) for head, i in zip(self.heads, self.head_levels)]
        return jnp.concatenate(parts, axis=1)  # rows ascend with the level, as row_level does

    def __call__(self, images):
        v = self.v_mean[...] + self.v_scale[...] * self.offsets(images)
        return degaussianize(v, self.cfg.negative_slope)


def _pool(x, factor: int):
    """[B, H, W, C] -> [B, H / factor, W / factor, C] by averaging."""
    if factor == 1:
        return x
    b, h, w, c = x.shape
    return x.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))
