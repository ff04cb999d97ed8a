"""Inverts images into a StyleGAN2 latent space with the Gaussianized prior (the main job).

    python -m experiments.invert --outdir=out/invert \
        [--generator=DIR] [--prior=prior.npz] [--images=DIR|GLOB|FILE] [--space=w|wplus] \
        [--prior_weight=1e-5] [--steps=1000] [--batch_size=8] [--loss=mse|lpips|mse+lpips --vgg=FILE] \
        [--optimize_noise]

Per image it writes NAME.npz (`w` [1, num_ws, w_dim], the official projector's format), NAME.png
(the reconstruction) and one line in summary.jsonl. Rerunning with the same flags resumes: finished
images are skipped; run.json records the settings, and a rerun with other settings is refused. Without --generator it uses the built-in demo generator (seeded random weights);
without --images it inverts images the generator makes from seeded latents and reports the latent
error against the true latents. Without --prior a prior is fitted once and cached beside the
generator (prior.npz in its directory; in --outdir for the demo generator).
"""

import dataclasses
import hashlib
import json
import pathlib
import sys
import time
import zlib

import jax
import numpy as np
from absl import app, flags
from flax import nnx

from converters import vgg
from gaussjax.analysis import prior as prior_lib
from gaussjax.files import checkpoints, images, results
from gaussjax.inversion import sharding
from gaussjax.networks.demo import DEMO_NOTICE, demo_generator
from gaussjax.inversion import InversionConfig, Inverter, make_optimizer
from gaussjax.networks.stylegan2 import PureGenerator

_OUTDIR = flags.DEFINE_string("outdir", None, "Output directory (resumable).")
_GENERATOR = flags.DEFINE_string("generator", None, "Generator directory; default: built-in demo generator.")
_PRIOR = flags.DEFINE_string("prior", None, "prior.npz from experiments.fit_prior; default: fit and cache.")
_IMAGES = flags.DEFINE_string("images", None, "Directory, glob or file; default: generated targets.")
_SPACE = flags.DEFINE_enum("space", "wplus", ["w", "wplus"], "Latent space.")
_PRIOR_WEIGHT = flags.DEFINE_float("prior_weight", InversionConfig.prior_weight, "λ; 0 turns the prior off.")
_STEPS = flags.DEFINE_integer("steps", InversionConfig.num_steps, "Optimisation steps per image.")
_STEPS_PER_DISPATCH = flags.DEFINE_integer("steps_per_dispatch", 50, "Steps per device call.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Images inverted together (global, over all devices).")
_LOSS = flags.DEFINE_enum("loss", "mse", ["mse", "lpips", "mse+lpips"], "Data term(s).")
_LPIPS_WEIGHT = flags.DEFINE_float("lpips_weight", 1.0, "Weight of LPIPS when --loss includes it.")
_VGG = flags.DEFINE_string("vgg", None, "LPIPS weights: NVIDIA vgg16.pt, or torchvision vgg16 state dict.")
_LPIPS_LIN = flags.DEFINE_string("lpips_lin", None, "LPIPS v0.1 lin weights (with a torchvision --vgg).")
_OPTIMIZE_NOISE = flags.DEFINE_bool("optimize_noise", False, "Also optimise the noise maps (official reg).")
_LR = flags.DEFINE_float("learning_rate", InversionConfig.learning_rate, "Peak learning rate.")
_OPTIMIZER = flags.DEFINE_string("optimizer", "adam", "optax optimiser name.")
_NUM_GENERATED = flags.DEFINE_integer("num_generated", 4, "Generated targets when --images is absent.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of generated targets and of the prior fit.")
_PRIOR_SAMPLES = flags.DEFINE_integer("prior_samples", 10000, "Samples when a prior has to be fitted.")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Run as one of several processes: jax.distributed.initialize() "
                                "(cluster autodetection unless the three flags below are given).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")


def log(msg):
    if jax.process_index() == 0:
        print(msg, flush=True)


