"""What an inversion run writes for people to look at, beside the result files (files/results.py):

    OUTDIR/targets/NAME.png        the target as optimised against (after crop and resize)
    OUTDIR/sheets/batchNNNN.png    target | reconstruction | difference, one row per image of a batch
    OUTDIR/trace.jsonl             per image, the loss after every dispatch (results.append_trace)
    OUTDIR/loss_curve.png          every image's loss against the step, log scale
    OUTDIR/video/NAME.gif          with save_video: target | image after every dispatch

Nothing here runs inside the optimisation loop except `BatchRecorder`, which only keeps the
losses and (for videos) copies the variables after each dispatch; frames are rendered when the
batch is done. They sit in subfolders, so `--images=OUTDIR` never picks them up.
"""

import pathlib

import jax
import numpy as np

from gaussjax.files import images, results, visuals
from gaussjax.inversion import sharding
from gaussjax.inversion import spaces as latent_spaces

TARGETS_DIR, VIDEO_DIR, LOSS_CURVE = "targets", "video", "loss_curve.png"
SHEETS_DIR = images.SHEETS_DIR


class BatchRecorder:
    """One batch's losses after every dispatch and, with `keep_frames`, its variables (host
    copies of this process's rows: the engine donates the device arrays to the next dispatch).

    `progress` and `snapshot` are the engine's callbacks; `show(step, loss)` displays progress.
    """

    def __init__(self, show, keep_frames: bool):
        self.show, self.keep_frames = show, keep_frames
        self.steps, self.losses, self.frames = [], [], []

    def progress(self, step: int, loss) -> None:
        self.steps.append(step)
        self.losses.append(sharding.local_rows(loss))
        self.show(step, loss)

    def snapshot(self, variables) -> None:
        if self.keep_frames:
            self.frames.append(jax.tree.map(sharding.local_rows, variables))

    def trace(self, rows) -> tuple[list[int], np.ndarray]:
        """(steps [K], losses [K, len(rows)]) of the batch rows `rows`."""
        if not self.losses:  # no optimisation steps (an encoder-only run)
            return [], np.zeros((0, len(rows)), np.float32)
        return self.steps, np.stack(self.losses)[:, np.asarray(rows, int)]


def target_uint8(target, pixels) -> np.ndarray:
    """The prepared target, uint8 [H, W, C]: a file's pixels exactly as read (after crop and
    resize), a rendered target as every generator PNG is written (images.to_uint8)."""
    if target.file is None:
        return images.to_uint8(pixels[None])[0]
    return np.rint((np.asarray(pixels, np.float64) + 1.0) * 127.5).astype(np.uint8)


class FrameRenderer:
    """Renders recorded variables [B, ...] -> uint8 images [B, H, W, C] with the space's
    deterministic render (one compile per run)."""

    def __init__(self, space, gen_params):
        def render_one(params, variables):
            _, image = latent_spaces.render(
                space, params, variables["latent"], {}, None, variables.get("noise")
            )
            return image

        self.params = gen_params
        self.render = jax.jit(jax.vmap(render_one, in_axes=(None, 0)))

    def __call__(self, variables) -> np.ndarray:
        return images.to_uint8(self.render(self.params, variables))


def save_batch_visuals(
    outdir, sheet_name, batch, pixels, reconstructions, keep, recorder, renderer
):
    """Writes the prepared targets and videos of the kept rows and the sheet of the whole batch.

    Args:
      outdir: the run's folder.
      sheet_name: file name (no suffix) of the batch's sheet.
      batch: the readable targets of this process's slice of the batch; pixels: their float32
        [H, W, C] pixels; reconstructions: [>= len(batch), H, W, C] float32 rendered results.
      keep: indices into `batch` of the images saved now (not finished before).
      recorder: the batch's BatchRecorder; renderer: a FrameRenderer, or None for no videos.
    """
    outdir = pathlib.Path(outdir)
    targets = np.stack([target_uint8(t, p) for t, p in zip(batch, pixels)])
    recons = images.to_uint8(np.asarray(reconstructions)[: len(batch)])
    for folder in (TARGETS_DIR, SHEETS_DIR) + ((VIDEO_DIR,) if renderer else ()):
        (outdir / folder).mkdir(exist_ok=True)
    for i in keep:
        images.save_png(outdir / TARGETS_DIR / f"{batch[i].name}.png", targets[i])
    sheet = visuals.comparison_sheet(targets, recons)
    images.save_png(outdir / SHEETS_DIR / f"{sheet_name}.png", sheet)
    if renderer is not None and recorder.frames:
        frames = np.stack([renderer(v) for v in recorder.frames])  # [K, rows, H, W, C]
        for i in keep:
            video = visuals.progress_frames(targets[i], frames[:, i])
            images.save_gif(outdir / VIDEO_DIR / f"{batch[i].name}.gif", video)


def save_loss_curve(outdir, names) -> None:
    """OUTDIR/loss_curve.png from the traces of `names` in trace.jsonl."""
    traces = results.read_traces(outdir)
    curve = visuals.loss_curve({n: traces[n] for n in names if n in traces})
    images.save_png(pathlib.Path(outdir) / LOSS_CURVE, curve)


def files_line(outdir, save_video: bool) -> str:
    """Where a run's files are, for the end-of-run summary."""
    video = f"{VIDEO_DIR}/NAME.gif (progress), " if save_video else ""
    return (
        f"files in {outdir}/: NAME.npz (latents), NAME.png (reconstruction), {TARGETS_DIR}/NAME.png "
        f"(prepared target), {SHEETS_DIR}/ (target | reconstruction | difference), {video}"
        f"{results.SUMMARY}, {results.TRACE}, {LOSS_CURVE}"
    )
