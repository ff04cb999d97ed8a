"""The space protocol: what the engine knows of a latent space, and the one-image render.

Every function here works on ONE image; the engine vmaps them over a batch.
"""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gaussjax.networks.stylegan2 import SynthesisState
from gaussjax.settings import setting


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

    truncation_psi: float = setting(1.0, "Z/Z+ spaces: truncation psi of the mapped rows.")
    truncation_cutoff: int | None = setting(None, "Z/Z+ spaces: truncate rows < cutoff only.")
    feature_layer: int | None = setting(None, "F spaces: layer whose output is F.")
    feature_init: str = "mean_latent"

    def __post_init__(self):
        if not 0 < self.truncation_psi <= 1:
            raise ValueError(f"truncation_psi must be in (0, 1], got {self.truncation_psi}")


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
    # "official" schedule (see optimizer.make_optimizer); the rest follow the schedule.
    constant_rate_prefixes: tuple[str, ...] = ()
    owns_noise = False  # True: the space's variables include its noise maps (no engine noise)
    starts_from_code = False  # True: `init` can start from an encoder's W+ code

    def __init__(self, ctx: SpaceContext):
        self.ctx = ctx

    def init(self, gen_params, key, target, code=None) -> tuple[dict, dict]:
        """(variables, constants) of one image. key: PRNG key; target: [H, W, C] in [-1, 1];
        code: an encoder's W+ code [num_ws, w_dim] to start from (spaces with starts_from_code)."""
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
        return add_noise(variables, key, scale)

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


def add_noise(tree, key, std):
    """N(0, std^2) on every leaf of a pytree (one key per leaf)."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    noisy = [x + std * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, noisy)
