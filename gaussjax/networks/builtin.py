"""The built-in generator: a StyleGAN2 trained here on scikit-learn's handwritten digits.

Every launcher uses it when no --generator is given, so a fresh install runs on a trained network:
1,797 8x8 digits upsampled to 32 px, gray on black as RGB, z and w of 64 dimensions, 8 mapping
layers, 64 channels (32 at 32 px), skip architecture. It was trained by `experiments.train` for
300 kimg with PacGAN pairs, a wider and smoother D and a longer G EMA (README: the command, the
training numbers, and the classifier check it passes). It is an ordinary generator directory
shipped inside the package. The random-weight generator of `networks/demo.py` remains for tests.
"""

import pathlib

from gaussjax.files import checkpoints
from gaussjax.networks.stylegan2 import Generator

BUILTIN_DIR = pathlib.Path(__file__).with_name("builtin_digits32")
BUILTIN_LABEL = "built-in digits generator (32 px, trained)"
BUILTIN_NOTICE = (
    "using the built-in generator (StyleGAN2 trained on scikit-learn's handwritten digits, 32 px); "
    "pass --generator=DIR for a converted network"
)


def builtin_generator() -> Generator:
    return checkpoints.load_generator_module(BUILTIN_DIR)


def generator_or_builtin(path, log=print) -> Generator:
    """The generator directory at `path`, or (None) the built-in one, saying so through `log`."""
    if path is None:
        log(BUILTIN_NOTICE)
        return builtin_generator()
    return checkpoints.load_generator_module(path)
