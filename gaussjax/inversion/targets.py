"""The images a run inverts: files (decoded ahead of the device) or images the generator renders
from seeded latents, and how they become a fixed-shape batch."""

import dataclasses
import zlib

import numpy as np

from gaussjax.files import images, results
from gaussjax.networks.stylegan2 import jit_mapping, jit_synthesis

# Spaces with one latent vector for every layer: generated targets for them come from one z.
SINGLE_CODE_SPACES = ("w", "z", "f_w", "f_z")


@dataclasses.dataclass(frozen=True)
class Target:
    """One image to invert.

    Attributes:
      name: output name (NAME.npz, NAME.png, its summary line).
      file: the image file, or None for a rendered target.
      pixels: float32 [H, W, C] in [-1, 1] of a rendered target (files are read when batched).
      true_ws: [num_ws, w_dim] the W+ code a rendered target was made from (for its latent error).
      done: its result was already finished when the run started.
    """

    name: str
    file: str | None
    pixels: np.ndarray | None = None
    true_ws: np.ndarray | None = None
    done: bool = False


def image_seed(name: str, seed: int = 0) -> int:
    """Per-image PRNG seed from its name (and the run's seed when it is not 0, so that repeated
    runs over the same files differ): results do not depend on batch composition or order."""
    text = name if seed == 0 else f"{seed}:{name}"
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def file_targets(pattern: str, finished: frozenset[str] = frozenset()) -> list[Target]:
    """Every image file of a directory, glob or file; `finished` names are marked done."""
    paths = images.image_files(pattern)
    if not paths:
        raise ValueError(f"images={pattern} matches no image files")
    names = images.output_names(paths)
    return [Target(n, str(p), done=n in finished) for n, p in zip(names, paths)]


def generated_targets(
    fns, params, gen_cfg, *, space: str, count: int, seed: int, class_idx=None, finished=frozenset()
) -> list[Target]:
    """`count` images rendered from seeded latents: one z for single-code spaces, one z per layer
    (styles mixed) otherwise. Each keeps its true W+ code, so the latent error can be reported;
    without `class_idx` a conditional generator's class is drawn per image."""
    rows = 1 if space in SINGLE_CODE_SPACES else gen_cfg.num_ws
    # Compiled programs: run eagerly, op by op, 4 built-in images took 2.5 s from a warm cache,
    # jitted 0.4 s.
    out = []
    for i in range(count):
        rs = np.random.RandomState(seed * 100003 + i)
        z = rs.randn(rows, gen_cfg.z_dim).astype(np.float32)
        label_idx = class_idx if class_idx is not None else rs.randint(max(gen_cfg.c_dim, 1))
        ws = np.asarray(jit_mapping(fns, params, z, gen_cfg.class_labels(label_idx, rows)))
        # ws [rows, num_ws, w_dim]: row l of the W+ code comes from z_l.
        true_ws = ws[0] if rows == 1 else ws[np.arange(gen_cfg.num_ws), np.arange(gen_cfg.num_ws)]
        pixels = np.asarray(jit_synthesis(fns, params, true_ws[None]))[0]
        name = f"generated{i:04d}"
        out.append(Target(name, None, pixels, true_ws, done=name in finished))
    return out


def read_pixels(target: Target, gen_cfg):
    """float32 [H, W, C] in [-1, 1] for a target, or the ValueError saying why it is unreadable.

    Pure (no output), so it can run in background threads ahead of the device.
    """
    if target.pixels is not None:
        return target.pixels
    try:
        return images.to_float(
            images.load_image(target.file, gen_cfg.img_resolution, gen_cfg.img_channels)
        )
    except ValueError as e:
        return e


def checked_pixels(target: Target, pixels, outdir):
    """`pixels`, or None after recording an unreadable target in the summary.

    Unreadable files are tried again on every run, so a file fixed later is picked up.
    """
    if not isinstance(pixels, ValueError):
        return pixels
    print(f"skipping {target.file}: {pixels}", flush=True)  # every process: its own slice
    record = {"name": target.name, "file": target.file, "status": "unreadable"}
    results.append_summary(outdir, {**record, "reason": str(pixels)})
    return None


def padded_batch(loaded, size: int, gen_cfg, seed: int = 0):
    """(pixels [size, H, W, C], seeds [size]) of the readable targets of `loaded` [(Target,
    pixels or None)], padded by repeating the last one (a dummy image when none is readable): one
    compiled shape serves every batch."""
    pixels = [p for _, p in loaded if p is not None]
    names = [t.name for t, p in loaded if p is not None]
    if not pixels:
        res, ch = gen_cfg.img_resolution, gen_cfg.img_channels
        pixels, names = [np.zeros((res, res, ch), np.float32)], ["padding"]
    pad = size - len(pixels)
    seeds = [image_seed(n, seed) for n in names + names[-1:] * pad]
    return np.stack(pixels + pixels[-1:] * pad).astype(np.float32), np.asarray(seeds, np.int32)
