"""F/<space>: F/Z+ and its ablations. The activation after `feature_layer` (default: the first,
upsampling conv of the 16x16 block) is optimised jointly with the latent, the RGB accumulator
restarts there, and mean((F - F0)^2) keeps F near its initialisation."""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gaussjax.inversion.spaces.base import LatentSpace, SynthesisInputs
from gaussjax.inversion.spaces.z import HYPERSPHERE_DEFAULTS
from gaussjax.networks.stylegan2 import SynthesisState


def default_feature_layer(gen_cfg) -> int:
    """The first (upsampling) conv of the 16x16 block, F/Z+'s F; the last layer but one below 16 px."""
    if gen_cfg.img_resolution >= 16:
        return gen_cfg.noise_resolutions.index(16)
    return gen_cfg.num_layers - 2


def code_features(space, gen_params, code) -> SynthesisState:
    """The generator's features at `feature_layer` for W+ code [num_ws, w_dim] (constant noise),
    unbatched, img None."""
    state = space.ctx.gen_fns.synthesis(gen_params, code[None], stop_layer=space.feature_layer)
    return jax.tree.map(lambda x: x[0], state._replace(img=None))


def mean_latent_features(space, gen_params, key, target) -> SynthesisState:
    """F0 from the forward pass of the mean latent w_avg. Without an encoder this is a documented
    deviation: the paper takes F0 from an encoder's code of the target (`invert --encoder`)."""
    ctx = space.ctx
    return code_features(
        space, gen_params, jnp.broadcast_to(ctx.w_mean, (ctx.gen_cfg.num_ws, ctx.gen_cfg.w_dim))
    )


# name -> fn(space, gen_params, key, target [H, W, C]) -> unbatched SynthesisState (img None),
# F0 when no encoder code is given (with one, F0 is always the code's features).
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
        self.defaults = feature_space_defaults(latent_space.defaults)
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

    starts_from_code = True  # F0 from the code; the latent too where it is W or W+

    def init(self, gen_params, key, target, code=None):
        latent_key, feature_key = jax.random.split(key)
        latent_code = code if self.latent.starts_from_code else None
        variables, constants = self.latent.init(gen_params, latent_key, target, latent_code)
        if code is None:
            f0 = FEATURE_INITIALISERS[self.ctx.options.feature_init](
                self, gen_params, feature_key, target
            )
        else:
            f0 = code_features(self, gen_params, code)
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


def feature_space_defaults(latent_defaults: dict) -> dict:
    """F/Z+'s public code: MSE + 10 LPIPS + 10 mean((F - F0)^2), Adam 0.01 constant, 1200 steps."""
    return {
        **latent_defaults,
        **HYPERSPHERE_DEFAULTS,
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
