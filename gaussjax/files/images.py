"""Image conversion and files: generator output [-1, 1] NHWC <-> uint8 PNGs, grids, input loading."""

import collections
import io as _io
import math
import os
import pathlib

import jax
import numpy as np
from PIL import Image, ImageOps

from gaussjax.files.safe_io import write_bytes_atomic


def to_uint8(images) -> np.ndarray:
    """[N, H, W, C] float in nominal [-1, 1] -> uint8, as the official generate.py (x * 127.5 + 128)."""
    return np.clip(np.rint(np.asarray(images, np.float32) * 127.5 + 128), 0, 255).astype(np.uint8)


def to_float(images_uint8) -> np.ndarray:
    """uint8 [..., C] -> float32 in [-1, 1] (the inverse of `to_uint8` up to rounding)."""
    return np.asarray(images_uint8, np.float32) / 127.5 - 1.0


def save_png(path, image_uint8) -> None:
    """Writes one [H, W, C] uint8 image (C = 1 or 3) atomically."""
    image = np.asarray(image_uint8)
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    buf = _io.BytesIO()
    pil.save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())


def make_grid(images_uint8, columns=None) -> np.ndarray:
    """[N, H, W, C] -> one [rows*H, cols*W, C] image, row-major, black padding."""
    n, h, w, c = images_uint8.shape
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * h, cols * w, c), np.uint8)
    for i, img in enumerate(images_uint8):
        r, q = divmod(i, cols)
        grid[r * h : (r + 1) * h, q * w : (q + 1) * w] = img
    return grid


def load_image(path, resolution: int, channels: int) -> np.ndarray:
    """Reads any PIL-readable image, center-crops it square, resizes it (Lanczos) to `resolution`.

    Handles every mode (L, RGB, RGBA, P, CMYK, I;16, ...): 16-bit images are scaled to 8 bits,
    transparency is composited on black, EXIF orientation applied.

    Returns:
      uint8 [resolution, resolution, channels] (channels 1 or 3).
    Raises:
      ValueError: unreadable or corrupt file (one line, with the reason).
    """
    try:
        with Image.open(path) as pil:
            pil = ImageOps.exif_transpose(pil)
            pil.load()
            pil = _to_8bit_rgb(pil)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from e
    w, h = pil.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    pil = pil.crop((left, top, left + side, top + side)).resize(
        (resolution, resolution), Image.LANCZOS
    )
    if channels == 1:
        return np.asarray(pil.convert("L"))[..., None]
    return np.asarray(pil)


def _to_8bit_rgb(pil: Image.Image) -> Image.Image:
    if pil.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(pil, np.float64)
        scale = 65535.0 if arr.max() > 255 or pil.mode.startswith("I;16") else 255.0
        pil = Image.fromarray(np.clip(arr / scale * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if pil.mode == "F":
        pil = Image.fromarray(np.clip(np.asarray(pil) * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
        pil = pil.convert("RGBA")
        background = Image.new("RGBA", pil.size, (0, 0, 0, 255))
        pil = Image.alpha_composite(background, pil)
    return pil.convert("RGB")


def image_files(spec: str) -> list[pathlib.Path]:
    """A directory (its image files), a glob pattern, or one file -> sorted paths."""
    path = pathlib.Path(spec)
    if path.is_dir():
        return sorted(
            p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
    if path.exists():
        return [path]
    root = pathlib.Path(path.anchor) if path.is_absolute() else pathlib.Path(".")
    pattern = str(path.relative_to(root)) if path.is_absolute() else spec
    return sorted(p for p in root.glob(pattern) if p.is_file())


def load_images(spec: str, resolution: int, channels: int) -> np.ndarray:
    """Every image of `spec` (`image_files`) as [N, R, R, C] float32 in [-1, 1].

    Raises:
      FileNotFoundError: `spec` names no image.
    """
    paths = image_files(spec)
    if not paths:
        raise FileNotFoundError(f"no images in {spec}")
    return to_float(np.stack([load_image(p, resolution, channels) for p in paths]))


# Every launcher writes contact sheets (grids, strips, comparison sheets) into this subfolder of
# its output folder, so `image_files(OUTDIR)` (which does not descend) lists images only.
SHEETS_DIR = "sheets"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def output_names(paths) -> list[str]:
    """Result names: the file stem, or the path relative to the common folder (with '/' -> '__'
    and the suffix kept as '_ext') for files whose stems clash, e.g. a.png and a.jpg."""
    counts = collections.Counter(p.stem for p in paths)
    root = pathlib.Path(os.path.commonpath([str(p.parent.absolute()) for p in paths]))
    names = []
    for path in paths:
        if counts[path.stem] == 1:
            names.append(path.stem)
        else:
            rel = path.absolute().relative_to(root)
            names.append(
                "__".join(rel.with_suffix("").parts) + "_" + path.suffix.lstrip(".").lower()
            )
    return names


def render_uint8(fns, params, ws, noise_mode, key, noise=None) -> np.ndarray:
    """ws [N, num_ws, w_dim] -> uint8 images, one jitted call per image to bound memory.

    `noise` (per-layer [res, res] maps, e.g. optimised by the inversion) overrides `noise_mode`.
    """
    synth = jax.jit(fns.synthesis, static_argnames="noise_mode")
    keys = jax.random.split(key, len(ws))
    return np.concatenate(
        [to_uint8(synth(params, w[None], noise_mode, k, noise)) for w, k in zip(ws, keys)]
    )


def save_gif(path, frames_uint8, duration_ms: int = 100) -> None:
    """Writes frames [K, H, W, C] uint8 (C = 1 or 3) as a looping animated GIF, atomically."""
    frames = np.asarray(frames_uint8)
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3) or len(frames) == 0:
        raise ValueError(f"frames must be [K, H, W, 1|3] with K >= 1, got {frames.shape}")
    pils = [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in frames]
    buf = _io.BytesIO()
    pils[0].save(
        buf, format="GIF", save_all=True, append_images=pils[1:], duration=duration_ms, loop=0
    )
    write_bytes_atomic(path, buf.getvalue())
