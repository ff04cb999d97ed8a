"""Batched GAN inversion with the Gaussianized prior: pure functions, one jit, many steps per dispatch.

Per image the objective is (shared/notes/papers.md §1.4, reference-stylegan2.md §3.1)

    mse_weight * MSE(G(s), x) + lpips_weight * LPIPS(G(s), x)
      + prior_weight * E + noise_reg_weight * noise_reg
      + the latent space's own terms (F spaces: feature_reg_weight * mean((F - F0)^2)),

with E = sum_l ||L^-1 (leaky_relu_5(w_l) - mu)||^2 / (K w_dim) over the K W rows w_l the space
scores (prior_scale "mean", the default: ~1 for an in-distribution code on every generator; "sum":
the paper's unnormalised sum), where s are the space's variables (spaces/); for an inverse
problem (tasks.py) the data terms compare A(G(s)) with the measurement y = A(x). It is optimised
with optax (Adam by default) under the official projector's learning-rate schedule (or a constant
rate) and latent-noise ramp. A batch of B images is inverted together by `jax.vmap` over a per-image
step: every image has its own latents, noise maps, optimiser state and PRNG key, so its result does
not depend on the rest of the batch. Up to `steps_per_dispatch` steps run inside one
`lax.fori_loop` per call."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from gaussjax import interrupts
from gaussjax.analysis.prior import loss_energy
from gaussjax.inversion import spaces as latent_spaces
from gaussjax.inversion import tasks
from gaussjax.inversion.config import LOSS_WEIGHTS, InversionConfig, OptimConfig
from gaussjax.inversion.optimizer import make_optimizer
from gaussjax.inversion.passes import in_passes, resolve_microbatch
from gaussjax.networks.stylegan2 import jit_synthesis


def latent_noise_scale(cfg: OptimConfig, t, unit):
    """unit * factor * max(0, 1 - t / ramp)^2 (official; unit: the space's spread, w_std for W)."""
    return (
        unit
        * cfg.latent_noise_factor
        * jnp.square(jnp.maximum(0.0, 1.0 - t / cfg.latent_noise_ramp))
    )


def prior_release_factor(release: float, t):
    """The prior weight's factor at progress t in [0, 1): 1, falling linearly to 0 over the last
    `release` fraction of the steps (0: always 1). Released at the end, the prior guides the
    code while it is found and no longer biases the final fit of the image."""
    if release <= 0:
        return 1.0
    return jnp.clip((1.0 - t) / release, 0.0, 1.0)


def noise_regularizer(noise_maps) -> jax.Array:
    """Official multi-scale autocorrelation penalty over noise maps [H, W], down to 8x8."""
    reg = 0.0
    for v in noise_maps:
        while True:
            reg += jnp.square(jnp.mean(v * jnp.roll(v, 1, axis=1))) + jnp.square(
                jnp.mean(v * jnp.roll(v, 1, axis=0))
            )
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


def _measurement_key(image_key):
    """The key of an image's measurement noise (independent of its optimisation keys)."""
    return jax.random.fold_in(image_key, 2)


def refined_codes(encode, render, images, num_corrections: int):
    """encode(images), then `num_corrections` times w += encode(images) - encode(render(w)).

    The encoder E is an approximate inverse of the generator G; where its error varies slowly with
    the code, E(x) - E(G(w)) estimates what w still lacks (a fixed-point iteration, as ReStyle's
    iterative encoding, with an encoder trained for single passes). Measured with the built-in
    encoder, 8 corrections: generated digits 25.9 -> 30.1 dB (docs/encoder.md), real digits
    21.7 -> 23.8 dB.
    encode, render: jitted functions of [B, H, W, C] -> [B, num_ws, w_dim] and back.
    """
    target_code = encode(images)
    ws = target_code
    for _ in range(num_corrections):
        ws = ws + target_code - encode(render(ws))
    return ws


def psnr(mse):
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2) from their MSE."""
    return 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-20))


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["ws", "images", "terms", "noise", "latents"],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class InversionResult:
    """Batched results.

    Attributes:
      ws: [B, num_ws, w_dim] the W+ codes the images were rendered from.
      images: [B, H, W, C].
      terms: {name: [B]} loss terms, the total `loss` and `psnr`.
      noise: the optimised noise maps, one [B, r, r] array per layer, or None.
      latents: {name: [B, ...]} the space's own variables (z rows, F, ...), for `to_arrays`.
    Unpacks as (ws, images, terms, noise).
    """

    ws: jax.Array
    images: jax.Array
    terms: dict
    noise: list | None
    latents: dict

    def __iter__(self):
        return iter((self.ws, self.images, self.terms, self.noise))


@dataclasses.dataclass(frozen=True)
class Statics:
    """Per-run constants closed over by the jitted functions (traced as compile-time constants)."""

    gen_fns: object  # PureGenerator
    lpips_fns: object | None  # nnx GraphDef of an LPIPS module, or None
    space: latent_spaces.LatentSpace
    noise_resolutions: tuple[int, ...]


# Tasks whose measurements are images of the generator's size, which an encoder reads.
ENCODABLE_TASKS = ("invert", "denoise", "inpaint")


class Inverter:
    """Inverts batches of images. All heavy work is in jitted pure functions:

      features(lpips_params, targets) -> LPIPS target features [B, F];
      init(gen_params, seeds, targets) -> state;
      run(gen_params, lpips_params, prior, state, targets, target_feats) -> (state, losses [B]):
        up to steps_per_dispatch steps (fewer in the last dispatch), state donated;
      evaluate(...) -> InversionResult.
    `trace_counts` counts how often each was traced (a single compile is expected).
    """

    def __init__(
        self,
        gen_fns,
        gen_cfg,
        cfg: InversionConfig,
        w_mean,
        w_std,
        lpips_fns=None,
        optimizer: optax.GradientTransformation | None = None,
        class_label=None,
    ):
        if cfg.loss.lpips_weight > 0 and lpips_fns is None:
            raise ValueError("lpips_weight > 0 needs an LPIPS model (give the VGG16 weights)")
        if (
            cfg.loss.lpips_weight > 0
            and min(gen_cfg.img_resolution, cfg.loss.lpips_resolution) < 16
        ):
            raise ValueError("LPIPS-VGG16 needs images of at least 16 px (its 5th stage pools 16x)")
        if cfg.loss.optimize_noise and not gen_cfg.use_noise:
            raise ValueError("optimize_noise: this generator has no noise inputs (use_noise=False)")
        self.cfg = cfg
        context = latent_spaces.SpaceContext(
            gen_fns,
            gen_cfg,
            jnp.asarray(w_mean, jnp.float32),
            float(w_std),
            None if class_label is None else jnp.asarray(class_label, jnp.float32),
            cfg.options,
        )
        self.space = latent_spaces.make_space(cfg.space, context)
        self.task = tasks.make_task(cfg.problem, gen_cfg)
        if cfg.loss.lpips_weight > 0 and cfg.problem.task == "super_resolution":
            if gen_cfg.img_resolution // cfg.problem.sr_factor < 16:
                raise ValueError("LPIPS on super_resolution measurements needs them >= 16 px")
        self.tx = optimizer or make_optimizer(cfg.optim, cfg.space)
        self.microbatch = resolve_microbatch(cfg.compute.microbatch)
        self.statics = Statics(gen_fns, lpips_fns, self.space, gen_cfg.noise_resolutions)
        self.trace_counts = {"init": 0, "run": 0, "evaluate": 0}
        self.init = jax.jit(self._init)
        self.run = jax.jit(self._run, donate_argnames=("state",))
        self.evaluate = jax.jit(self._evaluate)
        self.features = jax.jit(self.target_features)
        self.measurements = jax.jit(self._measurements)

    # ---- per-image pieces -------------------------------------------------------------------------
    def _init_one(self, gen_params, key, target, code):
        latent, constants = self.space.init(gen_params, jax.random.fold_in(key, 1), target, code)
        variables = {"latent": latent}
        if self.cfg.loss.optimize_noise:
            keys = jax.random.split(key, len(self.statics.noise_resolutions))
            variables["noise"] = [
                jax.random.normal(k, (r, r)) for k, r in zip(keys, self.statics.noise_resolutions)
            ]
        return {
            "variables": variables,
            "constants": constants,
            "measurement": self.task.measure(target, _measurement_key(key)),
            "opt_state": self.tx.init(variables),
            "key": key,
        }

    def _terms(
        self,
        gen_params,
        lpips_params,
        prior,
        image_state,
        latent,
        target,
        target_feats,
        key=None,
        prior_factor=1.0,
    ):
        """All loss terms of one image (scalars) and its rendered image; the prior term's weight
        is scaled by `prior_factor` (its release schedule) in the loss."""
        variables, constants = image_state["variables"], image_state["constants"]
        ws, image = latent_spaces.render(
            self.space,
            gen_params,
            latent,
            constants,
            key,
            variables.get("noise"),
            dtype=jnp.dtype(self.cfg.compute.dtype),
            remat=self.cfg.compute.remat,
        )
        # The data terms compare the measurements (`target` is the clean image, for evaluation).
        task_key = None if key is None or not self.task.needs_key else jax.random.fold_in(key, 7)
        measured = self.task.forward(image, task_key)
        terms = {"mse": jnp.mean(jnp.square(measured - image_state["measurement"]))}
        if self.statics.lpips_fns is not None:
            lpips = nnx.merge(self.statics.lpips_fns, lpips_params)
            feats = lpips.features(area_downsample(measured, self.cfg.loss.lpips_resolution)[None])[
                0
            ]
            terms["lpips"] = jnp.sum(jnp.square(feats - target_feats))
        if prior is not None:
            # Scored on the variables themselves, not on their ramp-perturbed copy.
            rows = self.space.prior_rows(gen_params, variables["latent"])
            terms["prior"] = loss_energy(prior, rows, self.cfg.loss.prior_scale)
        if self.cfg.loss.optimize_noise:
            terms["noise_reg"] = noise_regularizer(variables["noise"])
        terms.update(self.space.extra_terms(latent, constants))
        weights = {k: getattr(self.cfg.loss, LOSS_WEIGHTS[k]) for k in terms}
        if "prior" in weights:
            weights["prior"] = weights["prior"] * prior_factor
        terms["loss"] = sum(weights[k] * v for k, v in terms.items())
        return terms, ws, image

    def _step_one(self, gen_params, lpips_params, prior, image_state, target, target_feats, step):
        key, ramp_key, space_key = jax.random.split(image_state["key"], 3)
        t = step / self.cfg.optim.num_steps

        def loss_fn(variables):
            latent = variables["latent"]
            if (
                self.cfg.optim.latent_noise_factor > 0
            ):  # zero noise would still cost a draw per leaf
                latent = self.space.perturb(
                    latent, ramp_key, latent_noise_scale(self.cfg.optim, t, self.space.noise_unit)
                )
            terms, _, _ = self._terms(
                gen_params,
                lpips_params,
                prior,
                {**image_state, "variables": variables},
                latent,
                target,
                target_feats,
                space_key,
                prior_release_factor(self.cfg.loss.prior_release, t),
            )
            return terms["loss"], terms

        (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(image_state["variables"])
        updates, opt_state = self.tx.update(
            grads, image_state["opt_state"], image_state["variables"]
        )
        variables = optax.apply_updates(image_state["variables"], updates)
        variables = {**variables, "latent": self.space.project(variables["latent"])}
        if self.cfg.loss.optimize_noise:
            variables = {**variables, "noise": normalize_noise(variables["noise"])}
        return {**image_state, "variables": variables, "opt_state": opt_state, "key": key}, terms

    # ---- batched, jitted entry points -------------------------------------------------------------
    def _init(self, gen_params, seeds, targets, codes=None):
        """codes: None (each space's own start) or encoder W+ codes [B, num_ws, w_dim]."""
        self.trace_counts["init"] += 1
        keys = jax.vmap(jax.random.key)(seeds)
        code_axis = None if codes is None else 0
        images = jax.vmap(self._init_one, in_axes=(None, 0, 0, code_axis))(
            gen_params, keys, targets, codes
        )
        return {"images": images, "step": jnp.zeros((), jnp.int32)}

    def _run(self, gen_params, lpips_params, prior, state, targets, target_feats):
        self.trace_counts["run"] += 1
        step_batch = jax.vmap(self._step_one, in_axes=(None, None, None, 0, 0, 0, None))

        def body(_, carry):
            images, step, _ = carry
            images, terms = in_passes(
                lambda *batched: step_batch(gen_params, lpips_params, prior, *batched, step),
                self.microbatch,
                images,
                targets,
                target_feats,
            )
            return images, step + 1, terms["loss"]

        # A traced trip count: the last dispatch runs only the steps that are left, and every
        # dispatch still has the same shapes (one compile).
        num = jnp.clip(
            self.cfg.optim.num_steps - state["step"], 0, self.cfg.optim.steps_per_dispatch
        )
        loss0 = jnp.zeros(targets.shape[:1], jnp.float32)
        images, step, loss = jax.lax.fori_loop(
            0, num, body, (state["images"], state["step"], loss0)
        )
        return {"images": images, "step": step}, loss

    def _evaluate(self, gen_params, lpips_params, prior, state, targets, target_feats):
        self.trace_counts["evaluate"] += 1

        def one(image_state, target, feats):
            latent = image_state["variables"]["latent"]
            terms, ws, image = self._terms(
                gen_params, lpips_params, prior, image_state, latent, target, feats
            )
            terms["psnr"] = psnr(jnp.mean(jnp.square(image - target)))  # against the clean target
            if self.task.name == "denoise":
                terms["input_psnr"] = psnr(
                    jnp.mean(jnp.square(image_state["measurement"] - target))
                )
            return InversionResult(ws, image, terms, image_state["variables"].get("noise"), latent)

        return jax.vmap(one)(state["images"], targets, target_feats)

    def _measurements(self, seeds, targets):
        """The measurements y of clean targets [B, H, W, C], as `init` makes them."""
        keys = jax.vmap(jax.random.key)(seeds)
        return jax.vmap(lambda k, x: self.task.measure(x, _measurement_key(k)))(keys, targets)

    def target_features(self, lpips_params, targets):
        """LPIPS feature vectors of the targets [B, F] (a [B, 0] placeholder without LPIPS);
        pass the measurements (`measurements`) when the task is not `invert`."""
        if self.statics.lpips_fns is None:
            return jnp.zeros((targets.shape[0], 0), jnp.float32)
        lpips = nnx.merge(self.statics.lpips_fns, lpips_params)
        small = jax.vmap(lambda x: area_downsample(x, self.cfg.loss.lpips_resolution))(targets)
        return lpips.features(small)

    def check_encodable(self) -> None:
        """Raises ValueError unless the space can start from an encoder's code of the measurements."""
        if not self.space.starts_from_code:
            raise ValueError(
                f"space {self.cfg.space} cannot start from an encoder's code (its variables are "
                "network heads, not codes): use w, wplus, z, zplus or an f_ space"
            )
        if self.task.name not in ENCODABLE_TASKS:
            raise ValueError(
                f"task {self.task.name}: its measurements are not full-size images, so an encoder "
                f"cannot read them (encoder init works for {', '.join(ENCODABLE_TASKS)})"
            )

    def encoder_codes(self, encode, gen_params, inputs):
        """encode(inputs [B, H, W, C]) -> [B, num_ws, w_dim], after `check_encodable`, then
        `optim.encoder_refine` corrections (refined_codes)."""
        self.check_encodable()
        render = functools.partial(jit_synthesis, self.statics.gen_fns, gen_params)
        return refined_codes(encode, render, inputs, self.cfg.optim.encoder_refine)

    def num_dispatches(self) -> int:
        return math.ceil(self.cfg.optim.num_steps / self.cfg.optim.steps_per_dispatch)

    def invert(
        self,
        gen_params,
        targets,
        seeds,
        *,
        prior=None,
        lpips_params=None,
        progress=None,
        snapshot=None,
        encode=None,
    ):
        """Runs the whole optimisation for a batch.

        Args:
          gen_params: generator state from `PureGenerator.split`.
          targets: [B, H, W, C] float32 in [-1, 1].
          seeds: [B] int32 PRNG seeds, one per image (derive them from the image, not its batch slot).
          prior: GaussianPrior or None (no prior term).
          lpips_params: LPIPS state when the config uses LPIPS.
          progress: optional callback(steps_done, losses [B]).
          snapshot: optional callback(variables) after each dispatch, with the batch's current
            variables ({"latent": ..., "noise": ...}, each [B, ...]); they are donated to the next
            dispatch, so copy what you keep (e.g. for a progress video).
          encode: optional fn(inputs [B, H, W, C]) -> W+ codes [B, num_ws, w_dim], an encoder of the
            measurements (the targets for `invert`); the space starts from its codes.
        Returns:
          InversionResult (ws [B, num_ws, w_dim], images [B, H, W, C], terms {name: [B]}, noise, latents).
        """
        measured = targets if self.task.name == "invert" else self.measurements(seeds, targets)
        feats = self.features(lpips_params, measured)
        codes = None if encode is None else self.encoder_codes(encode, gen_params, measured)
        state = self.init(gen_params, seeds, targets, codes)
        for _ in range(self.num_dispatches()):
            state, loss = self.run(gen_params, lpips_params, prior, state, targets, feats)
            if snapshot is not None:
                snapshot(state["images"]["variables"])
            if progress is not None:
                progress(int(state["step"]), loss)
            interrupts.check()
        return self.evaluate(gen_params, lpips_params, prior, state, targets, feats)
