r"""Fits the Gaussianized latent prior (μ, Σ of v = LeakyReLU_5(w)) of a gaussjax generator.

    python -m experiments.fit_prior --out=prior.npz [--generator=DIR] [--num_samples=N] [--seed=S] \
        [--chunk_size=4096] [--class_idx=K]

Samples z ~ N(0, I), maps it to w, accumulates the mean and covariance of v = gaussianize(w) in
float64, prints the skewness / excess kurtosis of w vs v, and writes an npz for
`gaussjax.analysis.prior.load_prior`, stamped with the generator's fingerprint so that it is never used with
another generator. On a conditional generator, --class_idx=K fits class K; without it the prior is
the marginal over classes (each sample's class drawn uniformly at random).
"""

import pathlib
import sys
import time

from absl import flags

from gaussjax import cli
from gaussjax.analysis import prior
from gaussjax.files import checkpoints
from gaussjax.files.checkpoints import generator_or_builtin
from gaussjax.networks.builtin import BUILTIN_LABEL
from gaussjax.networks.stylegan2 import PureGenerator

_GENERATOR = flags.DEFINE_string(
    "generator",
    None,
    "Generator directory (made by converters.convert); default: the built-in one.",
)
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 100_000, "Number of mapping samples.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed for z (and the classes of a marginal prior).")
_OUT = flags.DEFINE_string("out", None, "Output npz file.")
_CHUNK_SIZE = flags.DEFINE_integer("chunk_size", 4096, "Samples per jitted mapping call.")
_CLASS_IDX = flags.DEFINE_integer("class_idx", None, "Conditional generators: fit this class only.")


def progress_printer(min_interval_s: float = 2.0):
    """A `progress(done, total)` callback printing samples/s at most every `min_interval_s`."""
    start = time.perf_counter()
    last = [start]

    def report(done, total):
        now = time.perf_counter()
        if done < total and now - last[0] < min_interval_s:
            return
        last[0] = now
        print(
            f"  {done}/{total} samples  ({done / max(now - start, 1e-9):,.0f} samples/s)",
            flush=True,
        )

    return report


def describe_conditioning(cfg, class_idx) -> str:
    if cfg.c_dim == 0:
        return "unconditional generator"
    if class_idx is None:
        return (
            f"conditional generator ({cfg.c_dim} classes), no --class_idx: fitting the marginal "
            "over classes drawn uniformly at random"
        )
    return f"conditional generator ({cfg.c_dim} classes): fitting class {class_idx}"


def check_flags() -> pathlib.Path:
    """Validates the flags that can be checked before loading anything; returns the output path."""
    if not _OUT.value:
        sys.exit("error: --out is required")
    if _NUM_SAMPLES.value < 2 or _CHUNK_SIZE.value < 1:
        sys.exit("error: --num_samples must be >= 2 and --chunk_size >= 1")
    out = pathlib.Path(_OUT.value)
    if not out.parent.is_dir():
        sys.exit(f"error: the directory of --out ({out.parent}) does not exist")
    if out.is_dir():
        sys.exit(f"error: --out={out} is a directory; name the .npz file to write")
    return out


def main(argv):
    del argv
    out = check_flags()
    try:
        generator = generator_or_builtin(_GENERATOR.value)
    except (ValueError, FileNotFoundError, OSError, KeyError) as e:
        sys.exit(f"error: {e}")
    cfg = generator.cfg
    # Computed from the weights, as experiments.invert does, so the two can never disagree.
    fingerprint = checkpoints.generator_fingerprint(generator)
    name = _GENERATOR.value or BUILTIN_LABEL
    conditioning = describe_conditioning(cfg, _CLASS_IDX.value)
    print(f"generator {name} (fingerprint {fingerprint}): {conditioning}")
    fns, params = PureGenerator.split(generator)
    try:
        stats = prior.fit_generator_prior(
            fns,
            params,
            cfg,
            num_samples=_NUM_SAMPLES.value,
            seed=_SEED.value,
            chunk_size=_CHUNK_SIZE.value,
            class_idx=_CLASS_IDX.value,
            progress=progress_printer(),
        )
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(prior.gaussianity_summary(stats))
    prior.save_prior(out, stats, fingerprint)
    print(
        f"wrote {out}: mean [{cfg.w_dim}], cov [{cfg.w_dim}, {cfg.w_dim}] of v over {stats.num_samples} samples"
    )


if __name__ == "__main__":
    cli.run(main)
