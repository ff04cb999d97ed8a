"""The StyleGAN2 training step as pure functions: many iterations per dispatch, one compile.

One iteration (official `training_loop.py` phase order; reference-stylegan2.md):
  G: non-saturating logistic loss softplus(-D(G(z))), style mixing, random noise; w_avg tracks the
     batch mean of w (beta `mapping_w_avg_beta`).
  D: softplus(D(G(z))) + softplus(-D(x)); every `r1_interval`-th iteration also the lazy R1
     penalty gamma/2 * |grad_x D(x)|^2, times the interval. Official StyleGAN2 runs that penalty as
     an extra optimiser step and rescales Adam's rate and betas for it; here it joins that
     iteration's D step, so no rescaling is needed.
  G EMA: g_ema = lerp(g, g_ema, 0.5 ** (batch / ema_nimg)), ema_nimg ramped up with the images seen.
Both networks use Adam(beta1 = 0, beta2 = 0.99, eps = 1e-8).

The whole state is one pytree (`TrainState`), so it is checkpointed and sharded as a unit. Every
iteration draws its randomness from fold_in(key, iteration): a resumed run continues bit for bit.
"""

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from gaussjax.networks.stylegan2 import Buffer, Generator
from gaussjax.training.augment import AugmentConfig, augment
from gaussjax.training.discriminator import Discriminator


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters; None picks the official `auto` config's formula for the resolution and batch."""

    batch_size: int = 32
    learning_rate: float = 0.0025  # G and D (official auto for resolutions below 1024)
    beta2: float = 0.99
    r1_gamma: float | None = None  # None: 0.0002 * resolution**2 / batch_size
    r1_interval: int = 16
    style_mixing_prob: float = 0.9
    ema_kimg: float | None = None  # None: batch_size * 10 / 32
    ema_rampup: float | None = 0.05
    mbstd_group: int = 4
    pack: int = 1  # images D judges at a time (PacGAN; discriminator.py)
    d_width: float = 1.0  # D's channels at each resolution relative to G's
    augment: AugmentConfig = AugmentConfig()  # of everything D sees (augment.py)
    steps_per_dispatch: int = 25

    def gamma(self, resolution: int) -> float:
        if self.r1_gamma is not None:
            return self.r1_gamma
        return 0.0002 * resolution**2 / self.batch_size

    @property
    def ema_nimg(self) -> float:
        kimg = self.batch_size * 10 / 32 if self.ema_kimg is None else self.ema_kimg
        return kimg * 1000


class TrainState(NamedTuple):
    """Everything a run needs to continue: parameters, G's buffers, G EMA, Adam states, iteration."""

    g: Any  # nnx.State of G's Params
    g_buffers: Any  # nnx.State of G's Buffers (w_avg, noise_const)
    g_ema: Any
    d: Any
    g_opt: Any
    d_opt: Any
    iteration: jax.Array  # int32 scalar: iterations done


def adam(cfg: TrainConfig):
    return optax.adam(cfg.learning_rate, b1=0.0, b2=cfg.beta2, eps=1e-8)


@dataclasses.dataclass(frozen=True)
class Networks:
    """The static halves (graph definitions) of G and D; hashable, so jit treats them as static."""

    g_graph: Any
    d_graph: Any

    def generator(self, state: TrainState, ema=False) -> Generator:
        return nnx.merge(self.g_graph, state.g_ema if ema else state.g, state.g_buffers)

    def discriminate(self, d_params, images):
        return nnx.merge(self.d_graph, d_params)(images)


def init_state(generator: Generator, discriminator: Discriminator, cfg: TrainConfig):
    """(Networks, TrainState) at iteration 0; G EMA starts as a copy of G."""
    g_graph, g_params, g_buffers = nnx.split(generator, nnx.Param, Buffer)
    d_graph, d_params = nnx.split(discriminator)
    state = TrainState(
        g=g_params,
        g_buffers=g_buffers,
        g_ema=jax.tree.map(jnp.copy, g_params),
        d=d_params,
        g_opt=adam(cfg).init(g_params),
        d_opt=adam(cfg).init(d_params),
        iteration=jnp.zeros((), jnp.int32),
    )
    return Networks(g_graph, d_graph), state


