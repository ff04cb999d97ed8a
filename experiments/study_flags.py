"""Flags every paper-experiment launcher shares (generator, prior, seed, outdir), and its main-loop
wrapper: bad input ends with one line and a non-zero exit."""

import pathlib
import sys

from absl import flags

from gaussjax.reports.plots import pyplot
from gaussjax.studies import realism
from gaussjax.studies.setup import Study, load_study

OUTDIR = flags.DEFINE_string("outdir", None, "Output directory for report.md, results.json, PNGs.")
GENERATOR = flags.DEFINE_string(
    "generator", None, "Generator directory; default: the built-in one."
)
PRIOR = flags.DEFINE_string(
    "prior", None, "prior.npz; default: cached beside the generator or fitted."
)
PRIOR_SAMPLES = flags.DEFINE_integer(
    "prior_samples", 10000, "Mapping samples when fitting a prior."
)
SEED = flags.DEFINE_integer(
    "seed", 0, "Seed of every random draw (samples, targets, the prior fit)."
)


def define_judge_flag() -> flags.FlagHolder:
    """--judge of the launchers that judge realism (gaussjax/studies/realism.py)."""
    return flags.DEFINE_string(
        "judge",
        None,
        "Realism judge directory (experiments.train_judge), builtin, or none; default: the "
        "built-in generator's own judge for the built-in generator, none for any other.",
    )


def judges(study: Study, judge_flag: flags.FlagHolder) -> realism.Judges:
    """The realism judges of --judge for the study's generator (the digit classifier joins for
    the built-in generator)."""
    return realism.load_judges(
        judge_flag.value, study.fingerprint, study.cfg.img_resolution, not GENERATOR.value
    )


def outdir() -> pathlib.Path:
    if not OUTDIR.value:
        raise ValueError("--outdir is required")
    return pathlib.Path(OUTDIR.value)


def study() -> Study:
    """The generator and prior named by the flags (checks matplotlib first: fail before work)."""
    pyplot()
    return load_study(outdir(), GENERATOR.value, PRIOR.value, PRIOR_SAMPLES.value, SEED.value)


def run_main(body) -> None:
    """Calls body(); ValueError/OSError/ImportError (bad flags, files, no matplotlib) -> one line, exit 1."""
    try:
        body()
    except (ValueError, OSError, ImportError) as e:
        sys.exit(f"error: {e}")
