r"""Judges a digits generator with the digit classifier (gaussjax/training/digits.py).

    python -m experiments.judge_digits [--generator=DIR] [--samples=200] [--seed=0] [--out=FILE.json]

Renders --samples images from seeded z (constant noise), brings them back to 8x8 and prints the
verdict as JSON: how often the classifier is confident (top-class probability >= 0.8) compared with
held-out real digits after the same 32 px round trip, and how evenly the ten classes are predicted.
Without --generator it judges the built-in generator. Exits 1 when the generator fails the check.
"""

import json
import sys

from absl import flags

from gaussjax import cli
from gaussjax.files.checkpoints import generator_or_builtin
from gaussjax.files.safe_io import write_bytes_atomic
from gaussjax.training import digits, loop

_GENERATOR = flags.DEFINE_string(
    "generator", None, "Generator directory; default: the built-in one."
)
_SAMPLES = flags.DEFINE_integer("samples", 200, "Generated images to judge.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the z.")
_OUT = flags.DEFINE_string("out", None, "Also write the verdict to this JSON file.")


def main(argv):
    del argv
    try:
        G = generator_or_builtin(_GENERATOR.value)
        judge = digits.DigitJudge.fit(G.cfg.img_resolution)
    except (ValueError, FileNotFoundError, ImportError) as e:
        sys.exit(f"error: {e}")
    verdict = judge.judge(loop.seeded_samples(G, _SEED.value, _SAMPLES.value))
    text = json.dumps(verdict, indent=2)
    print(text)
    if _OUT.value:
        write_bytes_atomic(_OUT.value, (text + "\n").encode())
    sys.exit(0 if verdict["passes"] else 1)


if __name__ == "__main__":
    cli.run(main)
