"""A resumable StyleGAN2 training run: dispatches of many iterations, snapshots, crash-safe files.

    OUTDIR/run.json            generator config, training config, seed (a resume must match)
    OUTDIR/checkpoint/         the whole TrainState (Orbax), replaced atomically at each snapshot
    OUTDIR/generator/          G EMA as an ordinary generator directory (every tool reads it)
    OUTDIR/progress.jsonl      one line per dispatch: kimg, losses, seconds per kimg
    OUTDIR/snapshots.jsonl     one line per snapshot: kimg and the `evaluate` numbers
    OUTDIR/samples/kimgKIMG.png G EMA on a fixed set of z, truncation 1, constant noise

The batch is split over every device (`data` mesh axis); parameters are replicated.
"""

import dataclasses
import functools
import json
import pathlib
import shutil
import time
import uuid

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gaussjax import interrupts
from gaussjax.files import checkpoints, images, results
from gaussjax.files.safe_io import read_json, write_bytes_atomic
from gaussjax.inversion import sharding
from gaussjax.networks.config import GeneratorConfig
from gaussjax.networks.stylegan2 import Generator
from gaussjax.training import gan
from gaussjax.training.discriminator import Discriminator

RUN_FILE, CHECKPOINT_DIR, GENERATOR_DIR = "run.json", "checkpoint", "generator"
PROGRESS_FILE, SNAPSHOTS_FILE, SAMPLES_DIR = "progress.jsonl", "snapshots.jsonl", "samples"
SAMPLE_GRID = 32  # images in every samples/*.png


def run_record(generator_cfg: GeneratorConfig, train_cfg: gan.TrainConfig, seed: int) -> dict:
    return {
        "generator": generator_cfg.to_dict(),
        "training": dataclasses.asdict(train_cfg),
        "seed": seed,
    }


def start_or_resume(outdir, record: dict, log=print, defaults: dict | None = None) -> None:
    """Writes run.json, or checks that an existing one describes the same run.

    A setting that the existing run.json lacks (one added to the code after the run started)
    counts as unchanged when the new record has it at its default (`defaults`, nested as the
    record; default: the GAN's TrainConfig under "training").

    Raises:
      ValueError: OUTDIR holds a run with other settings (one line naming them).
    """
    path = pathlib.Path(outdir) / RUN_FILE
    if not path.exists():
        pathlib.Path(outdir).mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
        return
    # Both through JSON, as run.json was: tuples become lists, as they are in the file.
    if defaults is None:
        defaults = {"training": dataclasses.asdict(gan.TrainConfig())}
    new, defaults = json.loads(json.dumps([record, defaults]))
    changed = _changed_keys(read_json(path, ValueError), new, defaults)
    if changed:
        raise ValueError(
            f"{outdir} holds a training run with other settings ({', '.join(changed)}); "
            "use a new output folder"
        )
    log(f"resuming the run in {outdir}")