def load_generator(path):
    if path is None:
        log(DEMO_NOTICE)
        return demo_generator(), None
    return checkpoints.load_generator_module(path), pathlib.Path(path)


def obtain_prior(fns, params, generator, fingerprint, gen_dir, outdir):
    """Loads --prior, or the cached prior beside the generator, or fits and caches one.

    A cached prior fitted with other --prior_samples / --seed is refitted, not silently reused.
    """
    if _PRIOR.value:
        return prior_lib.load_prior(_PRIOR.value, expected_fingerprint=fingerprint)
    cache = (gen_dir or outdir) / "prior.npz"
    if cache.exists():
        prior, stats = prior_lib.load_prior(cache, expected_fingerprint=fingerprint)
        if (stats["num_samples"], stats["seed"]) == (_PRIOR_SAMPLES.value, _SEED.value):
            log(f"using cached prior {cache}")
            return prior, stats
        log(f"cached prior {cache} was fitted with {stats['num_samples']} samples, seed {stats['seed']}: refitting")
    log(f"no --prior: fitting one from {_PRIOR_SAMPLES.value} samples (seed {_SEED.value}); caching it at {cache}")
    stats = prior_lib.fit_generator_prior(fns, params, generator.cfg, num_samples=_PRIOR_SAMPLES.value,
                                          seed=_SEED.value)
    if jax.process_index() == 0:
        prior_lib.save_prior(cache, stats, fingerprint)
    return prior_lib.make_prior(stats["mean"], stats["cov"], stats["negative_slope"]), stats