def mixed_ws(G: Generator, key, batch: int, mixing_prob: float):
    """Mapped ws [N, num_ws, w_dim] of fresh z; with probability `mixing_prob` the rows from a
    random cutoff on come from a second z (one cutoff per batch, as official). Also returns the
    unmixed w [N, w_dim] (for w_avg)."""
    cfg = G.cfg
    k_z, k_mix, k_cut, k_prob = jax.random.split(key, 4)
    ws = G.mapping(jax.random.normal(k_z, (batch, cfg.z_dim)))
    if mixing_prob <= 0 or cfg.num_ws == 1:
        return ws, ws[:, 0]
    other = G.mapping(jax.random.normal(k_mix, (batch, cfg.z_dim)))
    cutoff = jax.random.randint(k_cut, (), 1, cfg.num_ws)
    cutoff = jnp.where(jax.random.uniform(k_prob) < mixing_prob, cutoff, cfg.num_ws)
    rows = jnp.arange(cfg.num_ws)[None, :, None]
    return jnp.where(rows < cutoff, ws, other), ws[:, 0]


def fake_images(G: Generator, key, batch: int, mixing_prob: float):
    """G(z) with style mixing and random noise: ([N, R, R, C], unmixed w [N, w_dim])."""
    k_ws, k_noise = jax.random.split(key)
    ws, w = mixed_ws(G, k_ws, batch, mixing_prob)
    return G.synthesis(ws, noise_mode="random", key=k_noise), w


def r1_penalty(nets: Networks, d_params, reals):
    """|grad_x D(x)|^2 per image [N] (the official R1 term before gamma / 2)."""
    grads = jax.grad(lambda x: jnp.sum(nets.discriminate(d_params, x)))(reals)
    return jnp.sum(jnp.square(grads), axis=(1, 2, 3))


def generator_step(nets: Networks, cfg: TrainConfig, state: TrainState, key):
    """One Adam step of G on softplus(-D(G(z))); returns (state, loss)."""

    def loss_fn(g_params):
        G = nnx.merge(nets.g_graph, g_params, state.g_buffers)
        k_fake, k_aug = jax.random.split(key)
        images, w = fake_images(G, k_fake, cfg.batch_size, cfg.style_mixing_prob)
        images = augment(images, k_aug, cfg.augment)
        return jnp.mean(jax.nn.softplus(-nets.discriminate(state.d, images))), w

    (loss, w), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g)
    updates, g_opt = adam(cfg).update(grads, state.g_opt, state.g)
    g_buffers = _track_w_avg(nets, state, jnp.mean(w, axis=0))
    return state._replace(
        g=optax.apply_updates(state.g, updates), g_opt=g_opt, g_buffers=g_buffers
    ), loss


def _track_w_avg(nets: Networks, state: TrainState, batch_mean_w):
    G = nnx.merge(nets.g_graph, state.g, state.g_buffers)
    beta = G.cfg.mapping_w_avg_beta
    if beta is not None:
        G.mapping.w_avg[...] = batch_mean_w + beta * (G.mapping.w_avg[...] - batch_mean_w)
    return nnx.state(G, Buffer)


