"""W and W+: one w for every layer / one w per layer, starting at w_avg (NVIDIA's projector;
Wulff & Torralba's prior applies)."""

import jax.numpy as jnp

from gaussjax.inversion.spaces.base import LatentSpace, SynthesisInputs


class WSpace(LatentSpace):
    """One w [w_dim] for every layer, starting at w_avg (NVIDIA's projector)."""

    name, variable_keys = "w", ("w",)

    starts_from_code = True

    def init(self, gen_params, key, target, code=None):
        return {"w": self.ctx.w_mean if code is None else jnp.mean(code, axis=0)}, {}

    def synthesis_inputs(self, gen_params, variables, constants, key=None):
        return SynthesisInputs(
            jnp.broadcast_to(variables["w"], (self.ctx.gen_cfg.num_ws, self.ctx.gen_cfg.w_dim))
        )

    def prior_rows(self, gen_params, variables):
        return variables["w"][None]


class WPlusSpace(LatentSpace):
    """One w per layer [num_ws, w_dim], starting at w_avg."""

    name, variable_keys = "wplus", ("wplus",)

    starts_from_code = True

    def init(self, gen_params, key, target, code=None):
        shape = (self.ctx.gen_cfg.num_ws, self.ctx.gen_cfg.w_dim)
        return {"wplus": jnp.broadcast_to(self.ctx.w_mean if code is None else code, shape)}, {}

    def synthesis_inputs(self, gen_params, variables, constants, key=None):
        return SynthesisInputs(variables["wplus"])
