r"""Trains an encoder (image -> W+) on the generator's own samples, for amortised inversion.

    python -m experiments.train_encoder --outdir=out/encoder --kimg=200 [--generator=DIR] \
        [--batch_size=32] [--prior=prior.npz] [--images=GLOB] [--vgg=vgg16.pt] [--seed=0] \
        [--snapshot_kimg=5] [--latent_weight=0.1] [--prior_weight=0.001] [...]

Self-supervised, so it needs no dataset: z -> w (style mixing) -> image -> encoder -> W+ -> image,
with the image MSE (+ LPIPS given --vgg), the latent error in the Gaussianized space whitened by the
prior and the prior energy of the prediction (gaussjax/encoding/training.py). --images mixes real
images in, with the image loss only. Without --generator it trains for the built-in generator.

OUTDIR/encoder/ is the encoder as of the last snapshot: `python -m experiments.invert
--encoder=OUTDIR` starts every inversion from it. log.jsonl has the loss terms per dispatch,
samples/kimgKIMG.png target | reconstruction | difference. Stopped (Ctrl-C, a crash, SIGKILL), the
same command resumes from the last snapshot; a larger --kimg continues a finished run.
"""

import pathlib
import sys

import jax
import numpy as np
from absl import flags
from flax import nnx

from gaussjax import cli, settings
from gaussjax.encoding import loop, training
from gaussjax.files import images, lpips_weights
from gaussjax.studies import setup

_OUTDIR = flags.DEFINE_string("outdir", None, "Run directory (resumable).")
_GENERATOR = flags.DEFINE_string(
    "generator", None, "Generator directory; default: the built-in one."
)
_PRIOR = flags.DEFINE_string("prior", None, "prior.npz; default: the cached one, or fit and cache.")
_KIMG = flags.DEFINE_float("kimg", 100, "Train until this many thousand generated images.")
_SNAPSHOT_KIMG = flags.DEFINE_float(
    "snapshot_kimg", 5, "Checkpoint, encoder and samples every so often."
)
_IMAGES = flags.DEFINE_string("images", None, "Real images (directory or glob), image loss only.")
_VGG = flags.DEFINE_string("vgg", None, "LPIPS weights (NVIDIA vgg16.pt): adds the LPIPS term.")
_SEED = flags.DEFINE_integer("seed", 0, "Initialisation and training randomness.")
_PRIOR_SAMPLES = flags.DEFINE_integer(
    "prior_samples", 10000, "Samples when a prior has to be fitted."
)

_SETTING_FLAGS = settings.define_flags(training.EncoderTrainConfig)


def train_config() -> training.EncoderTrainConfig:
    overrides = settings.given_flags(_SETTING_FLAGS)
    if _VGG.value and "lpips_weight" not in overrides:
        overrides["lpips_weight"] = 1.0
    return training.EncoderTrainConfig(**overrides)


def real_images(gen_cfg) -> np.ndarray | None:
    if not _IMAGES.value:
        return None
    pixels = images.load_images(_IMAGES.value, gen_cfg.img_resolution, gen_cfg.img_channels)
    print(f"{len(pixels)} real images from {_IMAGES.value}", flush=True)
    return pixels


def main(argv):
    del argv
    if not _OUTDIR.value:
        sys.exit("error: --outdir is required")
    try:
        cfg = train_config()
        study = setup.load_study(
            pathlib.Path(_OUTDIR.value),
            _GENERATOR.value,
            _PRIOR.value,
            _PRIOR_SAMPLES.value,
            _SEED.value,
        )
        lpips = (
            nnx.split(lpips_weights.load_lpips(_VGG.value))
            if cfg.lpips_weight > 0 and _VGG.value
            else None
        )
        run = loop.EncoderRun(
            _OUTDIR.value,
            _KIMG.value,
            study.stats,
            snapshot_kimg=_SNAPSHOT_KIMG.value,
            seed=_SEED.value,
            reals=real_images(study.cfg),
            images=_IMAGES.value,
            lpips=lpips,
        )
        devices = jax.device_count()
        print(
            f"training an encoder for {_KIMG.value:g} kimg on {devices} device(s); into {_OUTDIR.value}",
            flush=True,
        )
        last = loop.train_encoder(run, study.fns, study.params, study.cfg, study.fingerprint, cfg)
    except (ValueError, OSError, ImportError) as e:
        sys.exit(f"error: {e}")
    kimg = last.get("kimg", _KIMG.value)
    print(
        f"done: {kimg:g} kimg; the encoder is {pathlib.Path(_OUTDIR.value) / 'encoder'} (--encoder={_OUTDIR.value})"
    )


if __name__ == "__main__":
    cli.run(main)
