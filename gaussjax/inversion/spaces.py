"""Latent spaces an image can be inverted into. The inversion loop only talks to this interface.

A space turns its optimisation variables (a pytree, for ONE image) into the W+ codes the synthesis
network consumes, and names the latent vectors the Gaussian prior applies to. Further spaces (Z, Z+,
F/Z+, SPHInX heads) register here without touching the loop.
"""

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class SpaceContext:
    """What a space needs to know about the generator and the latent statistics."""

    num_ws: int
    w_dim: int
    w_mean: jax.Array  # [w_dim] mean of mapped samples (the official projector's w_avg).


@dataclasses.dataclass(frozen=True)
class LatentSpace:
    """init(ctx) -> variables; to_ws(ctx, variables) -> [num_ws, w_dim]; prior_rows -> [K, w_dim]."""

    name: str
    init: callable
    to_ws: callable
    prior_rows: callable

    def perturb(self, variables, key, scale):
        """Adds N(0, scale^2) to every variable (the official projector's latent-noise ramp)."""
        leaves, treedef = jax.tree.flatten(variables)
        keys = jax.random.split(key, len(leaves))
        noisy = [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
        return jax.tree.unflatten(treedef, noisy)


W = LatentSpace(
    name="w",
    init=lambda ctx: {"w": ctx.w_mean},
    to_ws=lambda ctx, v: jnp.broadcast_to(v["w"], (ctx.num_ws, ctx.w_dim)),
    prior_rows=lambda v: v["w"][None],
)

WPLUS = LatentSpace(
    name="wplus",
    init=lambda ctx: {"wplus": jnp.broadcast_to(ctx.w_mean, (ctx.num_ws, ctx.w_dim))},
    to_ws=lambda ctx, v: v["wplus"],
    prior_rows=lambda v: v["wplus"],
)

SPACES = {space.name: space for space in (W, WPLUS)}


def get_space(name: str) -> LatentSpace:
    if name not in SPACES:
        raise ValueError(f"unknown latent space {name!r}; choose from {sorted(SPACES)}")
    return SPACES[name]
