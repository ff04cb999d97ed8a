r"""Trains a realism judge for a generator: a discriminator against its frozen samples.

    python -m experiments.train_judge --outdir=out/judge [--generator=DIR --images=GLOB] \
        [--steps=2000] [--batch_size=32] [--held_out_fraction=0.5] [--real_pass_rate=0.9] \
        [--seed=0] [--overwrite]

The interpolation and artifacts studies score frames with it (--judge=OUTDIR): an image is judged
realistic when its score reaches the pass mark that --real_pass_rate of the held-out real images
reach (gaussjax/training/judge.py). Without --generator it trains for the built-in generator on
scikit-learn's digits (the judge that ships with the package, `--judge=builtin`, was made so);
any other generator needs --images, the real images it was trained on.
"""

import functools
import pathlib
import sys

from absl import flags

from gaussjax import cli, settings
from gaussjax.files import checkpoints, images
from gaussjax.training import digits
from gaussjax.training import judge as judge_lib

_OUTDIR = flags.DEFINE_string("outdir", None, "Judge directory to write.")
_GENERATOR = flags.DEFINE_string(
    "generator", None, "Generator directory; default: the built-in one."
)
_IMAGES = flags.DEFINE_string(
    "images", None, "Real images (directory or glob); default for the built-in generator: digits."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of D's weights, its batches and the held-out split.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing judge at --outdir.")
_SETTING_FLAGS = settings.define_flags(judge_lib.JudgeConfig)


def check_outdir(outdir: pathlib.Path) -> None:
    if not outdir.exists():
        return
    if not _OVERWRITE.value:
        raise FileExistsError(f"{outdir} already exists (--overwrite replaces a judge)")
    if not (outdir / judge_lib.JUDGE_FILE).is_file():
        raise FileExistsError(f"refusing to overwrite {outdir}: it is not a realism judge")


def real_images(cfg):
    if _IMAGES.value:
        return images.load_images(_IMAGES.value, cfg.img_resolution, cfg.img_channels)
    if _GENERATOR.value:
        raise ValueError("--images is required for a generator other than the built-in one")
    return digits.training_images(cfg.img_resolution, cfg.img_channels)


def main(argv):
    del argv
    try:
        if not _OUTDIR.value:
            raise ValueError("--outdir is required")
        outdir = pathlib.Path(_OUTDIR.value)
        check_outdir(outdir)
        cfg = judge_lib.JudgeConfig(**settings.given_flags(_SETTING_FLAGS))
        generator = checkpoints.generator_or_builtin(_GENERATOR.value)
        reals = real_images(generator.cfg)
        print(f"training a judge: {cfg.steps} D steps, {len(reals)} real images", flush=True)
        judge = judge_lib.train_judge(
            generator, reals, cfg, _SEED.value, log=functools.partial(print, flush=True)
        )
        judge_lib.save_judge(outdir, judge, generator.cfg)
    except (ValueError, OSError, ImportError) as e:
        sys.exit(f"error: {e}")
    print(
        f"wrote {outdir}: pass mark {judge.threshold:.3f} "
        f"({cfg.real_pass_rate:.0%} of held-out real images reach it)"
    )


if __name__ == "__main__":
    cli.run(main)
