"""Self-supervised encoder training on the generator's own samples, as pure jitted functions.

One iteration: z -> w (style mixing: rows from a random cutoff on come from a second z, so W+
targets differ per row) -> x = G(w) (constant noise) -> encoder -> w' -> G(w'); the loss is

    image_weight * MSE(G(w'), x) + lpips_weight * LPIPS(G(w'), x)
      + latent_weight * mean ||L^-1 (v' - v)||^2 / D     (the latent error in V, whitened by the prior)
      + prior_weight * energy(w') / (num_ws * D)          (keeps codes in distribution)
      + real_weight * (MSE + lpips_weight * LPIPS)(G(E(r)), r)   on real images r, when given,

with v = gaussianize(w) and L the prior's Cholesky factor; both latent terms are per dimension, so
a code one prior standard deviation off costs about 1. Adam; every iteration draws its randomness
from fold_in(key, iteration), so a resumed run continues bit for bit. The batch is split over every
device (`data` mesh axis); parameters are replicated.
"""

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from gaussjax.analysis.gaussianize import gaussianize
from gaussjax.analysis.prior import prior_energy
from gaussjax.inversion.engine import area_downsample
from gaussjax.settings import setting
from gaussjax.training.gan import mixed_ws

TERMS = ("loss", "image", "lpips", "latent", "prior", "real")


