r"""Renders images from a gaussjax generator: seeds (official generate.py seeding) or saved latents.

    python -m experiments.generate --generator=out/skip32 --seeds=0-7 --outdir=out/images \
        [--class_idx=K] [--truncation_psi=0.7] [--truncation_cutoff=N] [--noise_mode=const] \
        [--latents=projected_w.npz]

Writes seedNNNN.png per seed (or latentNNNN.png per row of --latents) and sheets/grid.png. z for seed s is
np.random.RandomState(s).randn(1, z_dim), as in NVIDIA's generate.py, so seeds give the same images as
the official code. --latents renders an experiments.invert result in its own space (W, W+, Z, Z+,
F/...: the saved native latents), or key `w` [N, num_ws, w_dim] of any other file (the official
projector's projected_w.npz); optimised noise maps saved beside it (`noise_00`, ...) are used
instead of --noise_mode.
"""

import pathlib
import sys

import jax
import numpy as np
from absl import flags, logging

from gaussjax import cli
from gaussjax.files import images
from gaussjax.files.checkpoints import generator_or_builtin
from gaussjax.inversion.saved import load_results, render_variables
from gaussjax.networks.stylegan2 import NOISE_MODES, PureGenerator

_GENERATOR = flags.DEFINE_string(
    "generator",
    None,
    "Generator directory (made by converters.convert); default: the built-in one.",
)
_SEEDS = flags.DEFINE_string("seeds", None, "Seeds, e.g. '0-7' or '1,5,10-12'.")
_LATENTS = flags.DEFINE_string(
    "latents", None, "npz with key 'w' [N, num_ws, w_dim] to render instead of seeds."
)
_CLASS_IDX = flags.DEFINE_integer("class_idx", None, "Class label for conditional generators.")
_PSI = flags.DEFINE_float("truncation_psi", 1.0, "Truncation psi (1 = off).")
_CUTOFF = flags.DEFINE_integer("truncation_cutoff", None, "Truncate only the first N ws.")
_NOISE_MODE = flags.DEFINE_enum("noise_mode", "const", list(NOISE_MODES), "Noise mode.")
_OUTDIR = flags.DEFINE_string("outdir", None, "Output directory.")


def parse_seeds(spec: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    seeds = []
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"bad seed range {part!r}: use e.g. '0-7' or '1,5,10-12'")
        seeds.extend(range(int(lo), int(hi or lo) + 1))
    return seeds


def class_labels(cfg, class_idx, n):
    """One-hot labels [n, c_dim] for conditional generators, None otherwise."""
    if cfg.c_dim == 0 and class_idx is not None:
        logging.warning("--class_idx ignored: the generator is unconditional")
    return cfg.class_labels(class_idx, n)


def main(argv):
    del argv
    if not _OUTDIR.value or (_SEEDS.value is None) == (_LATENTS.value is None):
        sys.exit("error: pass --outdir and exactly one of --seeds / --latents")
    try:
        generator = generator_or_builtin(_GENERATOR.value)
        cfg = generator.cfg
        fns, params = PureGenerator.split(generator)
        if _LATENTS.value:
            saved = load_results(_LATENTS.value, fns, cfg)
            rendered = np.concatenate(
                [images.to_uint8(render_variables(r, params, [r.variables])) for r in saved]
            )
            names = [f"latent{i:04d}" for i in range(len(saved))]
        else:
            noise = None
            seeds = parse_seeds(_SEEDS.value)
            z = np.concatenate(
                [np.random.RandomState(s).randn(1, cfg.z_dim) for s in seeds]
            ).astype(np.float32)
            c = class_labels(cfg, _CLASS_IDX.value, len(seeds))
            ws = jax.jit(fns.mapping, static_argnums=(3, 4))(
                params, z, c, _PSI.value, _CUTOFF.value
            )
            names = [f"seed{s:04d}" for s in seeds]
    except (ValueError, FileNotFoundError, OSError) as e:
        sys.exit(f"error: {e}")
    outdir = pathlib.Path(_OUTDIR.value)
    outdir.mkdir(parents=True, exist_ok=True)
    if _LATENTS.value:
        imgs = rendered
    else:
        imgs = images.render_uint8(
            fns, params, np.asarray(ws), _NOISE_MODE.value, jax.random.key(0), noise
        )
    for name, img in zip(names, imgs):
        images.save_png(outdir / f"{name}.png", img)
    # In a subfolder, so that `invert --images=OUTDIR` takes the images and not the contact sheet.
    (outdir / images.SHEETS_DIR).mkdir(exist_ok=True)
    images.save_png(outdir / images.SHEETS_DIR / "grid.png", images.make_grid(imgs))
    print(
        f"wrote {len(imgs)} images to {outdir} and their contact sheet {images.SHEETS_DIR}/grid.png"
    )


if __name__ == "__main__":
    cli.run(main)
