"""Z, Z+: one z / one z per W+ row, each through the full mapping network inside the loss. The
mapping's input PixelNorm keeps every row on the sphere of radius sqrt(z_dim) (Katsumata et al.'s
hyperspherical constraint; papers note §2.2)."""

import jax
import jax.numpy as jnp
import optax

from gaussjax.analysis.gaussianize import gaussianize
from gaussjax.inversion.spaces.base import LatentSpace, SynthesisInputs

# Fitting z to an encoder's code (`ZPlusSpace.fit_to_code`): Adam on the sphere, the rate decayed
# to 0 by a cosine. Measured on the tiny test generator (8 reachable codes, one z each): 42.9-53.2
# dB renders; a constant 0.05 gave 32.9-50.9 dB.
CODE_FIT_STEPS = 300
CODE_FIT_LEARNING_RATE = 0.2


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

    The rows start from one shared random z on the sphere (a coherent sample of the generator),
    or, given an encoder's code, from z fitted so that the mapped rows match it (`fit_to_code`).
    """

    name, variable_keys = "zplus", ("zplus",)
    # The public F/Z+ code truncates the first 8 rows with psi 0.7 (pass truncation_psi=1 to turn off).
    defaults = {**HYPERSPHERE_DEFAULTS, "truncation_psi": 0.7, "truncation_cutoff": 8}
    rows_per_code = None  # None: one z per W+ row
    starts_from_code = True  # z fitted to the code's rows

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
        z_rows = jnp.broadcast_to(z, (rows, cfg.z_dim))
        if code is not None:
            z_rows = self.fit_to_code(gen_params, z_rows, code)
        return {self.name: z_rows}, {}

    def fit_to_code(self, gen_params, z_rows, code):
        """z rows [K, z_dim] whose render matches the W+ code [num_ws, w_dim]: CODE_FIT_STEPS Adam
        steps (rate CODE_FIT_LEARNING_RATE, cosine-decayed) from `z_rows` on the squared distance
        in the Gaussianized space V between the rows this space renders with and the code's (one
        z: all of the code's rows), each step put back on the sphere. The mapping has no inverse,
        so this is a fit, not an exact start."""
        slope = self.ctx.gen_cfg.mapping_negative_slope
        to_v = (lambda w: gaussianize(w, slope)) if slope > 0 else (lambda w: w)  # relu: no V
        target = to_v(code)
        optimizer = optax.adam(optax.cosine_decay_schedule(CODE_FIT_LEARNING_RATE, CODE_FIT_STEPS))

        def loss(z):
            ws = self.synthesis_inputs(gen_params, {self.name: z}, {}).ws
            return jnp.sum(jnp.square(to_v(ws) - target))

        def step(_, carry):
            z, opt_state = carry
            updates, opt_state = optimizer.update(jax.grad(loss)(z), opt_state)
            return to_sphere(optax.apply_updates(z, updates)), opt_state

        z, _ = jax.lax.fori_loop(0, CODE_FIT_STEPS, step, (z_rows, optimizer.init(z_rows)))
        return z

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