@dataclasses.dataclass(frozen=True)
class EncoderTrainConfig:
    """The training recipe (recorded in run.json; a resumed run must match, but for kimg)."""

    batch_size: int = setting(32, "Generated images per iteration (all devices together).")
    real_batch_size: int = setting(8, "Real images per iteration when --images is given.")
    learning_rate: float = setting(3e-3, "Adam learning rate.")
    image_weight: float = setting(1.0, "Weight of the image MSE.")
    lpips_weight: float = setting(0.0, "Weight of LPIPS (needs --vgg; 1 when --vgg is given).")
    latent_weight: float = setting(0.001, "Weight of the whitened latent error in V.")
    prior_weight: float = setting(0.001, "Weight of the prediction's prior energy.")
    real_weight: float = setting(1.0, "Weight of the image loss on real images.")
    style_mixing_prob: float = setting(0.9, "Probability that a batch's targets mix two z.")
    width: float = setting(1.0, "Encoder channels relative to the generator's.")
    steps_per_dispatch: int = setting(25, "Iterations per device call.")

    def __post_init__(self):
        for name in ("batch_size", "real_batch_size", "steps_per_dispatch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        weights = ("image_weight", "lpips_weight", "latent_weight", "prior_weight", "real_weight")
        for name in weights:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.learning_rate > 0 or not self.width > 0:
            raise ValueError("learning_rate and width must be > 0")


class EncoderState(NamedTuple):
    """Everything a run needs to continue: encoder parameters, Adam state, iterations done."""

    params: Any
    opt_state: Any
    iteration: jax.Array  # int32 scalar


@dataclasses.dataclass(frozen=True)
class Trainer:
    """The static side of training (hashable: jit treats it as a constant).

    Attributes:
      gen_fns: PureGenerator of the (frozen) generator.
      encoder_graph, encoder_buffers: the encoder's GraphDef and its non-trained state (the
        prior's mu and sigma), merged with the trained Params at every call.
      lpips_graph: GraphDef of an LPIPS module, or None.
      cfg: EncoderTrainConfig.
      batch_sharding: NamedSharding of a batch over the data axis, or None on one device.
    """

    gen_fns: Any
    encoder_graph: Any
    lpips_graph: Any
    cfg: EncoderTrainConfig
    batch_sharding: Any = None

    def encode(self, params, buffers, images):
        return nnx.merge(self.encoder_graph, params, buffers)(images)


def adam(cfg: EncoderTrainConfig):
    return optax.adam(cfg.learning_rate)


def init_state(params, cfg: EncoderTrainConfig) -> EncoderState:
    return EncoderState(params, adam(cfg).init(params), jnp.zeros((), jnp.int32))


def whitened_error(prior, ws_pred, ws_true):
    """mean over rows and dimensions of (L^-1 (v' - v))^2: [B] (v = gaussianize(w))."""
    slope = prior.negative_slope
    diff = gaussianize(ws_pred, slope) - gaussianize(ws_true, slope)
    flat = diff.reshape(-1, diff.shape[-1])
    white = jax.scipy.linalg.solve_triangular(prior.scale_tril, flat.T, lower=True)
    return jnp.mean(jnp.square(white).T.reshape(diff.shape), axis=(1, 2))


def lpips_distance(trainer: Trainer, lpips_params, a, b):
    """Per-image LPIPS [B] of two image batches (the inversion's downsampling to 256 px)."""
    lpips = nnx.merge(trainer.lpips_graph, lpips_params)
    small = jax.vmap(lambda x: area_downsample(x, 256))
    return jnp.sum(jnp.square(lpips.features(small(a)) - lpips.features(small(b))), axis=-1)


def _constrain(trainer: Trainer, x):
    if trainer.batch_sharding is None:
        return x
    return jax.lax.with_sharding_constraint(x, trainer.batch_sharding)


def reconstruction_terms(trainer, params, buffers, gen_params, lpips_params, targets):
    """(MSE [B], LPIPS [B] or zeros, predicted ws) of encoding and re-rendering `targets`."""
    ws = trainer.encode(params, buffers, targets)
    images = trainer.gen_fns.synthesis(gen_params, ws)
    mse = jnp.mean(jnp.square(images - targets), axis=(1, 2, 3))
    lpips = jnp.zeros_like(mse)
    if trainer.cfg.lpips_weight > 0:
        lpips = lpips_distance(trainer, lpips_params, images, targets)
    return mse, lpips, ws


def loss_terms(trainer: Trainer, params, buffers, gen_params, prior, lpips_params, reals, key):
    """The terms of one iteration (scalars, TERMS; `loss` is their weighted sum)."""
    cfg = trainer.cfg
    k_ws, k_real = jax.random.split(key)
    generator = trainer.gen_fns.merge(gen_params)
    ws_true, _ = mixed_ws(generator, k_ws, cfg.batch_size, cfg.style_mixing_prob)
    targets = _constrain(trainer, generator.synthesis(ws_true))
    mse, lpips, ws = reconstruction_terms(
        trainer, params, buffers, gen_params, lpips_params, targets
    )
    dims = ws.shape[1] * ws.shape[2]
    terms = {
        "image": jnp.mean(mse),
        "lpips": jnp.mean(lpips),
        "latent": jnp.mean(whitened_error(prior, ws, ws_true)),
        "prior": jnp.mean(prior_energy(prior, ws)) / dims,
        "real": jnp.zeros(()),
    }
    if reals is not None:
        idx = jax.random.randint(k_real, (cfg.real_batch_size,), 0, reals.shape[0])
        real = _constrain(trainer, reals[idx])
        real_mse, real_lpips, _ = reconstruction_terms(
            trainer, params, buffers, gen_params, lpips_params, real
        )
        terms["real"] = jnp.mean(real_mse + cfg.lpips_weight * real_lpips)
    terms["loss"] = (
        cfg.image_weight * terms["image"]
        + cfg.lpips_weight * terms["lpips"]
        + cfg.latent_weight * terms["latent"]
        + cfg.prior_weight * terms["prior"]
        + cfg.real_weight * terms["real"]
    )
    return terms


def train_step(
    trainer: Trainer, state: EncoderState, buffers, gen_params, prior, lpips_params, reals, key
):
    """One Adam step; returns (state, terms)."""
    step_key = jax.random.fold_in(key, state.iteration)

    def loss_fn(params):
        terms = loss_terms(
            trainer, params, buffers, gen_params, prior, lpips_params, reals, step_key
        )
        return terms["loss"], terms

    grads, terms = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = adam(trainer.cfg).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return EncoderState(params, opt_state, state.iteration + 1), terms


@functools.partial(jax.jit, static_argnums=(0,), donate_argnums=(1,))
def train_dispatch(
    trainer, state, buffers, gen_params, prior, lpips_params, reals, key, num_iterations
):
    """Runs `num_iterations` (traced, at most cfg.steps_per_dispatch) iterations in one call.

    Static: trainer; the state is donated. reals: [M, R, R, C] real images or None. Returns
    (state, {term: mean over the iterations}).
    """

    def body(_, carry):
        state, sums = carry
        state, terms = train_step(
            trainer, state, buffers, gen_params, prior, lpips_params, reals, key
        )
        return state, {k: sums[k] + terms[k] for k in TERMS}

    zeros = {k: jnp.zeros((), jnp.float32) for k in TERMS}
    state, sums = jax.lax.fori_loop(0, num_iterations, body, (state, zeros))
    n = jnp.maximum(num_iterations, 1).astype(jnp.float32)
    return state, {k: v / n for k, v in sums.items()}


@functools.partial(jax.jit, static_argnums=(0,))
def encode_batch(trainer, params, buffers, gen_params, targets):
    """(codes [B, num_ws, w_dim], reconstructions [B, R, R, C]) of `targets`."""
    ws = trainer.encode(params, buffers, targets)
    return ws, trainer.gen_fns.synthesis(gen_params, ws)


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def generated_images(trainer, gen_params, seed: int, count: int):
    """G(mapping(z)) [count, R, R, C] for z ~ N(0, I) from jax.random.key(seed), constant noise."""
    generator = trainer.gen_fns.merge(gen_params)
    z = jax.random.normal(jax.random.key(seed), (count, generator.cfg.z_dim))
    return generator.synthesis(generator.mapping(z))
