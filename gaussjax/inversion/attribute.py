"""SPHInX's attribute discovery (papers note §3.5): given K transformed versions of one image (e.g.
rotations by 0, 22.5, 45 degrees), learn one shared set of SPHInX variables, a direction D
[num_ws, w_dim] and offsets alpha [K - 1] such that version k renders from W+ + alpha_{k-1} D /
||D||_row (version 0 from W+ itself). The monotonic hinge keeps the offsets at least `margin`
apart and increasing:

    mono_reg = sum_k max(0, margin - alpha_k) + sum_k max(0, margin - (alpha_{k+1} - alpha_k)),

weighted 0.5 with margin 2 in the public code. Walking along D then renders the attribute.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from gaussjax.inversion import spaces as latent_spaces


@dataclasses.dataclass(frozen=True)
class WalkConfig:
    """num_steps, learning_rate: Adam on every variable (the public code's 5000 steps at 1e-3);
    margin, mono_weight: the hinge (2, 0.5)."""

    num_steps: int = 5000
    learning_rate: float = 1e-3
    margin: float = 2.0
    mono_weight: float = 0.5


def monotonic_hinge(alpha, margin: float):
    """alpha [K-1] -> scalar: zero iff alpha_0 >= margin and every step alpha_{k+1} - alpha_k >= margin."""
    return jnp.sum(jax.nn.relu(margin - alpha)) + jnp.sum(jax.nn.relu(margin - jnp.diff(alpha)))


def walk_codes(ws, direction, alphas):
    """ws [num_ws, w_dim] moved by each of alphas [M] along the row-normalised direction:
    [M, num_ws, w_dim]."""
    unit = direction / jnp.linalg.norm(direction, axis=1, keepdims=True)
    return ws[None] + alphas[:, None, None] * unit[None]


def render_walk(space, gen_params, state, alphas, key=None):
    """Images [M, H, W, C] along the learned direction at offsets alphas [M] (mean input: key None)."""
    inputs = space.synthesis_inputs(gen_params, state["variables"], {}, key)
    ws = walk_codes(inputs.ws, state["direction"], alphas)
    const = jnp.broadcast_to(inputs.const_input, (len(alphas),) + inputs.const_input.shape)
    return space.ctx.gen_fns.synthesis(gen_params, ws, noise=inputs.noise, const_input=const)


def walk_loss(space, cfg: WalkConfig, gen_params, state, targets, key):
    """mean MSE of the K versions + mono_weight * hinge; (loss, per-version MSE [K])."""
    alphas = jnp.concatenate([jnp.zeros((1,)), state["alpha"]])
    images = render_walk(space, gen_params, state, alphas, key)
    mse = jnp.mean(jnp.square(images - targets), axis=(1, 2, 3))
    return jnp.mean(mse) + cfg.mono_weight * monotonic_hinge(state["alpha"], cfg.margin), mse


def learn_attribute(space, cfg: WalkConfig, gen_params, targets, key):
    """Optimises the shared SPHInX variables, D and alpha on targets [K, H, W, C] (one jit).

    Returns:
      (state {"variables", "direction" [num_ws, w_dim], "alpha" [K-1]}, per-version MSE [K]).
    """
    if not isinstance(space, latent_spaces.SphinxSpace):
        raise ValueError("the attribute walk learns SPHInX heads: use the sphinx space")
    if targets.shape[0] < 2:
        raise ValueError("the attribute walk needs at least 2 versions of the image")
    tx = optax.adam(cfg.learning_rate)

    @jax.jit
    def run(key):
        init_key, dir_key, loop_key = jax.random.split(key, 3)
        variables, _ = space.init(gen_params, init_key, targets[0])
        shape = (space.ctx.gen_cfg.num_ws, space.ctx.gen_cfg.w_dim)
        state = {
            "variables": variables,
            "direction": jax.random.normal(dir_key, shape),
            "alpha": jnp.zeros((targets.shape[0] - 1,)),
        }

        def step(i, carry):
            state, opt_state = carry
            step_key = jax.random.fold_in(loop_key, i)  # fresh vicinal inputs every step
            grads = jax.grad(lambda s: walk_loss(space, cfg, gen_params, s, targets, step_key)[0])
            updates, opt_state = tx.update(grads(state), opt_state, state)
            return optax.apply_updates(state, updates), opt_state

        state, _ = jax.lax.fori_loop(0, cfg.num_steps, step, (state, tx.init(state)))
        return state, walk_loss(space, cfg, gen_params, state, targets, None)[1]

    return run(key)


def rotated_versions(image_uint8, angles) -> np.ndarray:
    """[H, W, C] uint8 -> [len(angles), H, W, C] float32 in [-1, 1]: the image rotated by each angle
    (degrees, counter-clockwise, bicubic, black corners), the public code's `rotate` attribute."""
    pil = Image.fromarray(image_uint8[..., 0] if image_uint8.shape[-1] == 1 else image_uint8)
    out = [np.asarray(pil.rotate(a, resample=Image.BICUBIC)) for a in angles]
    out = np.stack(out).reshape((len(angles),) + image_uint8.shape)
    return out.astype(np.float32) / 127.5 - 1.0
