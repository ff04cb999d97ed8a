"""What a user looks at besides the result files: comparison sheets, progress frames, the loss
curve. Pure uint8 image arithmetic (numpy) and PIL drawing; no plotting library."""

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def difference(a_uint8, b_uint8) -> np.ndarray:
    """|a - b| per pixel and channel, uint8 (black where the reconstruction is exact)."""
    return np.abs(a_uint8.astype(np.int16) - b_uint8.astype(np.int16)).astype(np.uint8)


def comparison_sheet(targets_uint8, reconstructions_uint8) -> np.ndarray:
    """One row per image: target | reconstruction | difference.

    Args:
      targets_uint8, reconstructions_uint8: [B, H, W, C] uint8.
    Returns:
      [B * H, 3 * W, C] uint8.
    """
    rows = [
        np.concatenate([t, r, difference(t, r)], axis=1)
        for t, r in zip(targets_uint8, reconstructions_uint8)
    ]
    return np.concatenate(rows, axis=0)


def progress_frames(target_uint8, frames_uint8) -> np.ndarray:
    """Video frames target | image at step k (as NVIDIA's projector video).

    Args:
      target_uint8: [H, W, C]; frames_uint8: [K, H, W, C].
    Returns:
      [K, H, 2 * W, C] uint8.
    """
    targets = np.broadcast_to(target_uint8, frames_uint8.shape)
    return np.concatenate([targets, frames_uint8], axis=2)


# Line colours of the loss curve, one per image (cycled).
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
PALETTE += [(140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def plot_area(width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) pixel box of the curves inside the figure (room for labels)."""
    return 70, 20, width - 150, height - 40


def curve_points(steps, losses, box, step_range, log_loss_range) -> list[tuple[float, float]]:
    """Pixel coordinates of (step, loss) pairs inside `box`: the step on a linear axis from
    step_range[0] (left) to [1] (right), log10(loss) from log_loss_range[0] (bottom) to [1] (top)."""
    left, top, right, bottom = box
    (s0, s1), (l0, l1) = step_range, log_loss_range
    xs = left + (np.asarray(steps, np.float64) - s0) / max(s1 - s0, 1e-12) * (right - left)
    logs = np.log10(np.maximum(np.asarray(losses, np.float64), 1e-30))
    ys = bottom - (logs - l0) / max(l1 - l0, 1e-12) * (bottom - top)
    return list(zip(xs.tolist(), ys.tolist()))


def loss_curve(traces: dict, width: int = 640, height: int = 400) -> np.ndarray:
    """The loss against the step of every image, log-scale loss, with axis labels and a legend.

    Args:
      traces: {name: (steps [K], losses [K])}; non-finite losses are left out.
    Returns:
      [height, width, 3] uint8.
    """
    traces = {n: _finite(s, v) for n, (s, v) in traces.items()}
    traces = {n: sv for n, sv in traces.items() if len(sv[0])}
    pil = Image.new("RGB", (width, height), "white")
    draw, font = ImageDraw.Draw(pil), ImageFont.load_default()
    box = plot_area(width, height)
    draw.rectangle(box, outline="black")
    if not traces:
        draw.text((box[0] + 10, box[1] + 10), "no finite losses", fill="black", font=font)
        return np.asarray(pil)
    all_steps = np.concatenate([s for s, _ in traces.values()])
    all_logs = np.log10(np.concatenate([v for _, v in traces.values()]).clip(1e-30))
    step_range = (0.0, float(all_steps.max()))
    log_range = (math.floor(all_logs.min() * 10) / 10, math.ceil(all_logs.max() * 10) / 10 + 0.1)
    for i, (name, (steps, losses)) in enumerate(sorted(traces.items())):
        colour = PALETTE[i % len(PALETTE)]
        points = curve_points(steps, losses, box, step_range, log_range)
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        else:
            draw.point(points, colour)
        if i < 16:
            draw.text((box[2] + 10, box[1] + 14 * i), name[:22], fill=colour, font=font)
    _axis_labels(draw, font, box, step_range, log_range)
    return np.asarray(pil)


def _finite(steps, losses):
    steps, losses = np.asarray(steps, np.float64), np.asarray(losses, np.float64)
    keep = np.isfinite(losses) & (losses > 0)
    return steps[keep], losses[keep]


def _axis_labels(draw, font, box, step_range, log_range) -> None:
    left, top, right, bottom = box
    draw.text((left, bottom + 6), f"{step_range[0]:g}", fill="black", font=font)
    draw.text((right - 30, bottom + 6), f"{step_range[1]:g}", fill="black", font=font)
    draw.text(((left + right) // 2 - 15, bottom + 20), "step", fill="black", font=font)
    draw.text((4, top), f"{10 ** log_range[1]:.3g}", fill="black", font=font)
    draw.text((4, bottom - 10), f"{10 ** log_range[0]:.3g}", fill="black", font=font)
    draw.text((4, (top + bottom) // 2), "loss (log)", fill="black", font=font)
