r"""Inverts images into a StyleGAN2 latent space, with the Gaussianized prior (the main job).

    python -m experiments.invert --outdir=out/invert \
        [--generator=DIR] [--prior=prior.npz] [--images=DIR|GLOB|FILE] \
        [--space=w|wplus|z|zplus|f_w|f_wplus|f_z|f_zplus] [--prior_weight=1e-5] [--steps=N] \
        [--batch_size=8] [--loss=mse|lpips|mse+lpips --vgg=FILE] [--optimize_noise] \
        [--task=invert|denoise|inpaint|super_resolution|compressed_sensing [task settings]]

Per image it writes NAME.npz (`w` [1, num_ws, w_dim], the official projector's format, plus the
space's own latents) and NAME.png (the reconstruction), and one line in summary.jsonl. Rerunning
with the same flags resumes: finished images are skipped; run.json records the settings, and a
rerun with other settings is refused. Each space brings its own defaults (steps, optimiser,
schedule, loss weights); flags given explicitly override them. Without --generator it uses the
built-in demo generator (seeded random weights); without --images it inverts images the generator
makes from seeded latents and reports the latent error against the true latents. Without --prior
a prior is fitted once and cached beside the generator (in --outdir for the demo generator).

--task solves an inverse problem in any space (gaussjax/inversion/tasks.py): the images are the
clean targets, the measurement y = A(x) (+ noise) is simulated from them, the loss compares A(G(s))
with y, NAME.png is the clean render G(s) and the summary's psnr compares it with the clean image.
"""

import pathlib
import sys

import jax
from absl import flags

from gaussjax import cli
from gaussjax.inversion import pipeline
from gaussjax.inversion.engine import InversionConfig
from gaussjax.inversion.spaces import SPACES
from gaussjax.inversion.tasks import CS_OPERATORS, TASKS

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

