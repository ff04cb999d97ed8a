"""The inversion run: targets -> batches -> engine -> crash-safe result files. No flags here, so
every launcher (experiments.invert and the paper's experiments) runs inversions the same way.

    spec = RunSpec(outdir=pathlib.Path("out"), config=InversionConfig.for_space("f_zplus"),
                   generator="models/ffhq", images="photos/*.jpg")
    summary = run(spec)          # resumable: rerun the same spec to continue

What `run` does, in order: validate everything it can before writing anything; load the generator,
the prior (a file, the cache beside the generator, or a fresh fit that is then cached) and LPIPS;
refuse an output folder that holds results of other settings (run_settings.py: `run.json`); list
the targets still to do (targets.py: files, or images rendered from seeded latents); create the
output folder and record the settings; invert the targets in fixed-size batches, sharded over every
device of every process (batches.py); write NAME.npz / NAME.png and a summary line per image
(files/results.py), and what people look at (run_outputs.py: prepared targets, sheets, loss traces
and curve, videos); return the end-of-run report.
"""

import contextlib
import dataclasses
import pathlib
from collections.abc import Callable

import jax
from flax import nnx

from gaussjax import interrupts
from gaussjax.analysis import prior as prior_lib
from gaussjax.files import checkpoints, folder_lock, lpips_weights, results
from gaussjax.files.checkpoints import generator_or_builtin
from gaussjax.inversion import run_outputs, sharding, tasks
from gaussjax.inversion.batches import BatchRun, Progress, plan_batches, run_batches
from gaussjax.inversion.config import InversionConfig
from gaussjax.inversion.engine import Inverter
from gaussjax.inversion.optimizer import make_optimizer
from gaussjax.inversion.run_settings import check_run_settings, record_run_settings, run_settings
from gaussjax.inversion.targets import Target, file_targets, generated_targets
from gaussjax.networks.stylegan2 import PureGenerator


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
      encoder: None, or an encoder the spaces start from: an object with `fingerprint`,
        `check_generator(generator_fingerprint)` and `encode(images) -> W+ codes` (a LoadedEncoder
        of gaussjax.encoding.saved); with one, num_steps may be 0 (amortised inversion).
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
    encoder: object | None = None
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
            "an LPIPS loss needs VGG16 weights (vgg=FILE: NVIDIA vgg16.pt or a torchvision vgg16 "
            "state dict); pretrained VGG weights are not bundled"
        )
    if cfg.loss.mse_weight == 0:
        raise ValueError(f"space {cfg.space} uses LPIPS only: give VGG16 weights (vgg=FILE)")
    spec.log(
        f"note: no VGG16 weights (vgg), so the {cfg.space} space's LPIPS term (weight {cfg.loss.lpips_weight:g}) "
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
        if (stats.num_samples, stats.seed) == (spec.prior_samples, spec.seed):
            spec.log(f"using cached prior {cache}")
            return prior, stats
        spec.log(
            f"cached prior {cache} was fitted with {stats.num_samples} samples, seed {stats.seed}: "
            "refitting"
        )
    spec.log(
        f"no prior file: fitting one from {spec.prior_samples} samples (seed {spec.seed}); caching it at {cache}"
    )
    stats = prior_lib.fit_generator_prior(
        fns, params, generator.cfg, num_samples=spec.prior_samples, seed=spec.seed
    )
    if jax.process_index() == 0:
        cache.parent.mkdir(parents=True, exist_ok=True)
        prior_lib.save_prior(cache, stats, fingerprint)
    return prior_lib.make_prior(stats.mean, stats.cov, stats.negative_slope), stats


def check_spec(spec: RunSpec) -> None:
    for name in ("batch_size", "num_generated"):
        if getattr(spec, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(spec, name)}")
    if spec.prior_samples < 2:
        raise ValueError(f"prior_samples must be >= 2, got {spec.prior_samples}")
    if spec.config.optim.num_steps == 0 and spec.encoder is None:
        raise ValueError("steps=0 needs an encoder to start from (give --encoder)")
    if spec.config.optim.encoder_refine and spec.encoder is None:
        raise ValueError("encoder_refine corrects an encoder's code: give --encoder")


@dataclasses.dataclass(frozen=True)
class PreparedRun:
    """A run after every check, before any work (`prepare`).

    Attributes:
      spec: the RunSpec, LPIPS resolved (`resolve_lpips`).
      generator: the Generator module; params: its state (PureGenerator.split).
      prior: the GaussianPrior; lpips_params: LPIPS state, or None.
      inverter: the Inverter of spec.config.
      targets: every Target, `done` telling whether its result was already finished.
      settings: run.json's content (written by `run` when work starts).
    """

    spec: RunSpec
    generator: object
    params: object
    prior: object
    lpips_params: object
    inverter: Inverter
    targets: list[Target]
    settings: dict


def list_targets(spec: RunSpec, finished: frozenset[str], fns=None, params=None, gen_cfg=None):
    """The run's targets: spec.images' files, or (no images) rendered from seeded latents."""
    if spec.images:
        return file_targets(spec.images, finished)
    return generated_targets(
        fns,
        params,
        gen_cfg,
        space=spec.config.space,
        count=spec.num_generated,
        seed=spec.seed,
        class_idx=spec.config.class_idx,
        finished=finished,
    )


def prepare(spec: RunSpec) -> PreparedRun:
    """Everything before the optimisation; raises ValueError/OSError for bad input, cheap checks
    (settings, optimiser name, image files) before loading anything."""
    check_spec(spec)
    spec = resolve_lpips(spec)
    cfg = spec.config
    optimizer = make_optimizer(cfg.optim, cfg.space)  # an unknown optimiser fails here
    finished = frozenset(results.finished_names(spec.outdir))
    targets = list_targets(spec, finished) if spec.images else None  # so does a mistyped glob
    lpips_fns, lpips_params = load_lpips(spec)
    generator, gen_dir = load_generator(spec)
    fns, params = PureGenerator.split(generator)
    class_label = None
    if cfg.class_idx is not None:
        class_label = generator.cfg.class_labels(cfg.class_idx, 1)[0]
    fingerprint = checkpoints.generator_fingerprint(generator)  # hashes every weight: once per run
    if spec.encoder is not None:
        spec.encoder.check_generator(fingerprint)
    prior, stats = obtain_prior(spec, fns, params, generator, fingerprint, gen_dir)
    inverter = Inverter(
        fns,
        generator.cfg,
        cfg,
        stats.mean_w,
        stats.w_std,
        lpips_fns=lpips_fns,
        optimizer=optimizer,
        class_label=class_label,
    )
    if spec.encoder is not None:
        inverter.check_encodable()
    settings = run_settings(
        cfg,
        fingerprint,
        stats.cov,
        seed=spec.seed,
        images=spec.images,
        num_generated=spec.num_generated,
        encoder=None if spec.encoder is None else spec.encoder.fingerprint,
        operator=tasks.describe(cfg.problem, generator.cfg),
    )
    check_run_settings(spec.outdir, settings, has_results=bool(finished))
    if targets is None:
        targets = list_targets(spec, finished, fns, params, generator.cfg)
    return PreparedRun(spec, generator, params, prior, lpips_params, inverter, targets, settings)


def start_line(prepared: PreparedRun) -> str:
    """What the run is about to do, in one line."""
    cfg, targets = prepared.inverter.cfg, prepared.targets
    todo = sum(not t.done for t in targets)
    operator = prepared.settings["operator"]
    task = "" if cfg.problem.task == "invert" else f"(task {cfg.problem.task}) "
    if "cs_operator" in operator:
        task = (
            f"(task {cfg.problem.task}: {operator['cs_measurements']} {operator['cs_operator']} "
            f"measurements, seed {cfg.problem.task_seed}) "
        )
    return (
        f"{len(targets)} images: {len(targets) - todo} already done, {todo} to invert in "
        f"{cfg.space} {task}({cfg.optim.num_steps} steps, λ={cfg.loss.prior_weight}, loss "
        f"{cfg.loss.label}) on {jax.device_count()} device(s)"
    )


def batch_run(prepared: PreparedRun) -> BatchRun:
    """The prepared run's inputs placed on the data mesh of every device."""
    spec, mesh = prepared.spec, sharding.data_mesh()
    uses_prior = prepared.inverter.cfg.loss.prior_weight > 0
    return BatchRun(
        spec.outdir,
        prepared.inverter,
        sharding.replicate(mesh, prepared.params),
        sharding.replicate(mesh, prepared.prior if uses_prior else None),
        prepared.lpips_params,
        mesh,
        prepared.generator.cfg,
        spec.seed,
        run_outputs.FrameRenderer(prepared.inverter.space, prepared.params)
        if spec.save_video
        else None,
        None if spec.encoder is None else spec.encoder.replicated(mesh).encode,
    )


def run(spec: RunSpec) -> RunSummary:
    """Inverts every target of `spec` not yet finished in spec.outdir (see the module docstring).

    Raises:
      ValueError, OSError: bad settings or files, before any result is written.
      KeyboardInterrupt: Ctrl-C, with a one-line message saying how far the run got.
    """
    if jax.process_index() == 0:
        folder_lock.check_free(spec.outdir)  # before `prepare`, which may cache a prior there
    prepared = prepare(spec)
    spec, targets = prepared.spec, prepared.targets
    spec.log(start_line(prepared))
    plan = plan_batches(targets, spec.batch_size)
    progress = Progress(
        sum(not t.done for t in targets),
        len(plan.starts),
        prepared.inverter.cfg.optim.num_steps,
        spec.log,
    )
    inverted = write_results(prepared, plan, progress) if plan.starts else 0
    names = [t.name for t in targets]
    report = results.run_report(spec.outdir, names)
    report.append(run_outputs.files_line(spec.outdir, spec.save_video))
    return RunSummary(inverted, finished_count(spec.outdir, targets), len(targets), report)


def write_results(prepared: PreparedRun, plan, progress: Progress) -> int:
    """Creates the output folder, takes its lock (process 0: one writing run per folder), records
    run.json and inverts the planned batches; returns the images this process saved."""
    spec, targets = prepared.spec, prepared.targets
    spec.outdir.mkdir(parents=True, exist_ok=True)
    writer = jax.process_index() == 0
    with folder_lock.locked_folder(spec.outdir) if writer else contextlib.nullcontext():
        if writer:
            check_unchanged(spec.outdir, targets)
        record_run_settings(spec.outdir, prepared.settings)
        try:
            with interrupts.stop_at_safe_points():
                inverted = run_batches(batch_run(prepared), targets, plan, progress)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"interrupted after {finished_count(spec.outdir, targets)} of {len(targets)} "
                "images; rerun the same command to resume"
            ) from None
        if inverted and writer:
            run_outputs.save_loss_curve(spec.outdir, [t.name for t in targets])
    return inverted


def check_unchanged(outdir: pathlib.Path, targets: list[Target]) -> None:
    """Refuses to write when another run finished some of our targets while this one prepared
    (it held the folder's lock then, and has released it since)."""
    todo = {t.name for t in targets if not t.done}
    if results.finished_names(outdir) & todo:
        raise folder_lock.FolderLockedError(
            f"another run wrote results into {outdir} while this one was preparing; rerun to resume"
        )


def finished_count(outdir: pathlib.Path, targets: list[Target]) -> int:
    """How many of `targets` have a finished result in `outdir` now."""
    return len(results.finished_names(outdir) & {t.name for t in targets})
