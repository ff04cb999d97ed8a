"""The inversion run: targets -> batches -> engine -> crash-safe result files. No flags here, so
every launcher (experiments.invert and the paper's experiments) runs inversions the same way.

    spec = RunSpec(outdir=pathlib.Path("out"), config=InversionConfig.for_space("f_zplus"),
                   generator="models/ffhq", images="photos/*.jpg")
    summary = run(spec)          # resumable: rerun the same spec to continue

What `run` does, in order: validate everything it can before writing anything; load the generator,
the prior (a file, the cache beside the generator, or a fresh fit that is then cached) and LPIPS;
refuse an output folder that holds results of other settings (`run.json`); list the targets still
to do (files, or images rendered from seeded latents); create the output folder and record the
settings; invert the targets in fixed-size batches, sharded over every device of every process;
write NAME.npz / NAME.png and a summary line per image, and what people look at (run_outputs:
prepared targets, sheets, loss traces and curve, videos); return the end-of-run report.
"""

import dataclasses
import functools
import hashlib
import json
import pathlib
import time
import zlib
from collections.abc import Callable

import jax
import numpy as np
from flax import nnx

from gaussjax.analysis import prior as prior_lib
from gaussjax.files import checkpoints, images, lpips_weights, prefetch, results
from gaussjax.files.checkpoints import generator_or_builtin
from gaussjax.files.safe_io import read_json, write_bytes_atomic
from gaussjax.inversion import run_outputs, sharding
from gaussjax.inversion.config import InversionConfig
from gaussjax.inversion.engine import Inverter, make_optimizer
from gaussjax.networks.stylegan2 import PureGenerator

