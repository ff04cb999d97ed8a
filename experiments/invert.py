r"""Inverts images into a StyleGAN2 latent space, with the Gaussianized prior (the main job).

    python -m experiments.invert --outdir=out/invert \
        [--generator=DIR] [--prior=prior.npz] [--images=DIR|GLOB|FILE] \
        [--space=w|wplus|z|zplus|f_w|f_wplus|f_z|f_zplus] [--prior_weight=1e-4] [--steps=N] \
        [--batch_size=8] [--loss=mse|lpips|mse+lpips --vgg=FILE] [--optimize_noise] \
        [--encoder=DIR|builtin|none [--steps=0]] \
        [--task=invert|denoise|inpaint|super_resolution|compressed_sensing [task settings]]

Per image it writes NAME.npz (`w` [1, num_ws, w_dim], the official projector's format, plus the
space's own latents) and NAME.png (the reconstruction), and one line in summary.jsonl. Rerunning
with the same flags resumes: finished images are skipped; run.json records the settings, and a
rerun with other settings is refused. Each space brings its own defaults (steps, optimiser,
schedule, loss weights); flags given explicitly override them. Without --generator it uses the
built-in generator (trained on scikit-learn's digits); without --images it inverts images the generator
makes from seeded latents and reports the latent error against the true latents. Without --prior
a prior is fitted once and cached beside the generator (in --outdir for the built-in generator).

--encoder starts every image from an encoder's W+ code (experiments.train_encoder) instead of the
mean latent: W takes the mean of its rows, W+ the code, Z/Z+ a z fitted to the code, the f_ spaces
take F0 = the generator's features of the code (as the F/Z+ method does). --steps=0 is pure
amortised inversion: one encoder pass per image, the same outputs as any run. On the built-in
generator the built-in encoder is the default start (it is ahead of the mean latent at every step
count measured); --encoder=none starts from the mean latent. From a code the latent-noise ramp is
off unless --latent_noise_factor is given.

--task solves an inverse problem in any space (gaussjax/inversion/tasks.py): the images are the
clean targets, the measurement y = A(x) (+ noise) is simulated from them, the loss compares A(G(s))
with y, NAME.png is the clean render G(s) and the summary's psnr compares it with the clean image.
"""

import pathlib
import sys

import jax
from absl import flags

from gaussjax import cli, settings
from gaussjax.encoding import saved
from gaussjax.inversion import pipeline
from gaussjax.inversion.config import InversionConfig
from gaussjax.inversion.spaces import SPACES