def discriminator_step(nets: Networks, cfg: TrainConfig, state: TrainState, key, reals, fakes=None):
    """One Adam step of D (+ lazy R1 every `r1_interval` iterations); returns (state, loss, r1).

    fakes: D's negatives [N, R, R, C], as many as reals; None: fresh samples of G (training)."""
    k_fake, k_aug = jax.random.split(key)
    if fakes is None:
        fakes, _ = fake_images(nets.generator(state), k_fake, cfg.batch_size, cfg.style_mixing_prob)
    both = augment(jnp.concatenate([reals, fakes]), k_aug, cfg.augment)
    reals, fakes = jnp.split(jax.lax.stop_gradient(both), 2)
    gamma = cfg.gamma(reals.shape[1])

    def loss_fn(d_params, with_r1):
        # Two passes, as official: one batch would put reals and fakes into the same
        # minibatch-std groups, hiding a collapse of the fakes from D.
        real = nets.discriminate(d_params, reals)
        fake = nets.discriminate(d_params, fakes)
        loss = jnp.mean(jax.nn.softplus(fake)) + jnp.mean(jax.nn.softplus(-real))
        # Per D input: a pack's gradient norm sums those of its images.
        r1 = cfg.pack * jnp.mean(r1_penalty(nets, d_params, reals)) if with_r1 else jnp.zeros(())
        return loss + gamma / 2 * cfg.r1_interval * r1, (loss, r1)

    def grads_and_losses(with_r1):
        return jax.grad(functools.partial(loss_fn, with_r1=with_r1), has_aux=True)(state.d)

    lazy_r1 = (state.iteration % cfg.r1_interval == 0) & (gamma > 0)
    grads, (loss, r1) = jax.lax.cond(
        lazy_r1, lambda: grads_and_losses(True), lambda: grads_and_losses(False)
    )
    updates, d_opt = adam(cfg).update(grads, state.d_opt, state.d)
    d = optax.apply_updates(state.d, updates)
    return state._replace(d=d, d_opt=d_opt), loss, r1


def ema_update(cfg: TrainConfig, state: TrainState):
    """G EMA after an iteration (images seen = (iteration + 1) * batch)."""
    ema_nimg = cfg.ema_nimg
    if cfg.ema_rampup is not None:
        seen = (state.iteration + 1).astype(jnp.float32) * cfg.batch_size
        ema_nimg = jnp.minimum(ema_nimg, seen * cfg.ema_rampup)
    beta = 0.5 ** (cfg.batch_size / jnp.maximum(ema_nimg, 1e-8))
    g_ema = jax.tree.map(lambda p, e: p + beta * (e - p), state.g, state.g_ema)
    return state._replace(g_ema=g_ema)


def iteration(nets: Networks, cfg: TrainConfig, dataset, key, batch_sharding, state: TrainState):
    """G step, D step, EMA. dataset: [M, R, R, C] in [-1, 1]. Returns (state, losses [3])."""
    k = jax.random.fold_in(key, state.iteration)
    k_g, k_d, k_real = jax.random.split(k, 3)
    idx = jax.random.randint(k_real, (cfg.batch_size,), 0, dataset.shape[0])
    reals = dataset[idx]
    if batch_sharding is not None:
        reals = jax.lax.with_sharding_constraint(reals, batch_sharding)
    state, g_loss = generator_step(nets, cfg, state, k_g)
    state, d_loss, r1 = discriminator_step(nets, cfg, state, k_d, reals)
    state = ema_update(cfg, state)
    state = state._replace(iteration=state.iteration + 1)
    return state, jnp.stack([g_loss, d_loss, r1])


@functools.partial(jax.jit, static_argnums=(0, 1, 5), donate_argnums=(2,))
def train_dispatch(nets, cfg, state, dataset, key, batch_sharding, num_iterations):
    """Runs `num_iterations` (dynamic, at most cfg.steps_per_dispatch) iterations in one call.

    Static: nets, cfg, batch_sharding; the state is donated. Returns (state, mean losses [3]:
    G loss, D loss, R1 penalty averaged over the iterations that computed it).
    """

    def body(_, carry):
        state, sums = carry
        state, losses = iteration(nets, cfg, dataset, key, batch_sharding, state)
        r1_count = (state.iteration - 1) % cfg.r1_interval == 0
        return state, sums + jnp.stack([losses[0], losses[1], losses[2], r1_count])

    state, sums = jax.lax.fori_loop(0, num_iterations, body, (state, jnp.zeros(4)))
    n = jnp.maximum(num_iterations, 1)
    return state, jnp.stack([sums[0] / n, sums[1] / n, sums[2] / jnp.maximum(sums[3], 1)])
