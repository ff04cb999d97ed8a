"""Latent spaces an image can be inverted into. The engine only talks to the `LatentSpace` protocol.

A space owns the per-image variables that are optimised and says how they become what the
synthesis network receives (`SynthesisInputs`: W+ codes, optionally a start state at a layer, a
replacement of the 4x4 constant, noise maps are the engine's). It also names the W rows the
Gaussian prior scores, adds its own loss terms, picks which variables get the latent-noise ramp and
brings its own default hyperparameters.

Spaces (`SPACES`):
  w, wplus     one w / one w per layer (NVIDIA's projector; Wulff & Torralba's prior applies).
  z, zplus     one z / one z per W+ row, each through the full mapping network inside the loss. The
               mapping's input PixelNorm keeps every row on the sphere of radius sqrt(z_dim)
               (Katsumata et al.'s hyperspherical constraint; papers note §2.2).
  f_<space>    F/Z+ and its ablations: the activation after `feature_layer` (default: the first,
               upsampling conv of the 16x16 block) is optimised jointly with the latent, the RGB
               accumulator restarts there, and mean((F - F0)^2) keeps F near its initialisation.
  sphinx       SPHInX: the parameters of a style head (-> W+, bypassing the mapping) and a content
               head (-> the 4x4 constant), plus freely optimised noise maps (heads.py).

Every function here works on ONE image; the engine vmaps them over a batch.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gaussjax.inversion import heads
from gaussjax.networks.stylegan2 import SynthesisState


@dataclasses.dataclass(frozen=True)
class SpaceOptions:
    """Options of the spaces that have them (recorded in the run settings and in result files).

    Attributes:
      truncation_psi, truncation_cutoff: Z/Z+ rows are mapped with w_avg + psi (w - w_avg) on rows
        < cutoff (Katsumata et al.'s public code: 0.7 on the first 8 rows for F/Z+).
      feature_layer: synthesis layer whose output is F (None: the first conv of the 16x16 block,
        or the last layer but one of smaller generators).
      feature_init: name in FEATURE_INITIALISERS (how F0 is made).
    """

    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None
    feature_layer: int | None = None
    feature_init: str = "mean_latent"

    @classmethod
    def from_config(cls, cfg) -> "SpaceOptions":
        """The options of an InversionConfig (which has a field of each name)."""
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class SpaceContext:
    """What spaces need of the generator and the latent statistics.

    Attributes:
      gen_fns: the PureGenerator (mapping and synthesis as pure functions of the params).
      gen_cfg: its GeneratorConfig.
      w_mean: [w_dim] mean of mapped samples (the official projector's w_avg).
      w_std: scalar spread of mapped samples (scales W's latent-noise ramp).
      class_label: [c_dim] one-hot label for conditional generators (Z spaces map with it), or None.
      options: SpaceOptions.
    """

    gen_fns: Any
    gen_cfg: Any
    w_mean: jax.Array
    w_std: float
    class_label: jax.Array | None = None
    options: SpaceOptions = SpaceOptions()


class SynthesisInputs(NamedTuple):
    """What one image's synthesis receives: ws [num_ws, w_dim]; optionally the layer to start after
    and the state there (unbatched: x [H, W, C], ...), a [4, 4, C] replacement of the constant, and
    the noise maps [r, r] of a space that optimises its own (they take precedence over the engine's)."""

    ws: jax.Array
    start_layer: int | None = None
    start_state: SynthesisState | None = None
    const_input: jax.Array | None = None
    noise: list | None = None


class LatentSpace:
    """The protocol. Subclasses set `name`, `defaults` and override the methods they need.

    `defaults` maps InversionConfig fields to this space's preferred values; explicit settings win.
    Variables are a dict pytree; `constants` (per image, never optimised) carry e.g. F0.
    """

    name: str = ""
    defaults: dict = {}
    # Variables whose names start with one of these keep a constant learning rate under the
    # "official" schedule (see engine.make_optimizer); the rest follow the schedule.
    constant_rate_prefixes: tuple[str, ...] = ()
    owns_noise = False  # True: the space's variables include its noise maps (no engine noise)

    def __init__(self, ctx: SpaceContext):
        self.ctx = ctx

    def init(self, gen_params, key, target) -> tuple[dict, dict]:
        """(variables, constants) of one image. key: PRNG key; target: [H, W, C] in [-1, 1]."""
        raise NotImplementedError

    def synthesis_inputs(self, gen_params, variables, constants, key=None) -> SynthesisInputs:
        """key: a fresh PRNG key at every optimisation step, None when the result is rendered."""
        raise NotImplementedError

    def prior_rows(self, gen_params, variables) -> jax.Array:
        """[K, w_dim] W rows scored by the Gaussianized prior (summed)."""
        return self.synthesis_inputs(gen_params, variables, {}).ws

    def extra_terms(self, variables, constants) -> dict:
        """name -> scalar; each is weighted by the InversionConfig field `<name>_weight`."""
        return {}

    def project(self, variables):
        """Applied after every optimiser step (e.g. back onto a constraint set); default: nothing."""
        return variables

    def perturb(self, variables, key, scale):
        """The latent-noise ramp: N(0, scale^2) on every leaf of `variables` (scale is a fraction of
        `noise_unit`)."""
        return _add_noise(variables, key, scale)

    @property
    def noise_unit(self) -> float:
        """The natural spread of the variables (the ramp is a fraction of it)."""
        return self.ctx.w_std

    def to_arrays(self, variables, constants) -> dict[str, np.ndarray]:
        """The native latents to save (host arrays, no batch axis)."""
        return {k: np.asarray(v) for k, v in variables.items()}

    def from_arrays(self, arrays: dict) -> tuple[dict, dict]:
        """Inverse of `to_arrays` (for rendering and editing saved results)."""
        return {k: jnp.asarray(arrays[k]) for k in self.variable_keys}, {}

    variable_keys: tuple[str, ...] = ()

    def record(self) -> dict:
        """The space's name and options as saved in result files (see `restore_space`)."""
        label = self.ctx.class_label
        return {
            "name": self.name,
            **dataclasses.asdict(self.ctx.options),
            "class_idx": None if label is None else int(np.argmax(np.asarray(label))),
        }


def render(
    space: LatentSpace,
    gen_params,
    variables,
    constants=None,
    key=None,
    noise=None,
    *,
    dtype=jnp.float32,
    remat=False,
):
    """One image from a space's variables: (ws [num_ws, w_dim], image [H, W, C] float32).

    Args:
      space: the space the variables belong to.
      gen_params: generator state.
      variables: the space's variables for one image (no batch axis).
      constants: per-image constants from `init` ({} when rendering a saved result).
      key: the per-step PRNG key during optimisation; None for the deterministic render.
      noise: optional per-layer noise maps [res, res] (optimised ones), else the stored constants.
      dtype, remat: the synthesis compute dtype and rematerialisation (SynthesisNetwork).
    """
    inputs = space.synthesis_inputs(gen_params, variables, constants or {}, key)
    ws, state, const = jax.tree.map(
        lambda x: x[None], (inputs.ws, inputs.start_state, inputs.const_input)
    )
    image = space.ctx.gen_fns.synthesis(
        gen_params,
        ws,
        noise=noise if inputs.noise is None else inputs.noise,
        start_layer=inputs.start_layer,
        start_state=state,
        const_input=const,
        dtype=dtype,
        remat=remat,
    )[0]
    return inputs.ws, image


def restore_space(record: dict, gen_fns, gen_cfg) -> LatentSpace:
    """The space of a saved result, from its `record()`; enough to render and edit its variables."""
    record = dict(record)
    name, class_idx = record.pop("name"), record.pop("class_idx", None)
    label = None if class_idx is None else jnp.asarray(gen_cfg.class_labels(class_idx, 1)[0])
    ctx = SpaceContext(
        gen_fns, gen_cfg, jnp.zeros((gen_cfg.w_dim,)), 1.0, label, SpaceOptions(**record)
    )
    return make_space(name, ctx)


def to_sphere(z):
    """[..., D] rows onto the sphere of radius sqrt(D): the mapping network's input PixelNorm."""
    return z * jax.lax.rsqrt(jnp.mean(jnp.square(z), axis=-1, keepdims=True) + 1e-8)


def _add_noise(tree, key, std):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    noisy = [x + std * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, noisy)


class WSpace(LatentSpace):
    """One w [w_dim] for every layer, starting at w_avg (NVIDIA's projector)."""

    name, variable_keys = "w", ("w",)

    def init(self, gen_params, key, target):
        return {"w": self.ctx.w_mean}, {}

    def synthesis_inputs(self, gen_params, variables, constants, key=None):
        return SynthesisInputs(
            jnp.broadcast_to(variables["w"], (self.ctx.gen_cfg.num_ws, self.ctx.gen_cfg.w_dim))
        )

    def prior_rows(self, gen_params, variables):
        return variables["w"][None]


class WPlusSpace(LatentSpace):
    """One w per layer [num_ws, w_dim], starting at w_avg."""

    name, variable_keys = "wplus", ("wplus",)

    def init(self, gen_params, key, target):
        return {
            "wplus": jnp.broadcast_to(
                self.ctx.w_mean, (self.ctx.gen_cfg.num_ws, self.ctx.gen_cfg.w_dim)
            )
        }, {}

    def synthesis_inputs(self, gen_params, variables, constants, key=None):
        return SynthesisInputs(variables["wplus"])


# Katsumata et al.'s public code: Adam 0.01 at a constant rate, no latent-noise ramp.
_HYPERSPHERE_DEFAULTS = {
    "learning_rate": 0.01,
    "lr_schedule": "constant",
    "latent_noise_factor": 0.0,
}


class ZPlusSpace(LatentSpace):
    """One z per W+ row [num_ws, z_dim]; row l renders with row l of mapping(z_l).

    The rows start from one shared random z on the sphere (a coherent sample of the generator).
    """

    name, variable_keys = "zplus", ("zplus",)
    # The public F/Z+ code truncates the first 8 rows with psi 0.7 (pass truncation_psi=1 to turn off).
    defaults = {**_HYPERSPHERE_DEFAULTS, "truncation_psi": 0.7, "truncation_cutoff": 8}
    rows_per_code = None  # None: one z per W+ row

    def __init__(self, ctx):
        super().__init__(ctx)
        if ctx.gen_cfg.c_dim > 0 and ctx.class_label is None:
            raise ValueError(
                f"the {self.name} space maps z inside the loss: a conditional generator "
                "needs a class (class_idx)"
            )

    def init(self, gen_params, key, target):
        cfg = self.ctx.gen_cfg
        z = to_sphere(jax.random.normal(key, (cfg.z_dim,)))
        rows = cfg.num_ws if self.rows_per_code is None else self.rows_per_code
        return {self.name: jnp.broadcast_to(z, (rows, cfg.z_dim))}, {}

    def mapped_rows(self, gen_params, z_rows):
        """[K, z_dim] -> [K, w_dim]: row k is row k of the (truncated) mapping of z_k."""
        ctx, opts = self.ctx, self.ctx.options
        c = (
            None
            if ctx.class_label is None
            else jnp.broadcast_to(ctx.class_label, (z_rows.shape[0],) + ctx.class_label.shape)
        )
        ws = ctx.gen_fns.mapping(
            gen_params,
            z_rows,
            c,
            truncation_psi=opts.truncation_psi,
            truncation_cutoff=opts.truncation_cutoff,
        )
        rows = jnp.arange(z_rows.shape[0])
        return ws[rows, rows] if z_rows.shape[0] > 1 else ws[0]

    def synthesis_inputs(self, gen_params, variables, constants, key=None):
        return SynthesisInputs(self.mapped_rows(gen_params, variables[self.name]))

    @property
    def noise_unit(self):
        return 1.0  # z ~ N(0, I)

    def project(self, variables):
        """Rows back onto the sphere of radius sqrt(z_dim). Renders are unchanged (the mapping's
        PixelNorm sees the same direction); the optimiser's steps keep their scale."""
        return {**variables, self.name: to_sphere(variables[self.name])}

    def prior_rows(self, gen_params, variables):
        return self.mapped_rows(gen_params, variables[self.name])


class ZSpace(ZPlusSpace):
    """One z [1, z_dim] for every layer (the mapping's PixelNorm keeps it on the sphere)."""

    name, variable_keys = "z", ("z",)
    defaults = _HYPERSPHERE_DEFAULTS
    rows_per_code = 1

    def prior_rows(self, gen_params, variables):
        return self.mapped_rows(gen_params, variables["z"])[:1]


def default_feature_layer(gen_cfg) -> int:
    """The first (upsampling) conv of the 16x16 block, F/Z+'s F; the last layer but one below 16 px."""
    if gen_cfg.img_resolution >= 16:
        return gen_cfg.noise_resolutions.index(16)
    return gen_cfg.num_layers - 2


def mean_latent_features(space, gen_params, key, target) -> SynthesisState:
    """F0 from the forward pass of the mean latent w_avg (constant noise). A documented deviation:
    the paper initialises F with a trained encoder of the target, which we do not have."""
    ctx = space.ctx
    ws = jnp.broadcast_to(ctx.w_mean, (1, ctx.gen_cfg.num_ws, ctx.gen_cfg.w_dim))
    state = ctx.gen_fns.synthesis(gen_params, ws, stop_layer=space.feature_layer)
    return jax.tree.map(lambda x: x[0], state._replace(img=None))


# name -> fn(space, gen_params, key, target [H, W, C]) -> unbatched SynthesisState (img None).
# An encoder-style initialiser registers here.
FEATURE_INITIALISERS: dict[str, Callable] = {"mean_latent": mean_latent_features}


class WithFeatures(LatentSpace):
    """F/Z+ (and the ablations f_w, f_wplus, f_z): a latent space plus the activation F after
    `feature_layer`, optimised jointly. Synthesis starts after that layer from F with the RGB
    accumulator restarted, so the latent rows of earlier layers have no effect. F0, F's
    initialisation, is kept as a constant; the term `feature_reg` = mean((F - F0)^2)."""

    def __init__(self, ctx, latent_space: LatentSpace):
        super().__init__(ctx)
        self.latent = latent_space
        self.name = f"f_{latent_space.name}"
        self.defaults = _feature_space_defaults(latent_space.defaults)
        self.feature_layer = ctx.options.feature_layer
        if self.feature_layer is None:
            self.feature_layer = default_feature_layer(ctx.gen_cfg)
        if not 0 <= self.feature_layer < ctx.gen_cfg.num_layers - 1:
            raise ValueError(
                f"feature_layer must be in [0, {ctx.gen_cfg.num_layers - 2}], got {self.feature_layer}"
            )
        if ctx.options.feature_init not in FEATURE_INITIALISERS:
            raise ValueError(
                f"unknown feature_init {ctx.options.feature_init!r}; "
                f"choose from {sorted(FEATURE_INITIALISERS)}"
            )
        self.variable_keys = latent_space.variable_keys + ("f", "f_residual")

    def init(self, gen_params, key, target):
        latent_key, feature_key = jax.random.split(key)
        variables, constants = self.latent.init(gen_params, latent_key, target)
        f0 = FEATURE_INITIALISERS[self.ctx.options.feature_init](
            self, gen_params, feature_key, target
        )
        features = _feature_arrays(f0)
        return {**variables, **features}, {**constants, "f0": features}

    def synthesis_inputs(self, gen_params, variables, constants, key=None):
        ws = self.latent.synthesis_inputs(gen_params, variables, constants, key).ws
        state = SynthesisState(variables["f"], None, variables.get("f_residual"))
        return SynthesisInputs(ws, self.feature_layer, state)

    def prior_rows(self, gen_params, variables):
        return self.latent.prior_rows(gen_params, variables)

    def extra_terms(self, variables, constants):
        f0 = constants["f0"]
        sq = [jnp.sum(jnp.square(variables[k] - f0[k])) for k in f0]
        return {"feature_reg": sum(sq) / sum(f0[k].size for k in f0)}

    def record(self):
        return {**super().record(), "feature_layer": self.feature_layer}

    def project(self, variables):
        return {
            **variables,
            **self.latent.project({k: variables[k] for k in self.latent.variable_keys}),
        }

    def perturb(self, variables, key, scale):
        """The ramp (off by default) moves the latent only, not F."""
        latent = {k: variables[k] for k in self.latent.variable_keys}
        return {**variables, **self.latent.perturb(latent, key, scale)}

    def from_arrays(self, arrays):
        keys = [k for k in self.variable_keys if k in arrays]
        return {k: jnp.asarray(arrays[k]) for k in keys}, {}


def _feature_space_defaults(latent_defaults: dict) -> dict:
    """F/Z+'s public code: MSE + 10 LPIPS + 10 mean((F - F0)^2), Adam 0.01 constant, 1200 steps."""
    return {
        **latent_defaults,
        **_HYPERSPHERE_DEFAULTS,
        "num_steps": 1200,
        "lpips_weight": 10.0,
        "feature_reg_weight": 10.0,
    }


def _feature_arrays(state: SynthesisState) -> dict:
    """F as variables: the activation, plus the resnet skip branch when F is a resnet conv0 output."""
    out = {"f": state.x}
    if state.residual is not None:
        out["f_residual"] = state.residual
    return out


class SphinxSpace(LatentSpace):
    """SPHInX (papers note §3): per image, the parameters of the style head (its output is the W+
    code; the mapping network is bypassed), of the content head (its output replaces the 4x4
    constant) and the noise maps, optimised freely (no regulariser, no renormalisation).

    Vicinal sampling: every optimisation step feeds both heads fresh Gaussian inputs, z
    [num_ws, w_dim] and s [4, 4, 8], so they learn to map a whole neighbourhood to the target
    (our reading of the paper's "vicinal regularization", as in the public code). The result
    renders from the mean input (z = 0, s = 0).
    """

    name = "sphinx"
    # The public code: MSE + 1.5 LPIPS, Adam 1e-3 with the ramp schedule on the style head only,
    # 5000 steps; no prior and no latent-noise ramp (the vicinal inputs take its place).
    defaults = {
        "num_steps": 5000,
        "learning_rate": 1e-3,
        "lr_schedule": "official",
        "latent_noise_factor": 0.0,
        "lpips_weight": 1.5,
        "prior_weight": 0.0,
    }
    constant_rate_prefixes = ("content_", "noise_")
    owns_noise = True

    def __init__(self, ctx):
        super().__init__(ctx)
        cfg = ctx.gen_cfg
        self.noise_keys = (
            tuple(f"noise_{j:02d}" for j in range(cfg.num_layers)) if cfg.use_noise else ()
        )
        self.const_channels = cfg.channels(4)
        shapes = jax.eval_shape(lambda k: self._heads(k), jax.random.key(0))
        self.variable_keys = tuple(shapes) + self.noise_keys

    def _heads(self, key):
        style_key, content_key = jax.random.split(key)
        cfg = self.ctx.gen_cfg
        return {
            **heads.init_style_head(style_key, cfg.num_ws, cfg.w_dim),
            **heads.init_content_head(content_key, self.const_channels),
        }

    def init(self, gen_params, key, target):
        head_key, noise_key = jax.random.split(key)
        resolutions = self.ctx.gen_cfg.noise_resolutions
        noise = heads.split_draw(
            noise_key, {name: (r, r) for name, r in zip(self.noise_keys, resolutions)}
        )
        return {**self._heads(head_key), **noise}, {}

    def synthesis_inputs(self, gen_params, variables, constants, key=None):
        cfg = self.ctx.gen_cfg
        z_shape, s_shape = (cfg.num_ws, cfg.w_dim), (4, 4, heads.CONTENT_CODE)
        size = math.prod(z_shape)
        if key is None:
            flat = jnp.zeros(size + math.prod(s_shape))
        else:  # one draw for both inputs: every RNG call is costly to compile
            flat = jax.random.normal(key, (size + math.prod(s_shape),))
        z, s = flat[:size].reshape(z_shape), flat[size:].reshape(s_shape)
        noise = [variables[k] for k in self.noise_keys] if self.noise_keys else None
        return SynthesisInputs(
            heads.style_head(variables, z),
            const_input=heads.content_head(variables, s),
            noise=noise,
        )

    def prior_rows(self, gen_params, variables):
        return self.synthesis_inputs(gen_params, variables, {}).ws


_BASE_SPACES = {cls.name: cls for cls in (WSpace, WPlusSpace, ZSpace, ZPlusSpace)}
_OTHER_SPACES = {cls.name: cls for cls in (SphinxSpace,)}  # no F variant
SPACES = tuple(_BASE_SPACES) + tuple(f"f_{name}" for name in _BASE_SPACES) + tuple(_OTHER_SPACES)
_SPACE_CLASSES = {**_BASE_SPACES, **_OTHER_SPACES}


def make_space(name: str, ctx: SpaceContext) -> LatentSpace:
    """The space called `name` (one of SPACES) for the generator and statistics in `ctx`."""
    check_space_name(name)
    if name.startswith("f_"):
        return WithFeatures(ctx, _BASE_SPACES[name[2:]](ctx))
    return _SPACE_CLASSES[name](ctx)


def space_defaults(name: str) -> dict:
    """The InversionConfig defaults a space brings (without building it)."""
    check_space_name(name)
    if name.startswith("f_"):
        return _feature_space_defaults(_BASE_SPACES[name[2:]].defaults)
    return dict(_SPACE_CLASSES[name].defaults)


def owns_noise(name: str) -> bool:
    """Whether the space's variables include its noise maps (without building it)."""
    check_space_name(name)
    return not name.startswith("f_") and _SPACE_CLASSES[name].owns_noise


def constant_rate_prefixes(name: str) -> tuple[str, ...]:
    """The space's `constant_rate_prefixes` (without building it)."""
    check_space_name(name)
    return () if name.startswith("f_") else _SPACE_CLASSES[name].constant_rate_prefixes


def check_space_name(name: str) -> None:
    if name not in SPACES:
        raise ValueError(f"unknown latent space {name!r}; choose from {list(SPACES)}")