_OUTDIR = flags.DEFINE_string("outdir", None, "Output directory (resumable).")
_GENERATOR = flags.DEFINE_string(
    "generator", None, "Generator directory; default: the built-in one."
)
_PRIOR = flags.DEFINE_string(
    "prior", None, "prior.npz from experiments.fit_prior; default: fit and cache."
)
_IMAGES = flags.DEFINE_string(
    "images", None, "Directory, glob or file; default: generated targets."
)
_ENCODER = flags.DEFINE_string(
    "encoder",
    None,
    "Encoder directory (or a train_encoder run, or 'builtin') to start from; 'none': the mean "
    "latent. Default: the built-in encoder for the built-in generator (invert, denoise, inpaint).",
)
_SPACE = flags.DEFINE_enum("space", "wplus", list(SPACES), "Latent space.")
_NUM_GENERATED = flags.DEFINE_integer(
    "num_generated", 4, "Generated targets when --images is absent."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of generated targets and of the prior fit.")
_PRIOR_SAMPLES = flags.DEFINE_integer(
    "prior_samples", 10000, "Samples when a prior has to be fitted."
)
_BATCH = flags.DEFINE_integer(
    "batch_size", 8, "Images inverted together (global, over all devices)."
)
_LOSS = flags.DEFINE_enum(
    "loss", None, ["mse", "lpips", "mse+lpips"], "Data term(s); default: the space's."
)
_VGG = flags.DEFINE_string(
    "vgg", None, "LPIPS weights: NVIDIA vgg16.pt, or torchvision vgg16 state dict."
)
_LPIPS_LIN = flags.DEFINE_string(
    "lpips_lin", None, "LPIPS v0.1 lin weights (with a torchvision --vgg)."
)
_SAVE_VIDEO = flags.DEFINE_bool(
    "save_video",
    False,
    "Also write video/NAME.gif: target | image after every --steps_per_dispatch steps.",
)
_MULTIHOST = flags.DEFINE_bool(
    "multihost",
    False,
    "Run as one of several processes: jax.distributed.initialize() "
    "(cluster autodetection unless the three flags below are given).",
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-host: host:port of process 0."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")

# One flag per documented setting (gaussjax/inversion/config.py); unset ones keep the space's
# default.
_SETTING_FLAGS = settings.define_flags(InversionConfig)


def encoder_name() -> str | None:
    """--encoder, or the default one (the built-in generator's where its task allows); None: the
    mean-latent start."""
    task = _SETTING_FLAGS["task"].value or InversionConfig.for_space(_SPACE.value).problem.task
    name = _ENCODER.value or saved.default_encoder(_GENERATOR.value, task)
    return None if name == saved.NO_ENCODER else name


def config_from_flags(from_encoder: bool) -> InversionConfig:
    """The space's defaults (those of a start from a code when `from_encoder`), overridden by every
    flag given on the command line."""
    overrides = settings.given_flags(_SETTING_FLAGS)
    if _LOSS.value:
        overrides["mse_weight"] = 1.0 if "mse" in _LOSS.value else 0.0
        if "lpips" not in _LOSS.value:
            overrides["lpips_weight"] = 0.0
        elif "lpips_weight" not in overrides:
            overrides["lpips_weight"] = max(
                InversionConfig.for_space(_SPACE.value).loss.lpips_weight, 1.0
            )
    return InversionConfig.for_space(_SPACE.value, from_encoder, **overrides)


def log(msg):
    if jax.process_index() == 0:
        print(msg, flush=True)


def start_distributed():
    """Joins the other processes; on CPU the collectives go through gloo."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=_COORDINATOR.value,
        num_processes=_NUM_PROCESSES.value,
        process_id=_PROCESS_ID.value,
    )


def main(argv):
    del argv
    if _MULTIHOST.value:
        start_distributed()
    if not _OUTDIR.value:
        sys.exit("error: --outdir is required")
    try:
        encoder = encoder_name()
        if encoder == saved.BUILTIN and not _ENCODER.value:
            log(
                "starting from the built-in encoder's codes (ahead of the mean latent at every "
                "step count: docs/encoder.md); --encoder=none starts from the mean latent"
            )
        spec = pipeline.RunSpec(
            outdir=pathlib.Path(_OUTDIR.value),
            config=config_from_flags(from_encoder=encoder is not None),
            generator=_GENERATOR.value,
            prior=_PRIOR.value,
            images=_IMAGES.value,
            num_generated=_NUM_GENERATED.value,
            seed=_SEED.value,
            prior_samples=_PRIOR_SAMPLES.value,
            batch_size=_BATCH.value,
            vgg=_VGG.value,
            lpips_lin=_LPIPS_LIN.value,
            lpips_explicit=bool(_LOSS.value and "lpips" in _LOSS.value),
            save_video=_SAVE_VIDEO.value,
            encoder=saved.load_encoder(encoder) if encoder else None,
            log=log,
        )
        summary = pipeline.run(spec)
    except (ValueError, OSError) as e:  # bad input, or a full disk while writing results
        sys.exit(f"error: {e}")
    log(f"inverted {summary.inverted} now, {summary.finished}/{summary.total} finished in total")
    for line in summary.report:
        log(line)
    if summary.finished == 0:
        sys.exit("error: no image could be inverted (see summary.jsonl)")


if __name__ == "__main__":
    jax.config.config_with_absl()  # --jax_platforms, --jax_num_cpu_devices, ... work as flags
    cli.run(main)
