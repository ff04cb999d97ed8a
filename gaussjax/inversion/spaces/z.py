"""Z, Z+: one z / one z per W+ row, each through the full mapping network inside the loss. The
mapping's input PixelNorm keeps every row on the sphere of radius sqrt(z_dim) (Katsumata et al.'s
hyperspherical constraint; papers note §2.2)."""

import jax
import jax.numpy as jnp

from gaussjax.inversion.spaces.base import LatentSpace, SynthesisInputs


def to_sphere(z):
    """[..., D] rows onto the sphere of radius sqrt(D): the mapping network's input PixelNorm."""
    return z * jax.lax.rsqrt(jnp.mean(jnp.square(z), axis=-1, keepdims=True) + 1e-8)


# Katsumata et al.'s public code: Adam 0.01 at a constant rate, no latent-noise ramp.
HYPERSPHERE_DEFAULTS = {
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
    defaults = {**HYPERSPHERE_DEFAULTS, "truncation_psi": 0.7, "truncation_cutoff": 8}
    rows_per_code = None  # None: one z per W+ row

    def __init__(self, ctx):
        super().__init__(ctx)
        if ctx.gen_cfg.c_dim > 0 and ctx.class_label is None:
            raise ValueError(
                f"the {self.name} space maps z inside the loss: a conditional generator "
                "needs a class (class_idx)"
            )

    def init(self, gen_params, key, target, code=None):
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
    defaults = HYPERSPHERE_DEFAULTS
    rows_per_code = 1

    def prior_rows(self, gen_params, variables):
        return self.mapped_rows(gen_params, variables["z"])[:1]