# Spaces with one latent vector for every layer: generated targets for them come from one z.
SINGLE_CODE_SPACES = ("w", "z", "f_w", "f_z")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything a run needs. `config` is the resolved InversionConfig (space defaults applied).

    Attributes:
      outdir: results folder (resumable).
      config: the inversion hyperparameters.
      generator: generator directory, None for the built-in generator.
      prior: prior.npz, None to use the cached one or fit and cache one.
      images: directory, glob or file of targets; None for images rendered from seeded latents.
      num_generated: number of rendered targets when `images` is None.
      seed: seed of rendered targets and of a prior fit.
      prior_samples: mapping samples when a prior has to be fitted.
      batch_size: global batch (over all devices and processes).
      vgg, lpips_lin: LPIPS weight files (see files.lpips_weights.load_lpips).
      lpips_explicit: the user asked for LPIPS; without `vgg` that is an error. Otherwise (a space's
        default loss) the LPIPS term is dropped with a notice and the summary records the loss used.
      save_video: also write video/NAME.gif, the image after every dispatch (run_outputs).
      log: where progress lines go (process 0 only).
    """

    outdir: pathlib.Path
    config: InversionConfig
    generator: str | None = None
    prior: str | None = None
    images: str | None = None
    num_generated: int = 4
    seed: int = 0
    prior_samples: int = 10000
    batch_size: int = 8
    vgg: str | None = None
    lpips_lin: str | None = None
    lpips_explicit: bool = False
    save_video: bool = False
    log: Callable[[str], None] = print


@dataclasses.dataclass
class RunSummary:
    """inverted: images inverted by this call; finished: results in outdir; total: targets;
    report: the end-of-run summary lines (results.run_report)."""

    inverted: int
    finished: int
    total: int
    report: list[str] = dataclasses.field(default_factory=list)


def resolve_lpips(spec: RunSpec) -> RunSpec:
    """Drops a space's default LPIPS term when no VGG weights were given (one notice); an explicit
    request for LPIPS without weights is an error."""
    cfg = spec.config
    if cfg.loss.lpips_weight == 0 or spec.vgg:
        return spec
    if spec.lpips_explicit:
        raise ValueError(
            "--loss with lpips needs --vgg=FILE (NVIDIA vgg16.pt or a torchvision vgg16 state "
            "dict); pretrained VGG weights are not bundled"
        )
    if cfg.loss.mse_weight == 0:
        raise ValueError(f"space {cfg.space} uses LPIPS only: pass --vgg=FILE")
    spec.log(
        f"note: no --vgg weights, so the {cfg.space} space's LPIPS term (weight {cfg.loss.lpips_weight:g}) "
        f"is dropped; the loss is {cfg.replace(lpips_weight=0.0).loss.label}"
    )
    return dataclasses.replace(spec, config=cfg.replace(lpips_weight=0.0))


def load_lpips(spec: RunSpec):
    """(graphdef, params) of the LPIPS model, or (None, None) when the loss does not use it."""
    if spec.config.loss.lpips_weight == 0:
        return None, None
    return nnx.split(lpips_weights.load_lpips(spec.vgg, spec.lpips_lin))


def load_generator(spec: RunSpec):
    """(Generator, its directory or None for the built-in generator, whose prior is cached in the
    output directory: the installed package is not written to)."""
    generator = generator_or_builtin(spec.generator, spec.log)
    return generator, None if spec.generator is None else pathlib.Path(spec.generator)


def obtain_prior(spec: RunSpec, fns, params, generator, fingerprint, gen_dir):
    """Loads spec.prior, or the cached prior beside the generator, or fits and caches one.

    A cached prior fitted with other prior_samples / seed is refitted, not silently reused.
    """
    if spec.prior:
        return prior_lib.load_prior(spec.prior, expected_fingerprint=fingerprint)
    cache = (gen_dir or spec.outdir) / checkpoints.PRIOR_FILE
    if cache.exists():
        prior, stats = prior_lib.load_prior(cache, expected_fingerprint=fingerprint)
        if (stats["num_samples"], stats["seed"]) == (spec.prior_samples, spec.seed):
            spec.log(f"using cached prior {cache}")
            return prior, stats
        spec.log(
            f"cached prior {cache} was fitted with {stats['num_samples']} samples, seed {stats['seed']}: "
            "refitting"
        )
    spec.log(
        f"no --prior: fitting one from {spec.prior_samples} samples (seed {spec.seed}); caching it at {cache}"
    )
    stats = prior_lib.fit_generator_prior(
        fns, params, generator.cfg, num_samples=spec.prior_samples, seed=spec.seed
    )
    if jax.process_index() == 0:
        cache.parent.mkdir(parents=True, exist_ok=True)
        prior_lib.save_prior(cache, stats, fingerprint)
    return prior_lib.make_prior(stats["mean"], stats["cov"], stats["negative_slope"]), stats


def image_seed(name: str, seed: int = 0) -> int:
    """Per-image PRNG seed from its name (and the run's seed when it is not 0, so that repeated
    runs over the same files differ): results do not depend on batch composition or order."""
    text = name if seed == 0 else f"{seed}:{name}"
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def file_targets(spec: RunSpec):
    """Every input file as {name, file, done}; pixels are read ahead of the device, batch by batch (`read_pixels`)."""
    paths = images.image_files(spec.images)
    if not paths:
        raise ValueError(f"--images={spec.images} matches no image files")
    done = results.finished_names(spec.outdir)
    names = images.output_names(paths)
    return [{"name": n, "file": str(p), "done": n in done} for n, p in zip(names, paths)]


def read_pixels(target, gen_cfg):
    """float32 [H, W, C] in [-1, 1] for a target, or the ValueError saying why it is unreadable.

    Pure (no output), so it can run in background threads ahead of the device.
    """
    if "pixels" in target:
        return target["pixels"]
    try:
        return images.to_float(
            images.load_image(target["file"], gen_cfg.img_resolution, gen_cfg.img_channels)
        )
    except ValueError as e:
        return e


def checked_pixels(target, pixels, outdir):
    """`pixels`, or None after recording an unreadable target in the summary.

    Unreadable files are tried again on every run, so a file fixed later is picked up.
    """
    if not isinstance(pixels, ValueError):
        return pixels
    print(f"skipping {target['file']}: {pixels}", flush=True)
    results.append_summary(outdir, {**target, "status": "unreadable", "reason": str(pixels)})
    return None


def generated_targets(spec: RunSpec, fns, params, gen_cfg):
    """Targets rendered from seeded latents: one z for single-code spaces, one z per layer (styles
    mixed) otherwise. Each keeps its true W+ code, so the latent error can be reported."""
    done = results.finished_names(spec.outdir)
    rows = 1 if spec.config.space in SINGLE_CODE_SPACES else gen_cfg.num_ws
    out = []
    for i in range(spec.num_generated):
        rs = np.random.RandomState(spec.seed * 100003 + i)
        z = rs.randn(rows, gen_cfg.z_dim).astype(np.float32)
        class_idx = (
            spec.config.class_idx
            if spec.config.class_idx is not None
            else rs.randint(max(gen_cfg.c_dim, 1))
        )
        ws = np.asarray(
            fns.mapping(params, z, gen_cfg.class_labels(class_idx, rows))
        )  # [rows, num_ws, w_dim]
        true_ws = ws[0] if rows == 1 else ws[np.arange(gen_cfg.num_ws), np.arange(gen_cfg.num_ws)]
        name = f"generated{i:04d}"
        pixels = np.asarray(fns.synthesis(params, true_ws[None]))[0]
        out.append(
            {"name": name, "file": None, "pixels": pixels, "true_ws": true_ws, "done": name in done}
        )
    return out


class Progress:
    """One status line per dispatch (a progress bar that logs well to files): the images being
    inverted, the batch, images done, step, mean loss, image-steps/s and the estimated time left."""

    def __init__(self, total_images: int, num_batches: int, steps: int, log):
        self.total, self.num_batches, self.steps, self.log = total_images, num_batches, steps, log
        self.done_images, self.done_batches, self.image_steps = 0, 0, 0
        self.t0 = time.perf_counter()

    def batch_callback(self, batch_images: int):
        """callback(step, loss [B]) for the next batch of `batch_images` images."""

        def callback(step, loss):
            elapsed = max(time.perf_counter() - self.t0, 1e-9)
            rate = (self.image_steps + batch_images * step) / elapsed
            fraction = (self.done_batches + step / self.steps) / self.num_batches
            bar = "#" * int(20 * step / self.steps)
            first, last = self.done_images + 1, self.done_images + batch_images
            self.log(
                f"[{bar:<20}] images {first}{f'-{last}' if last > first else ''} of "
                f"{self.total} (batch {self.done_batches + 1}/{self.num_batches}, "
                f"{self.done_images} done)  step {step}/{self.steps}  "
                f"loss {float(np.mean(loss)):.4g}  {rate:.1f} image-steps/s  "
                f"ETA {format_seconds(elapsed * (1 - fraction) / fraction)}"
            )

        return callback

    def finish_batch(self, saved_images: int, batch_images: int):
        self.done_images += saved_images
        self.done_batches += 1
        self.image_steps += batch_images * self.steps


def format_seconds(seconds: float) -> str:
    """'45s', '3m05s', '2h07m'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def run_batches(
    spec: RunSpec, targets, inverter, gen_params, prior, lpips_params, mesh, gen_cfg, renderer=None
):
    """Inverts the unfinished `targets` in fixed-size batches; returns how many this process saved.

    Batches are cut from the whole target list, finished or not, so an image is inverted in the
    same batch slot, with the same companions, as in an uninterrupted run: a resumed run gives
    bit-identical results. A batch with nothing left to do is skipped; one with finished images is
    run again whole and only its unfinished images are saved. Short batches are padded (one
    compile serves all). Each process takes its slice of every global batch, and all processes run
    every batch that is not skipped: the batch is one global array. Besides the results, each
    batch writes its sheet, prepared targets, loss traces and (with a `renderer`) videos.
    """
    per_process = sharding.local_batch_size(min(spec.batch_size, len(targets)))
    global_size = per_process * jax.process_count()
    mine = jax.process_index() * per_process
    starts = [
        start
        for start in range(0, len(targets), global_size)
        if not all(t["done"] for t in targets[start : start + global_size])
    ]  # the same decision in every process
    progress = Progress(
        sum(not t["done"] for t in targets), len(starts), inverter.cfg.optim.num_steps, spec.log
    )
    # Files are decoded two batches ahead of the device, in background threads.
    reads = prefetch.ordered_map(
        functools.partial(read_pixels, gen_cfg=gen_cfg),
        [t for start in starts for t in targets[start + mine : start + mine + per_process]],
        ahead=2 * per_process,
    )
    ok = 0
    for start in starts:
        group = targets[start + mine : start + mine + per_process]
        loaded = [(t, checked_pixels(t, next(reads), spec.outdir)) for t in group]
        batch = [t for t, pixels in loaded if pixels is not None]
        recorder = run_outputs.BatchRecorder(
            progress.batch_callback(len(batch)), keep_frames=renderer is not None
        )
        t0 = time.perf_counter()
        result = inverter.invert(
            gen_params,
            *sharding.shard_batch(mesh, padded_batch(loaded, per_process, gen_cfg, spec.seed)),
            prior=prior,
            lpips_params=lpips_params,
            progress=recorder.progress,
            snapshot=recorder.snapshot,
        )
        batch_seconds = time.perf_counter() - t0
        keep = [i for i, t in enumerate(batch) if not t["done"]]
        if not keep:
            progress.finish_batch(0, len(batch))
            continue
        run_outputs.save_batch_visuals(
            spec.outdir,
            sheet_name(start // global_size),
            batch,
            [p for _, p in loaded if p is not None],
            sharding.local_rows(result.images),
            keep,
            recorder,
            renderer,
        )
        result = jax.tree.map(functools.partial(_local_rows, rows=keep), result)
        ok += results.save_batch(
            spec.outdir,
            [batch[i] for i in keep],
            result,
            inverter,
            batch_seconds / len(batch),
            traces=recorder.trace(keep),
            batch_seconds=batch_seconds,
        )
        progress.finish_batch(len(keep), len(batch))
    return ok


def sheet_name(batch_index: int) -> str:
    """batchNNNN, with the process index when several processes each write their rows."""
    suffix = f"-p{jax.process_index()}" if jax.process_count() > 1 else ""
    return f"batch{batch_index:04d}{suffix}"


def padded_batch(loaded, size: int, gen_cfg, seed: int = 0):
    """(pixels [size, H, W, C], seeds [size]) of the readable targets, padded by repeating the last
    one (a dummy image when none is readable): one compiled shape serves every batch."""
    pixels = [p for _, p in loaded if p is not None]
    names = [t["name"] for t, p in loaded if p is not None]
    if not pixels:
        res, ch = gen_cfg.img_resolution, gen_cfg.img_channels
        pixels, names = [np.zeros((res, res, ch), np.float32)], ["padding"]
    pad = size - len(pixels)
    seeds = [image_seed(n, seed) for n in names + names[-1:] * pad]
    return np.stack(pixels + pixels[-1:] * pad).astype(np.float32), np.asarray(seeds, np.int32)


def _local_rows(x, rows):
    return sharding.local_rows(x)[np.asarray(rows)]


def check_run_settings(outdir: pathlib.Path, settings: dict) -> None:
    """Refuses an output folder holding results of a run with other settings (finished images
    would otherwise silently mix two experiments). Reads only: `record_run_settings` writes.

    A folder without finished results (e.g. left by a run that failed or was stopped early) is
    never refused: its run.json is replaced when work starts.
    """
    path = outdir / "run.json"
    if not path.exists() or not results.finished_names(outdir):
        return
    previous = read_json(path)
    changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
    if changed:
        raise ValueError(
            f"{outdir} holds results of a run with other settings ({', '.join(changed)}); "
            f"use a new --outdir or the same flags"
        )


def record_run_settings(outdir: pathlib.Path, settings: dict) -> None:
    """Creates OUTDIR (every process) and writes run.json (process 0): called when work starts,
    after every check."""
    outdir.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
        text = json.dumps(settings, indent=2, sort_keys=True) + "\n"
        write_bytes_atomic(outdir / "run.json", text.encode())


def run_settings(spec: RunSpec, fingerprint: str, stats) -> dict:
    """What determines the results (not batch size, steps per dispatch or microbatch: they change
    how the work is cut, not what is computed)."""
    cuts = ("steps_per_dispatch", "microbatch")
    settings = {k: v for k, v in spec.config.to_dict().items() if k not in cuts}
    prior_id = hashlib.sha256(np.asarray(stats["cov"], np.float64).tobytes()).hexdigest()[:16]
    return {
        **settings,
        "generator": fingerprint,
        "prior": prior_id,
        "seed": spec.seed,
        "images": spec.images,
        "num_generated": None if spec.images else spec.num_generated,
    }


def check_spec(spec: RunSpec) -> None:
    for name in ("batch_size", "num_generated"):
        if getattr(spec, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(spec, name)}")
    if spec.prior_samples < 2:
        raise ValueError(f"--prior_samples must be >= 2, got {spec.prior_samples}")


def prepare(spec: RunSpec):
    """Everything before the optimisation; raises ValueError/OSError for bad input.

    Returns:
      (spec with LPIPS resolved, generator, params, prior, lpips_params, inverter, targets,
      settings): every target, each with `done` telling whether its result is already finished,
      and the settings for run.json (written by `run` when work starts).
    """
    check_spec(spec)
    spec = resolve_lpips(spec)
    cfg = spec.config
    optimizer = make_optimizer(
        cfg.optim, cfg.space
    )  # an unknown optimiser fails here, before any heavy work
    targets = file_targets(spec) if spec.images else None  # so does a mistyped --images
    lpips_fns, lpips_params = load_lpips(spec)
    generator, gen_dir = load_generator(spec)
    fns, params = PureGenerator.split(generator)
    class_label = None
    if cfg.class_idx is not None:
        class_label = generator.cfg.class_labels(cfg.class_idx, 1)[0]
    fingerprint = checkpoints.generator_fingerprint(generator)  # hashes every weight: once per run
    prior, stats = obtain_prior(spec, fns, params, generator, fingerprint, gen_dir)
    inverter = Inverter(
        fns,
        generator.cfg,
        cfg,
        stats["mean_w"],
        stats["w_std"],
        lpips_fns=lpips_fns,
        optimizer=optimizer,
        class_label=class_label,
    )
    settings = run_settings(spec, fingerprint, stats)
    check_run_settings(spec.outdir, settings)
    if targets is None:
        targets = generated_targets(spec, fns, params, generator.cfg)
    return spec, generator, params, prior, lpips_params, inverter, targets, settings


def run(spec: RunSpec) -> RunSummary:
    """Inverts every target of `spec` not yet finished in spec.outdir (see the module docstring).

    Raises:
      ValueError, OSError: bad settings or files, before any result is written.
      KeyboardInterrupt: Ctrl-C, with a one-line message saying how far the run got.
    """
    spec, generator, params, prior, lpips_params, inverter, targets, settings = prepare(spec)
    cfg = inverter.cfg
    todo = sum(not t["done"] for t in targets)
    spec.log(
        f"{len(targets)} images: {len(targets) - todo} already done, {todo} to invert in {cfg.space} "
        f"{'' if cfg.problem.task == 'invert' else f'(task {cfg.problem.task}) '}"
        f"({cfg.optim.num_steps} steps, λ={cfg.loss.prior_weight}, loss {cfg.loss.label}) on {jax.device_count()} "
        "device(s)"
    )
    mesh = sharding.data_mesh()
    inverted = 0
    if todo:
        record_run_settings(spec.outdir, settings)
        try:
            inverted = run_batches(
                spec,
                targets,
                inverter,
                sharding.replicate(mesh, params),
                sharding.replicate(mesh, prior if cfg.loss.prior_weight > 0 else None),
                lpips_params,
                mesh,
                generator.cfg,
                run_outputs.FrameRenderer(inverter.space, params) if spec.save_video else None,
            )
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"interrupted after {finished_count(spec.outdir, targets)} of {len(targets)} "
                "images; rerun the same command to resume"
            ) from None
    names = [t["name"] for t in targets]
    if inverted and jax.process_index() == 0:
        run_outputs.save_loss_curve(spec.outdir, names)
    report = results.run_report(spec.outdir, names)
    report.append(run_outputs.files_line(spec.outdir, spec.save_video))
    return RunSummary(inverted, finished_count(spec.outdir, targets), len(targets), report)


def finished_count(outdir: pathlib.Path, targets) -> int:
    """How many of `targets` have a finished result in `outdir`."""
    return len(results.finished_names(outdir) & {t["name"] for t in targets})
