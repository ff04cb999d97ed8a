"""SPHInX: per-image style and content heads and freely optimised noise maps (heads.py)."""

import math

import jax
import jax.numpy as jnp

from gaussjax.inversion.spaces import heads
from gaussjax.inversion.spaces.base import LatentSpace, SynthesisInputs


class SphinxSpace(LatentSpace):
    """SPHInX (papers note §3): per image, the parameters of the style head (its output is the W+
    code; the mapping network is bypassed), of the content head (its output replaces the 4x4
    constant) and the noise maps, optimised freely (no regulariser, no renormalisation).

    Vicinal sampling: every optimisation step feeds both heads fresh Gaussian inputs, z
    [num_ws, w_dim] and s [4, 4, 8], so they learn to map a whole neighbourhood to the target
    (our reading of the paper's "vicinal regularization", as in the public code). The result
    renders from the mean input (z = 0, s = 0).

    From an encoder's code, the style head's last biases are set so that the mean input renders
    exactly that code (`code_biases`); the rest of both heads keeps its usual start.
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
    starts_from_code = True  # the style head's mean output is set to the code

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

    def init(self, gen_params, key, target, code=None):
        head_key, noise_key = jax.random.split(key)
        resolutions = self.ctx.gen_cfg.noise_resolutions
        noise = heads.split_draw(
            noise_key, {name: (r, r) for name, r in zip(self.noise_keys, resolutions)}
        )
        head_params = self._heads(head_key)
        if code is not None:
            head_params = heads.with_mean_output(head_params, code)
        return {**head_params, **noise}, {}

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
