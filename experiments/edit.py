r"""Edits or interpolates inversion results in their own latent space; writes PNG strips and GIFs.

    python -m experiments.edit --generator=DIR --result=out/invert/NAME.npz --outdir=out/edit \
        [--direction=dir.npy | --component=K] [--distances=-2:2:11] \
        [--interpolate_to=out/invert/OTHER.npz --frames=9]

Z/Z+ results (z, zplus, f_z, f_zplus) walk on the sphere with re-projection after each small step,
F held fixed; W/W+ results move linearly. --direction is a .npy of shape [D] or the latent's shape;
--component=K uses the K-th principal direction of mapped samples (GANSpace style: for Z the
regression of z on the W principal coordinates), scaled by its standard deviation. With
--interpolate_to it interpolates instead (slerp per Z row, lerp otherwise). Writes sheets/NAME_edit.png
(a strip) and NAME_edit.gif (or NAME_interp.*), without --generator the built-in generator.
"""

import pathlib
import sys

import jax
import numpy as np
from absl import flags

from gaussjax import cli, editing
from gaussjax.files import images
from gaussjax.files.checkpoints import generator_or_builtin
from gaussjax.inversion.saved import load_results, render_variables
from gaussjax.networks.stylegan2 import PureGenerator

_GENERATOR = flags.DEFINE_string(
    "generator", None, "Generator directory; default: the built-in one."
)
_RESULT = flags.DEFINE_string("result", None, "An experiments.invert result (NAME.npz).")
_OUTDIR = flags.DEFINE_string("outdir", None, "Output directory.")
_DIRECTION = flags.DEFINE_string("direction", None, ".npy direction ([D] or the latent's shape).")
_COMPONENT = flags.DEFINE_integer("component", None, "Principal direction index (0 = largest).")
_DISTANCES = flags.DEFINE_string(
    "distances", "-2:2:11", "start:stop:count (units of the direction)."
)
_INTERPOLATE_TO = flags.DEFINE_string(
    "interpolate_to", None, "Second result: interpolate instead of edit."
)
_FRAMES = flags.DEFINE_integer("frames", 9, "Interpolation frames.")
_SAMPLES = flags.DEFINE_integer("pca_samples", 10000, "Mapping samples for --component.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the PCA samples.")
_DURATION = flags.DEFINE_integer("gif_ms", 120, "Milliseconds per GIF frame.")


def parse_distances(spec: str) -> np.ndarray:
    """'start:stop:count' -> np.linspace(start, stop, count)."""
    try:
        start, stop, count = spec.split(":")
        return np.linspace(float(start), float(stop), int(count))
    except ValueError as e:
        raise ValueError(f"--distances must be start:stop:count, e.g. -2:2:11, got {spec!r}") from e


def principal_direction(fns, params, cfg, space_key: str, k: int):
    """The k-th principal direction (scaled by its std) for a Z or W latent of this generator."""
    z = np.random.RandomState(_SEED.value).randn(_SAMPLES.value, cfg.z_dim).astype(np.float32)
    w = np.asarray(jax.jit(fns.mapping)(params, z))[:, 0]
    directions, stds, w_components = editing.zspace_principal_directions(z, w, k + 1)
    if space_key in editing.SPHERE_KEYS:
        return directions[k] * np.std(z @ directions[k])  # one standard deviation of z along it
    return w_components[k] * stds[k]


def load_direction(saved, fns, params, cfg):
    if (_DIRECTION.value is None) == (_COMPONENT.value is None):
        raise ValueError("pass exactly one of --direction, --component (or --interpolate_to)")
    if _DIRECTION.value:
        try:
            return np.load(_DIRECTION.value, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read --direction {_DIRECTION.value}: {e}") from e
    key = editing.latent_key(saved.variables)
    return principal_direction(fns, params, cfg, key, _COMPONENT.value)


def main(argv):
    del argv
    if not _RESULT.value or not _OUTDIR.value:
        sys.exit("error: --result and --outdir are required")
    try:
        generator = generator_or_builtin(_GENERATOR.value)
        fns, params = PureGenerator.split(generator)
        saved = load_results(_RESULT.value, fns, generator.cfg)[0]
        if _INTERPOLATE_TO.value:
            other = load_results(_INTERPOLATE_TO.value, fns, generator.cfg)[0]
            if other.space.name != saved.space.name:
                raise ValueError(
                    f"cannot interpolate a {saved.space.name} result with a {other.space.name} one"
                )
            path = editing.interpolation_path(
                saved.variables, other.variables, np.linspace(0, 1, _FRAMES.value)
            )
            suffix = "interp"
        else:
            direction = load_direction(saved, fns, params, generator.cfg)
            path = editing.edit_path(
                saved.space, saved.variables, direction, parse_distances(_DISTANCES.value)
            )
            suffix = "edit"
    except (ValueError, FileNotFoundError, OSError) as e:
        sys.exit(f"error: {e}")
    frames = images.to_uint8(render_variables(saved, params, path))
    outdir = pathlib.Path(_OUTDIR.value)
    outdir.mkdir(parents=True, exist_ok=True)
    name = f"{pathlib.Path(_RESULT.value).stem}_{suffix}"
    (outdir / images.SHEETS_DIR).mkdir(exist_ok=True)  # strips stay out of image folders
    strip = outdir / images.SHEETS_DIR / f"{name}.png"
    images.save_png(strip, images.make_grid(frames, columns=len(frames)))
    images.save_gif(outdir / f"{name}.gif", frames, _DURATION.value)
    print(f"wrote {strip} ({len(frames)} frames, {saved.space.name} space) and {outdir / name}.gif")


if __name__ == "__main__":
    cli.run(main)