def _changed_keys(old: dict, new: dict, defaults: dict, prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ between two JSON documents; an entry missing from
    `old` takes its value from `defaults` (same nesting)."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, defaults.get(key)), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _changed_keys(a, b, defaults.get(key) or {}, f"{prefix}{key}.")
        elif a != b:
            changed.append(prefix + key)
    return changed


def save_state(outdir, state: gan.TrainState) -> None:
    """The TrainState as a flat {key path: array} Orbax tree, swapped in atomically."""
    outdir = pathlib.Path(outdir)
    tmp = outdir / f".{CHECKPOINT_DIR}.tmp-{uuid.uuid4().hex[:8]}"
    flat = {jax.tree_util.keystr(k): np.asarray(v) for k, v in _leaves(state)}
    try:
        checkpoints.save_tree(tmp, flat)
        checkpoints.replace_dir(tmp, outdir / CHECKPOINT_DIR)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_state(outdir, like: gan.TrainState) -> gan.TrainState | None:
    """The checkpointed TrainState in the structure of `like`, or None when there is none."""
    path = pathlib.Path(outdir) / CHECKPOINT_DIR
    if not path.is_dir():
        return None
    leaves = _leaves(like)
    abstract = {jax.tree_util.keystr(k): jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in leaves}
    try:
        flat = checkpoints.load_tree(path, abstract)
    except Exception as e:  # Orbax raises many kinds, with messages of hundreds of lines
        raise ValueError(f"{path} cannot be read as this run's checkpoint") from e
    values = [flat[jax.tree_util.keystr(k)] for k, _ in leaves]
    return jax.tree.unflatten(jax.tree.structure(like), values)


def _leaves(state):
    return jax.tree_util.tree_flatten_with_path(state)[0]


def export_generator(outdir, G_ema: Generator, kimg: float, log) -> None:
    """G EMA -> OUTDIR/generator (replacing the previous snapshot's)."""
    meta = {"source": "experiments.train", "training_kimg": round(kimg, 3)}
    checkpoints.save_generator(
        pathlib.Path(outdir) / GENERATOR_DIR, G_ema, metadata=meta, overwrite=True, log=log
    )


def seeded_samples(G: Generator, seed: int, count: int) -> np.ndarray:
    """G(z) for `count` z ~ N(0, I) drawn from jax.random.key(seed), constant noise, truncation 1:
    float32 [count, R, R, C]."""
    z = jax.random.normal(jax.random.key(seed), (count, G.cfg.z_dim))
    return np.asarray(jax.jit(lambda G, z: G(z, noise_mode="const"))(G, z))


@dataclasses.dataclass
class Run:
    """What `train` needs besides the configs: where, how long, and what to do at snapshots."""

    outdir: str
    total_kimg: float
    snapshot_kimg: float
    seed: int = 0
    evaluate: object = None  # images [N, R, R, C] in [-1, 1] -> dict of numbers, or None
    evaluate_samples: int = 500
    log: object = functools.partial(print, flush=True)


def train(run: Run, generator_cfg: GeneratorConfig, cfg: gan.TrainConfig, dataset) -> dict:
    """Trains (or resumes) until `run.total_kimg`; returns the last snapshot's record.

    dataset: [M, R, R, C] float32 in [-1, 1], R and C those of `generator_cfg`.
    """
    if dataset.shape[1:] != (generator_cfg.img_resolution,) * 2 + (generator_cfg.img_channels,):
        raise ValueError(f"dataset images {dataset.shape[1:]} do not fit the generator config")
    start_or_resume(run.outdir, run_record(generator_cfg, cfg, run.seed), run.log)
    nets, state = gan.init_state(
        Generator(generator_cfg, rngs=nnx.Rngs(run.seed)),
        Discriminator(
            generator_cfg,
            rngs=nnx.Rngs(run.seed + 1),
            mbstd_group=cfg.mbstd_group,
            pack=cfg.pack,
            width=cfg.d_width,
        ),
        cfg,
    )
    state = load_state(run.outdir, state) or state
    mesh = sharding.data_mesh()
    batch_sharding = NamedSharding(mesh, P(sharding.DATA_AXIS)) if jax.device_count() > 1 else None
    state, data = sharding.replicate(mesh, (state, jnp.asarray(dataset)))
    key = jax.random.key(run.seed)
    total = int(round(run.total_kimg * 1000 / cfg.batch_size))
    per_snapshot = max(1, int(round(run.snapshot_kimg * 1000 / cfg.batch_size)))
    record = {}
    with interrupts.stop_at_safe_points():
        while (done := int(state.iteration)) < total:
            todo = min(cfg.steps_per_dispatch, total - done, per_snapshot - done % per_snapshot)
            started = time.perf_counter()
            state, losses = gan.train_dispatch(nets, cfg, state, data, key, batch_sharding, todo)
            losses = np.asarray(losses)
            seconds = time.perf_counter() - started
            _log_dispatch(run, cfg, int(state.iteration), losses, seconds, todo)
            if int(state.iteration) % per_snapshot == 0 or int(state.iteration) == total:
                record = snapshot(run, nets, state, cfg)
            interrupts.check()
    return record


def _log_dispatch(run: Run, cfg, iteration, losses, seconds, iterations) -> None:
    kimg = iteration * cfg.batch_size / 1000
    sec_per_kimg = seconds / (iterations * cfg.batch_size / 1000)
    line = {"kimg": round(kimg, 3), "g_loss": float(losses[0]), "d_loss": float(losses[1])}
    line |= {"r1": float(losses[2]), "sec_per_kimg": round(sec_per_kimg, 2)}
    results.append_summary(run.outdir, line, PROGRESS_FILE)
    run.log(
        f"kimg {kimg:8.1f}  G {losses[0]:.3f}  D {losses[1]:.3f}  R1 {losses[2]:.4f}"
        f"  {sec_per_kimg:.1f} s/kimg"
    )


def snapshot(run: Run, nets: gan.Networks, state: gan.TrainState, cfg) -> dict:
    """Checkpoint, generator directory, sample grid and (with `run.evaluate`) its numbers."""
    kimg = int(state.iteration) * cfg.batch_size / 1000
    save_state(run.outdir, state)
    G = nets.generator(jax.device_get(state), ema=True)
    export_generator(run.outdir, G, kimg, run.log)
    grid = images.make_grid(images.to_uint8(seeded_samples(G, run.seed, SAMPLE_GRID)))
    samples_dir = pathlib.Path(run.outdir) / SAMPLES_DIR
    samples_dir.mkdir(exist_ok=True)
    images.save_png(samples_dir / f"kimg{kimg:09.3f}.png", grid)
    record = {"kimg": round(kimg, 3)}
    if run.evaluate is not None:
        record |= run.evaluate(seeded_samples(G, run.seed + 1, run.evaluate_samples))
    results.append_summary(run.outdir, record, SNAPSHOTS_FILE)
    run.log(f"snapshot at {kimg:g} kimg: {json.dumps(record)}")
    return record