# Flags that set an InversionConfig field of the same meaning; unset ones keep the space's default.
_CONFIG_FLAGS = {
    "steps": ("num_steps", flags.DEFINE_integer("steps", None, "Optimisation steps per image.")),
    "steps_per_dispatch": (
        "steps_per_dispatch",
        flags.DEFINE_integer("steps_per_dispatch", None, "Steps per device call."),
    ),
    "prior_weight": (
        "prior_weight",
        flags.DEFINE_float("prior_weight", None, "λ; 0 turns the prior off."),
    ),
    "lpips_weight": ("lpips_weight", flags.DEFINE_float("lpips_weight", None, "Weight of LPIPS.")),
    "learning_rate": (
        "learning_rate",
        flags.DEFINE_float("learning_rate", None, "(Peak) learning rate."),
    ),
    "lr_schedule": (
        "lr_schedule",
        flags.DEFINE_enum("lr_schedule", None, ["official", "constant"], "Learning-rate schedule."),
    ),
    "optimizer": ("optimizer", flags.DEFINE_string("optimizer", None, "optax optimiser name.")),
    "latent_noise_factor": (
        "latent_noise_factor",
        flags.DEFINE_float(
            "latent_noise_factor", None, "Latent-noise ramp strength (0 turns it off)."
        ),
    ),
    "optimize_noise": (
        "optimize_noise",
        flags.DEFINE_bool("optimize_noise", None, "Also optimise the noise maps (official reg)."),
    ),
    "truncation_psi": (
        "truncation_psi",
        flags.DEFINE_float(
            "truncation_psi", None, "Z/Z+ spaces: truncation psi of the mapped rows."
        ),
    ),
    "truncation_cutoff": (
        "truncation_cutoff",
        flags.DEFINE_integer(
            "truncation_cutoff", None, "Z/Z+ spaces: truncate rows < cutoff only."
        ),
    ),
    "feature_layer": (
        "feature_layer",
        flags.DEFINE_integer("feature_layer", None, "F spaces: layer whose output is F."),
    ),
    "feature_reg_weight": (
        "feature_reg_weight",
        flags.DEFINE_float("feature_reg_weight", None, "F spaces: weight of mean((F - F0)^2)."),
    ),
    "class_idx": (
        "class_idx",
        flags.DEFINE_integer("class_idx", None, "Conditional generators: the class."),
    ),
    "dtype": (
        "dtype",
        flags.DEFINE_enum(
            "dtype", None, ["float32", "bfloat16"], "Synthesis compute dtype (bfloat16: GPU/TPU)."
        ),
    ),
    "remat": (
        "remat",
        flags.DEFINE_bool(
            "remat", None, "Recompute synthesis blocks in the backward pass (memory)."
        ),
    ),
    "microbatch": (
        "microbatch",
        flags.DEFINE_integer(
            "microbatch",
            None,
            "Images per pass of a step (0: all; default: 1 per device on CPU, else all).",
        ),
    ),
    "task": (
        "task",
        flags.DEFINE_enum("task", None, list(TASKS), "Inverse problem; default invert."),
    ),
    "denoise_std": (
        "denoise_std",
        flags.DEFINE_float("denoise_std", None, "denoise: noise sigma on [-1, 1] (0.25)."),
    ),
    "measurement_std": (
        "measurement_std",
        flags.DEFINE_float("measurement_std", None, "Other tasks: Gaussian noise on y (0)."),
    ),
    "inpaint_mask": (
        "inpaint_mask",
        flags.DEFINE_string("inpaint_mask", None, "inpaint: mask image, white = known."),
    ),
    "inpaint_block_height": (
        "inpaint_block_height",
        flags.DEFINE_float("inpaint_block_height", None, "inpaint: hole height fraction (0.4)."),
    ),
    "inpaint_block_width": (
        "inpaint_block_width",
        flags.DEFINE_float("inpaint_block_width", None, "inpaint: hole width fraction (0.2)."),
    ),
    "sr_factor": (
        "sr_factor",
        flags.DEFINE_integer("sr_factor", None, "super_resolution: box downsampling factor (4)."),
    ),
    "cs_ratio": (
        "cs_ratio",
        flags.DEFINE_float("cs_ratio", None, "compressed_sensing: measurements / values (0.1)."),
    ),
    "cs_operator": (
        "cs_operator",
        flags.DEFINE_enum("cs_operator", None, list(CS_OPERATORS), "compressed_sensing operator."),
    ),
    "task_seed": (
        "task_seed",
        flags.DEFINE_integer("task_seed", None, "Seed of the operator (mask block, matrix)."),
    ),
}


def config_from_flags() -> InversionConfig:
    """The space's defaults, overridden by every flag given on the command line."""
    overrides = {field: flag.value for field, flag in _CONFIG_FLAGS.values() if flag.present}
    if _LOSS.value:
        overrides["mse_weight"] = 1.0 if "mse" in _LOSS.value else 0.0
        if "lpips" not in _LOSS.value:
            overrides["lpips_weight"] = 0.0
        elif "lpips_weight" not in overrides:
            overrides["lpips_weight"] = max(
                InversionConfig.for_space(_SPACE.value).lpips_weight, 1.0
            )
    return InversionConfig.for_space(_SPACE.value, **overrides)


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
        spec = pipeline.RunSpec(
            outdir=pathlib.Path(_OUTDIR.value),
            config=config_from_flags(),
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
            log=log,
        )
        summary = pipeline.run(spec)
    except (ValueError, FileNotFoundError, OSError) as e:
        sys.exit(f"error: {e}")
    log(f"inverted {summary.inverted} now, {summary.finished}/{summary.total} finished in total")
    for line in summary.report:
        log(line)
    if summary.finished == 0:
        sys.exit("error: no image could be inverted (see summary.jsonl)")


if __name__ == "__main__":
    jax.config.config_with_absl()  # --jax_platforms, --jax_num_cpu_devices, ... work as flags
    cli.run(main)
