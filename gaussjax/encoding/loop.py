"""A resumable encoder training run: dispatches of many iterations, snapshots, crash-safe files.

    OUTDIR/run.json            encoder and training config, generator, prior, seed (a resume must
                               match; only --kimg may change, and raising it continues training)
    OUTDIR/checkpoint/         the EncoderState (Orbax), replaced atomically at each snapshot
    OUTDIR/encoder/            the encoder as of the last snapshot (saved.py; --encoder=OUTDIR)
    OUTDIR/log.jsonl           one line per dispatch: kimg, iteration and the loss terms (no
                               timings, so a resumed run's log equals an uninterrupted one's)
    OUTDIR/samples/kimgKIMG.png  fixed generated targets (and real ones): target | reconstruction

A run killed at any point restarts from its last snapshot: the log is cut back to it, and every
iteration's randomness comes from fold_in(key, iteration), so the run continues bit for bit.
"""

import dataclasses
import functools
import json
import pathlib
import time

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gaussjax import interrupts
from gaussjax.analysis import prior as prior_lib
from gaussjax.encoding import saved, training
from gaussjax.encoding.network import EncoderConfig
from gaussjax.files import images, results, visuals
from gaussjax.files.safe_io import write_bytes_atomic
from gaussjax.inversion import sharding
from gaussjax.inversion.batches import format_seconds
from gaussjax.networks.stylegan2 import Buffer
from gaussjax.training.loop import load_state, save_state, start_or_resume

CHECKPOINT_DIR, LOG_FILE, SAMPLES_DIR = "checkpoint", "log.jsonl", "samples"
SHEET_ROWS = 8  # generated targets in every sample sheet (plus up to as many real ones)


@dataclasses.dataclass
class EncoderRun:
    """Where, how long, and the inputs besides the generator.

    Attributes:
      outdir: run folder (resumable). total_kimg: train until this many thousand generated images.
      snapshot_kimg: checkpoint, encoder export and sample sheet every so often.
      seed: initialisation and training randomness. prior: PriorStats of the generator.
      reals: [M, R, R, C] float32 real images (image loss only), or None; images: their glob.
      lpips: (graphdef, params) of LPIPS when lpips_weight > 0, else None.
    """

    outdir: str
    total_kimg: float
    prior: object
    snapshot_kimg: float = 5.0
    seed: int = 0
    reals: np.ndarray | None = None
    images: str | None = None
    lpips: tuple | None = None
    log: object = functools.partial(print, flush=True)


def run_record(enc_cfg: EncoderConfig, cfg, fingerprint: str, run: EncoderRun) -> dict:
    return {
        "encoder": enc_cfg.to_dict(),
        "training": dataclasses.asdict(cfg),
        "generator": fingerprint,
        "prior": prior_lib.covariance_id(run.prior.cov),
        "seed": run.seed,
        "images": run.images,
    }


def check_run(gen_cfg, cfg, run: EncoderRun) -> None:
    if gen_cfg.c_dim > 0:
        raise ValueError("encoder training needs an unconditional generator (this one has classes)")
    devices = jax.device_count()
    for name in ("batch_size", "real_batch_size"):
        if getattr(cfg, name) % devices:
            raise ValueError(
                f"{name} {getattr(cfg, name)} is not a multiple of the {devices} devices"
            )
    if cfg.lpips_weight > 0 and run.lpips is None:
        raise ValueError("lpips_weight > 0 needs VGG16 weights (vgg=FILE)")
    if run.total_kimg <= 0 or run.snapshot_kimg <= 0:
        raise ValueError("kimg and snapshot_kimg must be > 0")


def train_encoder(
    run: EncoderRun,
    gen_fns,
    gen_params,
    gen_cfg,
    fingerprint: str,
    cfg: training.EncoderTrainConfig,
) -> dict:
    """Trains (or resumes) until `run.total_kimg`; returns the last log line.

    gen_fns, gen_params: PureGenerator.split of the generator; fingerprint: its fingerprint
    (recorded in run.json and in the exported encoder)."""
    check_run(gen_cfg, cfg, run)
    enc_cfg = EncoderConfig.for_generator(gen_cfg, cfg.width)
    record = run_record(enc_cfg, cfg, fingerprint, run)
    defaults = {"training": dataclasses.asdict(training.EncoderTrainConfig())}
    start_or_resume(run.outdir, record, run.log, defaults)
    encoder = saved.new_encoder(enc_cfg, run.prior, run.seed)
    graph, params, buffers = nnx.split(encoder, nnx.Param, Buffer)
    state = training.init_state(params, cfg)
    state = load_state(run.outdir, state) or state
    cut_log(pathlib.Path(run.outdir) / LOG_FILE, int(state.iteration))
    mesh = sharding.data_mesh()
    batch_sharding = NamedSharding(mesh, P(sharding.DATA_AXIS)) if jax.device_count() > 1 else None
    lpips_graph, lpips_params = run.lpips or (None, None)
    trainer = training.Trainer(gen_fns, graph, lpips_graph, cfg, batch_sharding)
    prior = prior_lib.make_prior(run.prior.mean, run.prior.cov, run.prior.negative_slope)
    inputs = sharding.replicate(mesh, (state, buffers, gen_params, prior, lpips_params, run.reals))
    return _train_loop(run, trainer, inputs, fingerprint)


