r"""SPHInX's attribute walk: learns a direction from rotated versions of one image, renders it as a GIF.

    python -m experiments.attribute_walk --outdir=out/walk --image=photo.png \
        [--generator=DIR] [--angles=0,22.5,45] [--steps=5000] [--learning_rate=1e-3] [--frames=24]

Writes walk.gif (the render along the learned direction, from 0 to 1.5x the last offset),
versions.png (the rotated targets over their renders) and walk.json (offsets and per-version MSE).
"""

import json
import pathlib
import sys

import jax
import numpy as np
from absl import flags

from gaussjax import cli
from gaussjax.files import images
from gaussjax.files.checkpoints import generator_or_builtin
from gaussjax.inversion import attribute, spaces
from gaussjax.networks.stylegan2 import PureGenerator

_OUTDIR = flags.DEFINE_string("outdir", None, "Output directory.")
_IMAGE = flags.DEFINE_string("image", None, "The image whose rotations are learned.")
_GENERATOR = flags.DEFINE_string(
    "generator", None, "Generator directory; default: the built-in one."
)
_ANGLES = flags.DEFINE_list("angles", ["0", "22.5", "45"], "Rotations (degrees), increasing.")
_STEPS = flags.DEFINE_integer("steps", 5000, "Optimisation steps.")
_LR = flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
_FRAMES = flags.DEFINE_integer("frames", 24, "GIF frames.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")


def main(argv):
    del argv
    if not _OUTDIR.value or not _IMAGE.value:
        sys.exit("error: --outdir and --image are required")
    try:
        angles = [float(a) for a in _ANGLES.value]
        generator = generator_or_builtin(_GENERATOR.value)
        cfg = generator.cfg
        pixels = images.load_image(_IMAGE.value, cfg.img_resolution, cfg.img_channels)
        fns, params = PureGenerator.split(generator)
        ctx = spaces.SpaceContext(fns, cfg, jax.numpy.zeros((cfg.w_dim,)), 1.0)
        space = spaces.make_space("sphinx", ctx)
        walk_cfg = attribute.WalkConfig(num_steps=_STEPS.value, learning_rate=_LR.value)
        targets = attribute.rotated_versions(pixels, angles)
        state, mse = attribute.learn_attribute(
            space, walk_cfg, params, targets, jax.random.key(_SEED.value)
        )
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    alpha = np.asarray(state["alpha"])
    walk = np.linspace(0.0, 1.5 * float(alpha[-1]), _FRAMES.value)
    frames = images.to_uint8(
        jax.jit(attribute.render_walk, static_argnums=0)(space, params, state, walk)
    )
    fitted = attribute.render_walk(space, params, state, np.concatenate([[0.0], alpha]))
    outdir = pathlib.Path(_OUTDIR.value)
    outdir.mkdir(parents=True, exist_ok=True)
    images.save_gif(outdir / "walk.gif", frames)
    grid = np.concatenate([images.to_uint8(targets), images.to_uint8(fitted)])
    images.save_png(outdir / "versions.png", images.make_grid(grid, columns=len(angles)))
    record = {"angles": angles, "alpha": [0.0, *alpha.tolist()], "mse": np.asarray(mse).tolist()}
    (outdir / "walk.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"offsets {record['alpha']}, MSE {record['mse']}; wrote {outdir}/walk.gif")


if __name__ == "__main__":
    cli.run(main)
