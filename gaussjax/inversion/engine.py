"""Batched GAN inversion with the Gaussianized prior: pure functions, one jit, many steps per dispatch.

Per image the objective is (shared/notes/papers.md §1.4, reference-stylegan2.md §3.1)

    mse_weight * MSE(G(ws), x) + lpips_weight * LPIPS(G(ws), x)
      + prior_weight * sum_l ||L^-1 (leaky_relu_5(w_l) - mu)||^2 + noise_reg_weight * noise_reg,

optimised with optax (Adam by default) under the official projector's learning-rate schedule and
latent-noise ramp. A batch of B images is inverted together by `jax.vmap` over a per-image step:
every image has its own latents, noise maps, optimiser state and PRNG key, so its result does not
depend on the rest of the batch. `steps_per_dispatch` steps run inside one `lax.fori_loop` per call.
"""

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from gaussjax.inversion import spaces as latent_spaces
from gaussjax.analysis.prior import prior_energy


@dataclasses.dataclass(frozen=True)
class InversionConfig:
    """Hyperparameters. Defaults follow NVIDIA's projector.py where it has one (reference §3.1).

    `prior_weight` (λ) is not given by the paper ([NF] in papers.md): sweep it.
    """

    space: str = "wplus"
    num_steps: int = 1000
    steps_per_dispatch: int = 50
    optimizer: str = "adam"  # any optax optimiser taking `learning_rate`
    learning_rate: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    latent_noise_factor: float = 0.05
    latent_noise_ramp: float = 0.75
    mse_weight: float = 1.0
    lpips_weight: float = 0.0
    prior_weight: float = 1e-5
    optimize_noise: bool = False
    noise_reg_weight: float = 1e5
    lpips_resolution: int = 256  # targets above this are area-downsampled for LPIPS, as official

    def __post_init__(self):
        latent_spaces.get_space(self.space)  # raises for an unknown space
        if self.num_steps < 1 or self.steps_per_dispatch < 1:
            raise ValueError(f"num_steps and steps_per_dispatch must be >= 1, got {self.num_steps}, "
                             f"{self.steps_per_dispatch}")
        weights = {"mse_weight": self.mse_weight, "lpips_weight": self.lpips_weight,
                   "prior_weight": self.prior_weight, "noise_reg_weight": self.noise_reg_weight}
        negative = [k for k, v in weights.items() if v < 0]
        if negative:
            raise ValueError(f"loss weights must be >= 0: {negative}")
        if self.mse_weight == 0 and self.lpips_weight == 0:
            raise ValueError("no data term: mse_weight and lpips_weight are both 0")


def lr_schedule(cfg: InversionConfig):
    """The official projector's schedule as an optax schedule: cosine ramp-down, linear ramp-up."""

    def schedule(count):
        t = count / cfg.num_steps
        ramp = jnp.minimum(1.0, (1.0 - t) / cfg.lr_rampdown)
        ramp = 0.5 - 0.5 * jnp.cos(jnp.pi * ramp)
        return cfg.learning_rate * ramp * jnp.minimum(1.0, t / cfg.lr_rampup)

    return schedule


def make_optimizer(cfg: InversionConfig) -> optax.GradientTransformation:
    """optax.<cfg.optimizer>(learning_rate=the official schedule)."""
    factory = getattr(optax, cfg.optimizer, None)
    try:
        tx = factory(learning_rate=lr_schedule(cfg))
    except TypeError as e:  # None, or not an optimiser taking a learning rate
        raise ValueError(f"{cfg.optimizer!r} is not an optax optimiser taking learning_rate") from e
    if not isinstance(tx, optax.GradientTransformation):
        raise ValueError(f"optax.{cfg.optimizer} is not an optimiser")
    return tx


def latent_noise_scale(cfg: InversionConfig, t, w_std):
    """w_std * factor * max(0, 1 - t / ramp)^2 (official)."""
    return w_std * cfg.latent_noise_factor * jnp.square(jnp.maximum(0.0, 1.0 - t / cfg.latent_noise_ramp))