def _train_loop(run: EncoderRun, trainer, inputs, fingerprint) -> dict:
    state, *constants = inputs
    cfg = trainer.cfg
    key = jax.random.key(run.seed)
    total = int(round(run.total_kimg * 1000 / cfg.batch_size))
    per_snapshot = max(1, int(round(run.snapshot_kimg * 1000 / cfg.batch_size)))
    line, started, start_iteration = {}, time.perf_counter(), int(state.iteration)
    saved_iteration = start_iteration
    try:
        with interrupts.stop_at_safe_points():
            while (done := int(state.iteration)) < total:
                todo = min(cfg.steps_per_dispatch, total - done, per_snapshot - done % per_snapshot)
                state, terms = training.train_dispatch(trainer, state, *constants, key, todo)
                iteration = int(state.iteration)
                line = log_dispatch(run, cfg, iteration, jax.device_get(terms))
                per_iteration = (time.perf_counter() - started) / (iteration - start_iteration)
                run.log(progress_line(line, run.total_kimg, per_iteration, total - iteration))
                if iteration % per_snapshot == 0 or iteration == total:
                    host_state = jax.device_get(state)
                    save_state(run.outdir, host_state)  # what a rerun resumes from
                    saved_iteration = iteration
                    snapshot(run, trainer, host_state, constants, fingerprint)
                interrupts.check()
    except KeyboardInterrupt:
        kimg = saved_iteration * cfg.batch_size / 1000
        where = f"from its snapshot at {kimg:g} kimg" if saved_iteration else "(no snapshot yet)"
        raise KeyboardInterrupt(f"interrupted; the same command resumes {where}") from None
    return line


def log_dispatch(run: EncoderRun, cfg, iteration: int, terms: dict) -> dict:
    line = {"kimg": round(iteration * cfg.batch_size / 1000, 3), "iteration": iteration}
    line |= {k: float(v) for k, v in terms.items()}
    results.append_summary(run.outdir, line, LOG_FILE)
    return line


def progress_line(line: dict, total_kimg: float, seconds_per_iteration: float, left: int) -> str:
    """kimg done of the total, the non-zero loss terms, speed and the estimated time left."""
    shown = "  ".join(f"{k} {line[k]:.4g}" for k in training.TERMS if line.get(k))
    kimg_rate = seconds_per_iteration * 1000 * line["kimg"] / max(line["iteration"], 1)
    return (
        f"kimg {line['kimg']:.2f}/{total_kimg:g}  {shown}  {kimg_rate:.1f} s/kimg  "
        f"ETA {format_seconds(seconds_per_iteration * left)}"
    )


def cut_log(path: pathlib.Path, iteration: int) -> None:
    """Keeps the log lines up to `iteration` (a resumed run repeats the rest), atomically; a line
    torn by a crash is dropped."""
    if not path.exists():
        return
    kept = []
    for text in path.read_text().splitlines():
        try:
            if json.loads(text)["iteration"] <= iteration:
                kept.append(text + "\n")
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    write_bytes_atomic(path, "".join(kept).encode())


def snapshot(run: EncoderRun, trainer, host_state, constants, fingerprint: str) -> None:
    """Encoder export and sample sheet of `host_state` (an EncoderState on the host, already
    checkpointed)."""
    buffers, gen_params = jax.device_get((constants[0], constants[1]))
    kimg = int(host_state.iteration) * trainer.cfg.batch_size / 1000
    encoder = nnx.merge(trainer.encoder_graph, host_state.params, buffers)
    meta = {"kimg": round(kimg, 3), "source": "experiments.train_encoder", "seed": run.seed}
    saved.save_encoder(pathlib.Path(run.outdir) / saved.EXPORT_DIR, encoder, fingerprint, meta)
    targets = sheet_targets(trainer, gen_params, run)
    _, recs = training.encode_batch(trainer, host_state.params, buffers, gen_params, targets)
    sheet = visuals.comparison_sheet(images.to_uint8(targets), images.to_uint8(np.asarray(recs)))
    samples = pathlib.Path(run.outdir) / SAMPLES_DIR
    samples.mkdir(exist_ok=True)
    images.save_png(samples / f"kimg{kimg:09.3f}.png", sheet)
    run.log(f"snapshot at {kimg:g} kimg: {samples.name}/kimg{kimg:09.3f}.png, {saved.EXPORT_DIR}/")


def sheet_targets(trainer, gen_params, run: EncoderRun) -> np.ndarray:
    """SHEET_ROWS generated images of fixed z (seed + 1), then the first real images."""
    generated = np.asarray(training.generated_images(trainer, gen_params, run.seed + 1, SHEET_ROWS))
    if run.reals is None:
        return generated
    return np.concatenate([generated, np.asarray(run.reals[:SHEET_ROWS], np.float32)])