def image_seed(name: str) -> int:
    """Per-image PRNG seed from its name: results do not depend on batch composition or order."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def file_targets(spec, outdir):
    """Input files still to do, as {name, file}; pixels are read batch by batch (`load_pixels`)."""
    paths = images.image_files(spec)
    if not paths:
        raise ValueError(f"--images={spec} matches no image files")
    done = results.finished_names(outdir)
    targets = [{"name": n, "file": str(p)} for n, p in zip(images.output_names(paths), paths) if n not in done]
    return targets, len(paths)


def load_pixels(target, cfg, outdir):
    """float32 [H, W, C] in [-1, 1] for a target; None (recorded in the summary) if unreadable.

    Unreadable files are tried again on every run, so a file fixed later is picked up.
    """
    if "pixels" in target:
        return target["pixels"]
    try:
        return images.to_float(images.load_image(target["file"], cfg.img_resolution, cfg.img_channels))
    except ValueError as e:
        print(f"skipping {target['file']}: {e}", flush=True)
        results.append_summary(outdir, {**target, "status": "unreadable", "reason": str(e)})
        return None


def generated_targets(fns, params, cfg, outdir):
    """Targets rendered from seeded latents (W for --space=w; per-layer styles mixed for W+)."""
    done = results.finished_names(outdir)
    out = []
    for i in range(_NUM_GENERATED.value):
        seed = _SEED.value * 100003 + i
        rs = np.random.RandomState(seed)
        rows = 1 if _SPACE.value == "w" else cfg.num_ws
        z = rs.randn(rows, cfg.z_dim).astype(np.float32)
        c = np.tile(np.eye(cfg.c_dim, dtype=np.float32)[rs.randint(cfg.c_dim)], (rows, 1)) if cfg.c_dim else None
        ws = np.asarray(fns.mapping(params, z, c))  # [rows, num_ws, w_dim]
        true_ws = ws[0] if rows == 1 else ws[np.arange(cfg.num_ws), np.arange(cfg.num_ws)]
        name = f"generated{i:04d}"
        if name in done:
            continue
        pixels = np.asarray(fns.synthesis(params, true_ws[None]))[0]
        out.append({"name": name, "file": None, "pixels": pixels, "true_ws": true_ws})
    return out, _NUM_GENERATED.value


def inversion_config():
    lpips_weight = _LPIPS_WEIGHT.value if "lpips" in _LOSS.value else 0.0
    return InversionConfig(space=_SPACE.value, num_steps=_STEPS.value, steps_per_dispatch=_STEPS_PER_DISPATCH.value,
                           optimizer=_OPTIMIZER.value, learning_rate=_LR.value,
                           mse_weight=1.0 if "mse" in _LOSS.value else 0.0, lpips_weight=lpips_weight,
                           prior_weight=_PRIOR_WEIGHT.value, optimize_noise=_OPTIMIZE_NOISE.value)


def load_lpips(cfg: InversionConfig):
    """(graphdef, params) of the LPIPS model, or (None, None) when the loss does not use it."""
    if cfg.lpips_weight == 0:
        return None, None
    if not _VGG.value:
        raise ValueError("--loss with lpips needs --vgg=FILE (NVIDIA vgg16.pt or a torchvision vgg16 state dict); "
                         "pretrained VGG weights are not bundled")
    return nnx.split(vgg.load_lpips(_VGG.value, _LPIPS_LIN.value))


class Progress:
    """One status line per dispatch with image-steps/s (a progress bar that logs well to files)."""

    def __init__(self, total_images, steps):
        self.total, self.steps, self.done_images = total_images, steps, 0
        self.t0 = time.perf_counter()
        self.image_steps = 0

    def batch_callback(self, batch_images):
        start = time.perf_counter()

        def callback(step, loss):
            rate = (self.image_steps + batch_images * step) / max(time.perf_counter() - self.t0, 1e-9)
            bar = "#" * int(20 * step / self.steps)
            log(f"[{bar:<20}] images {self.done_images}/{self.total}  step {step}/{self.steps}  "
                f"loss {float(np.mean(loss)):.4g}  {rate:.1f} image-steps/s  ({time.perf_counter() - start:.0f}s)")

        return callback

    def finish_batch(self, batch_images):
        self.done_images += batch_images
        self.image_steps += batch_images * self.steps


def run_batches(targets, inverter, gen_params, prior, lpips_params, outdir, mesh, gen_cfg):
    """Inverts this process's share of `targets` in fixed-size batches.

    Images are read batch by batch. Short batches are padded (one compile serves all), and every
    process runs the same number of batches, padding with a dummy target when its share runs out:
    the batch is one global array, so all processes must take part in every step.
    """
    per_process = sharding.local_batch_size(min(_BATCH.value, len(targets)))
    mine = targets[jax.process_index()::jax.process_count()]
    num_batches = -(-len(targets) // (per_process * jax.process_count()))
    progress = Progress(len(mine), inverter.cfg.num_steps)
    ok = 0
    for start in range(0, num_batches * per_process, per_process):
        loaded = [(t, load_pixels(t, gen_cfg, outdir)) for t in mine[start:start + per_process]]
        batch = [t for t, pixels in loaded if pixels is not None]
        pixels = [p for _, p in loaded if p is not None] or [np.zeros(_image_shape(gen_cfg), np.float32)]
        names = [t["name"] for t in batch] or ["padding"]
        # Pad by repeating the last image: one compiled shape serves every batch.
        pixels = np.stack(pixels + [pixels[-1]] * (per_process - len(pixels))).astype(np.float32)
        seeds = np.asarray([image_seed(n) for n in names + [names[-1]] * (per_process - len(names))], np.int32)
        t0 = time.perf_counter()
        result = inverter.invert(gen_params, *sharding.shard_batch(mesh, (pixels, seeds)), prior=prior,
                                 lpips_params=lpips_params, progress=progress.batch_callback(len(batch)))
        if not batch:
            continue
        result = jax.tree.map(lambda x: sharding.local_rows(x)[:len(batch)], result)
        ok += results.save_batch(outdir, batch, result, inverter.cfg, (time.perf_counter() - t0) / len(batch))
        progress.finish_batch(len(batch))
    return ok


def _image_shape(gen_cfg):
    return (gen_cfg.img_resolution, gen_cfg.img_resolution, gen_cfg.img_channels)


def check_run_settings(outdir, settings: dict) -> None:
    """Records the settings of the first run in OUTDIR/run.json; a resume with others is refused
    (finished images would otherwise silently mix two experiments)."""
    path = outdir / "run.json"
    if path.exists():
        previous = json.loads(path.read_text())
        changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
        if changed:
            raise ValueError(f"{outdir} holds results of a run with other settings ({', '.join(changed)}); "
                             f"use a new --outdir or the same flags")
    elif jax.process_index() == 0:
        checkpoints.write_bytes_atomic(path, (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode())


def run_settings(cfg: InversionConfig, fingerprint: str, stats) -> dict:
    """What determines the results (not batch size or steps per dispatch, which do not)."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "steps_per_dispatch"}
    prior_id = hashlib.sha256(np.asarray(stats["cov"], np.float64).tobytes()).hexdigest()[:16]
    return {**settings, "generator": fingerprint, "prior": prior_id, "seed": _SEED.value,
            "images": _IMAGES.value, "num_generated": None if _IMAGES.value else _NUM_GENERATED.value}