def noise_regularizer(noise_maps) -> jax.Array:
    """Official multi-scale autocorrelation penalty over noise maps [H, W], down to 8x8."""
    reg = 0.0
    for v in noise_maps:
        while True:
            reg += jnp.square(jnp.mean(v * jnp.roll(v, 1, axis=1))) + jnp.square(jnp.mean(v * jnp.roll(v, 1, axis=0)))
            if v.shape[0] <= 8:
                break
            v = v.reshape(v.shape[0] // 2, 2, v.shape[1] // 2, 2).mean(axis=(1, 3))
    return reg


def normalize_noise(noise_maps):
    """Zero mean, unit (population) std per map, as after every official projector step."""
    out = []
    for v in noise_maps:
        v = v - jnp.mean(v)
        out.append(v * jax.lax.rsqrt(jnp.mean(jnp.square(v))))
    return out


def area_downsample(img, size: int):
    """[H, W, C] -> [size, size, C] by box averaging (integer factor), like F.interpolate(mode='area')."""
    h = img.shape[0]
    if h <= size:
        return img
    f = h // size
    return img.reshape(size, f, size, f, img.shape[-1]).mean(axis=(1, 3))


def psnr(mse):
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2) from their MSE."""
    return 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-20))


class InversionResult(NamedTuple):
    """Batched results: ws [B, num_ws, w_dim], images [B, H, W, C], terms {name: [B]} (loss terms
    and psnr), noise: the optimised noise maps, one [B, r, r] array per layer, or None."""

    ws: jax.Array
    images: jax.Array
    terms: dict
    noise: list | None


@dataclasses.dataclass(frozen=True)
class Statics:
    """Per-run constants closed over by the jitted functions (traced as compile-time constants)."""

    gen_fns: object  # PureGenerator
    lpips_fns: object | None  # nnx GraphDef of an LPIPS module, or None
    context: latent_spaces.SpaceContext
    noise_resolutions: tuple[int, ...]


class Inverter:
    """Inverts batches of images. All heavy work is in jitted pure functions:

    features(lpips_params, targets) -> LPIPS target features; init(seeds) -> state; run(gen_params, lpips_params, prior, state, targets, target_feats) -> state
    (steps_per_dispatch steps, state donated); evaluate(...) -> InversionResult.
    `trace_counts` counts how often each was traced (a single compile is expected).
    """

    def __init__(self, gen_fns, gen_cfg, cfg: InversionConfig, w_mean, w_std, lpips_fns=None,
                 optimizer: optax.GradientTransformation | None = None):
        if cfg.lpips_weight > 0 and lpips_fns is None:
            raise ValueError("lpips_weight > 0 needs an LPIPS model (pass --vgg=FILE)")
        if cfg.lpips_weight > 0 and min(gen_cfg.img_resolution, cfg.lpips_resolution) < 16:
            raise ValueError("LPIPS-VGG16 needs images of at least 16 px (its 5th stage pools 16x)")
        if cfg.optimize_noise and not gen_cfg.use_noise:
            raise ValueError("optimize_noise: this generator has no noise inputs (use_noise=False)")
        self.cfg = cfg
        self.space = latent_spaces.get_space(cfg.space)
        self.tx = optimizer or make_optimizer(cfg)
        self.w_std = float(w_std)
        self.statics = Statics(gen_fns, lpips_fns, latent_spaces.SpaceContext(
            gen_cfg.num_ws, gen_cfg.w_dim, jnp.asarray(w_mean, jnp.float32)), gen_cfg.noise_resolutions)
        self.trace_counts = {"init": 0, "run": 0, "evaluate": 0}
        self.init = jax.jit(self._init)
        self.run = jax.jit(self._run, donate_argnames=("state",))
        self.evaluate = jax.jit(self._evaluate)
        self.features = jax.jit(self.target_features)

    # ---- per-image pieces -------------------------------------------------------------------------
    def _init_one(self, key):
        variables = {"latent": self.space.init(self.statics.context)}
        if self.cfg.optimize_noise:
            keys = jax.random.split(key, len(self.statics.noise_resolutions))
            variables["noise"] = [jax.random.normal(k, (r, r)) for k, r in zip(keys, self.statics.noise_resolutions)]
        return {"variables": variables, "opt_state": self.tx.init(variables), "key": key}

    def _render(self, gen_params, variables, latent):
        ws = self.space.to_ws(self.statics.context, latent)
        image = self.statics.gen_fns.synthesis(gen_params, ws[None], noise=variables.get("noise"))[0]
        return ws, image

    def _terms(self, gen_params, lpips_params, prior, variables, latent, target, target_feats):
        """All loss terms of one image (scalars) and its rendered image."""
        ws, image = self._render(gen_params, variables, latent)
        terms = {"mse": jnp.mean(jnp.square(image - target))}
        if self.statics.lpips_fns is not None:
            lpips = nnx.merge(self.statics.lpips_fns, lpips_params)
            feats = lpips.features(area_downsample(image, self.cfg.lpips_resolution)[None])[0]
            terms["lpips"] = jnp.sum(jnp.square(feats - target_feats))
        if prior is not None:
            terms["prior"] = prior_energy(prior, self.space.prior_rows(variables["latent"])[None])[0]
        if self.cfg.optimize_noise:
            terms["noise_reg"] = noise_regularizer(variables["noise"])
        weights = {"mse": self.cfg.mse_weight, "lpips": self.cfg.lpips_weight,
                   "prior": self.cfg.prior_weight, "noise_reg": self.cfg.noise_reg_weight}
        terms["loss"] = sum(weights[k] * v for k, v in terms.items())
        return terms, ws, image

    def _step_one(self, gen_params, lpips_params, prior, image_state, target, target_feats, step):
        key, sub = jax.random.split(image_state["key"])
        t = step / self.cfg.num_steps

        def loss_fn(variables):
            latent = self.space.perturb(variables["latent"], sub, latent_noise_scale(self.cfg, t, self.w_std))
            terms, _, _ = self._terms(gen_params, lpips_params, prior, variables, latent, target, target_feats)
            return terms["loss"], terms

        (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(image_state["variables"])
        updates, opt_state = self.tx.update(grads, image_state["opt_state"], image_state["variables"])
        variables = optax.apply_updates(image_state["variables"], updates)
        if self.cfg.optimize_noise:
            variables = {**variables, "noise": normalize_noise(variables["noise"])}
        return {"variables": variables, "opt_state": opt_state, "key": key}, terms

    # ---- batched, jitted entry points -------------------------------------------------------------
    def _init(self, seeds):
        self.trace_counts["init"] += 1
        keys = jax.vmap(jax.random.key)(seeds)
        return {"images": jax.vmap(self._init_one)(keys), "step": jnp.zeros((), jnp.int32)}

    def _run(self, gen_params, lpips_params, prior, state, targets, target_feats):
        self.trace_counts["run"] += 1
        step_batch = jax.vmap(self._step_one, in_axes=(None, None, None, 0, 0, 0, None))

        def body(_, carry):
            images, step, _ = carry
            new_images, terms = step_batch(gen_params, lpips_params, prior, images, targets, target_feats, step)
            # Steps past num_steps are no-ops, so every dispatch has the same shape (one compile).
            active = step < self.cfg.num_steps
            images = jax.tree.map(lambda new, old: jnp.where(active, new, old), new_images, images)
            return images, step + active.astype(jnp.int32), terms["loss"]

        loss0 = jnp.zeros(targets.shape[:1], jnp.float32)
        images, step, loss = jax.lax.fori_loop(0, self.cfg.steps_per_dispatch, body,
                                               (state["images"], state["step"], loss0))
        return {"images": images, "step": step}, loss

    def _evaluate(self, gen_params, lpips_params, prior, state, targets, target_feats):
        self.trace_counts["evaluate"] += 1

        def one(image_state, target, feats):
            variables = image_state["variables"]
            terms, ws, image = self._terms(gen_params, lpips_params, prior, variables, variables["latent"],
                                           target, feats)
            terms["psnr"] = psnr(terms["mse"])
            return InversionResult(ws, image, terms, variables.get("noise"))

        return jax.vmap(one)(state["images"], targets, target_feats)

    def target_features(self, lpips_params, targets):
        """LPIPS feature vectors of the targets [B, F] (a [B, 0] placeholder without LPIPS)."""
        if self.statics.lpips_fns is None:
            return jnp.zeros((targets.shape[0], 0), jnp.float32)
        lpips = nnx.merge(self.statics.lpips_fns, lpips_params)
        small = jax.vmap(lambda x: area_downsample(x, self.cfg.lpips_resolution))(targets)
        return lpips.features(small)

    def num_dispatches(self) -> int:
        return math.ceil(self.cfg.num_steps / self.cfg.steps_per_dispatch)

    def invert(self, gen_params, targets, seeds, *, prior=None, lpips_params=None, progress=None):
        """Runs the whole optimisation for a batch.

        Args:
          gen_params: generator state from `PureGenerator.split`.
          targets: [B, H, W, C] float32 in [-1, 1].
          seeds: [B] int32 PRNG seeds, one per image (derive them from the image, not its batch slot).
          prior: GaussianPrior or None (no prior term).
          lpips_params: LPIPS state when the config uses LPIPS.
          progress: optional callback(steps_done, losses [B]).
        Returns:
          InversionResult (ws [B, num_ws, w_dim], images [B, H, W, C], terms {name: [B]}, noise).
        """
        feats = self.features(lpips_params, targets)
        state = self.init(seeds)
        for _ in range(self.num_dispatches()):
            state, loss = self.run(gen_params, lpips_params, prior, state, targets, feats)
            if progress is not None:
                progress(int(state["step"]), loss)
        return self.evaluate(gen_params, lpips_params, prior, state, targets, feats)

