r"""Trains a StyleGAN2 (official recipe at small scale) and writes an ordinary generator directory.

    python -m experiments.train --outdir=out/digits --augment_p=0.5 --pack=2 --gamma=0.03 \
        --d_width=2 --ema_kimg=40 --ema_rampup=0.2 --kimg=300 [--dataset=digits|DIR|GLOB] \
        [--resolution=32] [--batch_size=32] [--snapshot_kimg=10] [--seed=0] [--mbstd_group=4] \
        [--augment_geometric] [--augment_color]

--dataset=digits (default) trains on scikit-learn's 1,797 handwritten digits upsampled to
--resolution, and judges every snapshot with the digit classifier (gaussjax/training/digits.py); a
directory or glob trains on those images (center-cropped, resized). The run resumes where it
stopped when started again with the same flags. OUTDIR/generator is G EMA as of the last snapshot,
usable as --generator=OUTDIR/generator by every launcher; progress.jsonl, snapshots.jsonl and
samples/kimgKIMG.png show how it went (loop.py). The built-in generator was trained by the command
above, as written, without the bracketed flags (README: its numbers and the runs that led to it).
"""

import sys

import numpy as np
from absl import flags

from gaussjax import cli
from gaussjax.files import images
from gaussjax.networks.config import GeneratorConfig
from gaussjax.training import augment, gan, loop

_OUTDIR = flags.DEFINE_string("outdir", None, "Run directory (resumable).")
_DATASET = flags.DEFINE_string("dataset", "digits", "'digits', or a directory / glob of images.")
_KIMG = flags.DEFINE_float("kimg", 200, "Training length in thousands of real images shown.")
_SNAPSHOT_KIMG = flags.DEFINE_float("snapshot_kimg", 10, "Checkpoint and samples every so often.")
_SEED = flags.DEFINE_integer("seed", 0, "Initialisation and training randomness.")
_RESOLUTION = flags.DEFINE_integer("resolution", 32, "Image resolution (power of two).")
_CHANNELS = flags.DEFINE_integer("channels", 3, "Image channels (1 or 3).")
_Z_DIM = flags.DEFINE_integer("z_dim", 64, "z and w dimension.")
_MAPPING_LAYERS = flags.DEFINE_integer("mapping_layers", 8, "Mapping network depth.")
_CHANNEL_BASE = flags.DEFINE_integer("channel_base", 1024, "Channels at resolution r: base / r.")
_CHANNEL_MAX = flags.DEFINE_integer("channel_max", 64, "... capped at this.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Images per iteration (all devices together).")
_LR = flags.DEFINE_float("lr", 0.0025, "Adam learning rate, G and D.")
_GAMMA = flags.DEFINE_float("gamma", None, "R1 weight; default 0.0002 * resolution**2 / batch.")
_MIXING = flags.DEFINE_float("style_mixing", 0.9, "Style-mixing probability.")
_EMA_KIMG = flags.DEFINE_float("ema_kimg", None, "G EMA half-life; default batch * 10 / 32.")
_EMA_RAMPUP = flags.DEFINE_float(
    "ema_rampup", 0.05, "G EMA half-life at most this fraction of the images seen (0: no ramp)."
)
_MBSTD = flags.DEFINE_integer("mbstd_group", 4, "Minibatch-std group size of D.")
_PACK = flags.DEFINE_integer("pack", 1, "Images D judges at a time, side by side (PacGAN).")
_D_WIDTH = flags.DEFINE_float("d_width", 1.0, "D's channels relative to G's at each resolution.")
_AUGMENT = flags.DEFINE_float(
    "augment_p", 0.0, "Probability of each augmentation of each image D sees (small datasets)."
)
_AUGMENT_GEOMETRIC = flags.DEFINE_bool(
    "augment_geometric", False, "Also scale, rotate, stretch and shift by fractions (augment.py)."
)
_AUGMENT_ROTATE = flags.DEFINE_float("augment_rotate_deg", 15.0, "Largest rotation, degrees.")
_AUGMENT_COLOR = flags.DEFINE_bool("augment_color", False, "Also vary brightness and contrast.")
_STEPS = flags.DEFINE_integer("steps_per_dispatch", 25, "Iterations per device call.")


def generator_config() -> GeneratorConfig:
    return GeneratorConfig(
        z_dim=_Z_DIM.value,
        w_dim=_Z_DIM.value,
        img_resolution=_RESOLUTION.value,
        img_channels=_CHANNELS.value,
        mapping_layers=_MAPPING_LAYERS.value,
        channel_base=_CHANNEL_BASE.value,
        channel_max=_CHANNEL_MAX.value,
        architecture="skip",
    )


def dataset_and_judge(cfg: GeneratorConfig):
    """(images [M, R, R, C] float32 in [-1, 1], evaluate callback or None)."""
    if _DATASET.value == "digits":
        from gaussjax.training import digits

        judge = digits.DigitJudge.fit(cfg.img_resolution)
        return digits.training_images(cfg.img_resolution, cfg.img_channels), judge.judge
    paths = images.image_files(_DATASET.value)
    pixels = [images.load_image(p, cfg.img_resolution, cfg.img_channels) for p in paths]
    return images.to_float(np.stack(pixels)), None


def main(argv):
    del argv
    if not _OUTDIR.value:
        sys.exit("error: --outdir is required")
    try:
        cfg = generator_config()
        data, evaluate = dataset_and_judge(cfg)
        train_cfg = gan.TrainConfig(
            batch_size=_BATCH.value,
            learning_rate=_LR.value,
            r1_gamma=_GAMMA.value,
            style_mixing_prob=_MIXING.value,
            ema_kimg=_EMA_KIMG.value,
            ema_rampup=_EMA_RAMPUP.value or None,
            mbstd_group=_MBSTD.value,
            pack=_PACK.value,
            d_width=_D_WIDTH.value,
            augment=augment.AugmentConfig(
                p=_AUGMENT.value,
                geometric=_AUGMENT_GEOMETRIC.value,
                max_rotate_deg=_AUGMENT_ROTATE.value,
                color=_AUGMENT_COLOR.value,
            ),
            steps_per_dispatch=_STEPS.value,
        )
        print(f"{len(data)} training images, {cfg.img_resolution} px; writing {_OUTDIR.value}")
        run = loop.Run(_OUTDIR.value, _KIMG.value, _SNAPSHOT_KIMG.value, _SEED.value, evaluate)
        loop.train(run, cfg, train_cfg, data)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    cli.run(main)