def start_distributed():
    """Joins the other processes; on CPU the collectives go through gloo."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)


def check_flags():
    for flag in (_BATCH, _NUM_GENERATED, _STEPS, _STEPS_PER_DISPATCH):
        if flag.value < 1:
            raise ValueError(f"--{flag.name} must be >= 1, got {flag.value}")
    if _PRIOR_SAMPLES.value < 2:
        raise ValueError(f"--prior_samples must be >= 2, got {_PRIOR_SAMPLES.value}")


def prepare(outdir):
    """Everything before the optimisation; raises ValueError/OSError for bad input."""
    check_flags()
    cfg = inversion_config()
    optimizer = make_optimizer(cfg)  # an unknown --optimizer fails here, before any heavy work
    lpips_fns, lpips_params = load_lpips(cfg)
    generator, gen_dir = load_generator(_GENERATOR.value)
    fns, params = PureGenerator.split(generator)
    fingerprint = checkpoints.generator_fingerprint(generator)  # hashes every weight: once per run
    prior, stats = obtain_prior(fns, params, generator, fingerprint, gen_dir, outdir)
    check_run_settings(outdir, run_settings(cfg, fingerprint, stats))
    if _IMAGES.value:
        targets, total = file_targets(_IMAGES.value, outdir)
    else:
        targets, total = generated_targets(fns, params, generator.cfg, outdir)
    inverter = Inverter(fns, generator.cfg, cfg, stats["mean_w"], stats["w_std"], lpips_fns=lpips_fns,
                        optimizer=optimizer)
    return generator, params, prior, lpips_params, inverter, targets, total


def main(argv):
    del argv
    if _MULTIHOST.value:
        start_distributed()
    if not _OUTDIR.value:
        sys.exit("error: --outdir is required")
    outdir = pathlib.Path(_OUTDIR.value)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        generator, params, prior, lpips_params, inverter, targets, total = prepare(outdir)
    except (ValueError, FileNotFoundError, OSError) as e:
        sys.exit(f"error: {e}")
    cfg = inverter.cfg
    log(f"{total} images: {total - len(targets)} already done, {len(targets)} to invert in {cfg.space} "
        f"({cfg.num_steps} steps, λ={cfg.prior_weight}, loss {_LOSS.value}) on {jax.device_count()} device(s)")
    mesh = sharding.data_mesh()
    ok = 0
    if targets:
        ok = run_batches(targets, inverter, sharding.replicate(mesh, params),
                         sharding.replicate(mesh, prior if cfg.prior_weight > 0 else None),
                         lpips_params, outdir, mesh, generator.cfg)
    finished = len(results.finished_names(outdir))
    log(f"inverted {ok} now, {finished}/{total} finished in total; results in {outdir}")
    if finished == 0:
        sys.exit("error: no image could be inverted (see summary.jsonl)")


if __name__ == "__main__":
    jax.config.config_with_absl()  # --jax_platforms, --jax_num_cpu_devices, ... work as flags
    app.run(main)
