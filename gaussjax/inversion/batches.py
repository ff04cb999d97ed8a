"""The inversion loop of a run: fixed-size batches of targets, sharded over every device of every
process, each inverted by the engine and written as it finishes (results and run_outputs)."""

import dataclasses
import functools
import time
from collections.abc import Callable

import jax
import numpy as np

from gaussjax import interrupts
from gaussjax.files import prefetch, results
from gaussjax.inversion import run_outputs, sharding
from gaussjax.inversion.targets import Target, checked_pixels, padded_batch, read_pixels


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
            fraction = (self.done_batches + step / max(self.steps, 1)) / self.num_batches
            bar = "#" * int(20 * step / max(self.steps, 1))
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


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """How the target list is cut: global batches of `global_size` from each of `starts`, of which
    this process takes `per_process` rows from `offset` on."""

    per_process: int
    global_size: int
    offset: int
    starts: tuple[int, ...]

    def rows(self, targets: list[Target], start: int) -> list[Target]:
        return targets[start + self.offset : start + self.offset + self.per_process]


def plan_batches(targets: list[Target], batch_size: int) -> BatchPlan:
    """Batches are cut from the whole target list, finished or not, so an image is inverted in the
    same batch slot, with the same companions, as in an uninterrupted run: a resumed run gives
    bit-identical results. A batch with nothing left to do is skipped (the same decision in every
    process: the batch is one global array)."""
    per_process = sharding.local_batch_size(min(batch_size, len(targets)))
    global_size = per_process * jax.process_count()
    starts = tuple(
        start
        for start in range(0, len(targets), global_size)
        if not all(t.done for t in targets[start : start + global_size])
    )
    return BatchPlan(per_process, global_size, jax.process_index() * per_process, starts)


@dataclasses.dataclass(frozen=True)
class BatchRun:
    """What every batch of a run shares: the output folder, the Inverter, its inputs placed on
    the mesh (gen_params and prior replicated), the run's seed and the optional video renderer."""

    outdir: object
    inverter: object
    gen_params: object
    prior: object
    lpips_params: object
    mesh: object
    gen_cfg: object
    seed: int = 0
    renderer: run_outputs.FrameRenderer | None = None
    encode: Callable | None = None  # images -> W+ codes the spaces start from (Inverter.invert)


def run_batches(run: BatchRun, targets: list[Target], plan: BatchPlan, progress: Progress) -> int:
    """Inverts the batches of `plan`; returns how many images this process saved.

    A batch with finished images is run again whole and only its unfinished images are saved.
    Short batches are padded (one compile serves all). Files are decoded two batches ahead of the
    device, in background threads.
    """
    reads = prefetch.ordered_map(
        functools.partial(read_pixels, gen_cfg=run.gen_cfg),
        [t for start in plan.starts for t in plan.rows(targets, start)],
        ahead=2 * plan.per_process,
    )
    saved = 0
    for start in plan.starts:
        loaded = [
            (t, checked_pixels(t, next(reads), run.outdir)) for t in plan.rows(targets, start)
        ]
        saved += invert_batch(run, loaded, start // plan.global_size, plan.per_process, progress)
        interrupts.check()  # after the batch's files: also where a run has no steps (encoder only)
    return saved


def invert_batch(run: BatchRun, loaded, batch_index: int, size: int, progress: Progress) -> int:
    """Inverts one batch of `loaded` [(Target, pixels or None)] padded to `size` rows, and writes
    its unfinished images, their visuals and the batch's sheet. Returns the images saved."""
    batch = [t for t, pixels in loaded if pixels is not None]
    recorder = run_outputs.BatchRecorder(
        progress.batch_callback(len(batch)), keep_frames=run.renderer is not None
    )
    t0 = time.perf_counter()
    result = run.inverter.invert(
        run.gen_params,
        *sharding.shard_batch(run.mesh, padded_batch(loaded, size, run.gen_cfg, run.seed)),
        prior=run.prior,
        lpips_params=run.lpips_params,
        progress=recorder.progress,
        snapshot=recorder.snapshot,
        encode=run.encode,
    )
    batch_seconds = time.perf_counter() - t0
    keep = [i for i, t in enumerate(batch) if not t.done]
    if not keep:
        progress.finish_batch(0, len(batch))
        return 0
    run_outputs.save_batch_visuals(
        run.outdir,
        sheet_name(batch_index),
        batch,
        [p for _, p in loaded if p is not None],
        sharding.local_rows(result.images),
        keep,
        recorder,
        run.renderer,
    )
    result = jax.tree.map(lambda x: sharding.local_rows(x)[np.asarray(keep)], result)
    saved = save_results(
        run.outdir,
        [batch[i] for i in keep],
        result,
        run.inverter.cfg,
        run.inverter.space,
        batch_seconds / len(batch),
        recorder.trace(keep),
        batch_seconds,
    )
    progress.finish_batch(saved, len(batch))
    return saved


def sheet_name(batch_index: int) -> str:
    """batchNNNN, with the process index when several processes each write their rows."""
    suffix = f"-p{jax.process_index()}" if jax.process_count() > 1 else ""
    return f"batch{batch_index:04d}{suffix}"


def save_results(
    outdir, batch, result, cfg, space, seconds: float, traces=None, batch_seconds=None
) -> int:
    """Writes the results of `batch` [Target] (results.save_image_results).

    Args:
      result: an InversionResult of host arrays, rows matching `batch`.
      cfg, space: the run's InversionConfig (recorded in each summary line) and LatentSpace (it
        saves its native variables).
      seconds: the image's share of the batch's wall time (batch time / images in the batch:
        a batch is inverted together, so no image has a time of its own).
      traces: optional (steps [K], losses [K, len(batch)]) of the batch.
      batch_seconds: optional wall time of the whole batch, recorded beside `seconds`.
    """
    shared = {
        "space": cfg.space,
        "task": cfg.problem.task,
        "steps": cfg.optim.num_steps,
        "prior_weight": cfg.loss.prior_weight,
        "loss_used": cfg.loss.label,
        "seconds": round(seconds, 3),
        **({} if batch_seconds is None else {"batch_seconds": round(batch_seconds, 3)}),
    }
    items = []
    for i, target in enumerate(batch):
        record = {
            "file": target.file,
            **shared,
            **{k: float(v[i]) for k, v in result.terms.items()},
        }
        if target.true_ws is not None:
            record["latent_mse"] = float(np.mean(np.square(result.ws[i] - target.true_ws)))
        arrays = results.result_arrays(
            result.ws[i],
            [n[i] for n in result.noise or []],
            space.record(),
            space.to_arrays({k: v[i] for k, v in result.latents.items()}, None),
        )
        trace = None if traces is None else (traces[0], np.asarray(traces[1])[:, i])
        items.append(results.ImageResult(target.name, record, arrays, result.images[i], trace))
    return results.save_image_results(outdir, items)
