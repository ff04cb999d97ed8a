"""The built-in generator: a StyleGAN2 trained here on scikit-learn's handwritten digits.

Every launcher uses it when no --generator is given, so a fresh install runs on a trained network:
1,797 8x8 digits upsampled to 32 px, gray on black as RGB, z and w of 64 dimensions, 8 mapping
layers, 64 channels (32 at 32 px), skip architecture. It was trained by `experiments.train` for
300 kimg with PacGAN pairs, a wider and smoother D and a longer G EMA (README: the command, the
training numbers, and the classifier check it passes). It is an ordinary generator directory
shipped inside the package, loaded like any other (`files.checkpoints.generator_or_builtin`); this
module only says where it is and how to name it. The random-weight generator of `networks/demo.py`
remains for tests.
"""

import pathlib

BUILTIN_DIR = pathlib.Path(__file__).with_name("builtin_digits32")
BUILTIN_LABEL = "built-in digits generator (32 px, trained)"
BUILTIN_NOTICE = (
    "using the built-in generator (StyleGAN2 trained on scikit-learn's handwritten digits, 32 px); "
    "give a generator directory (generator=DIR) for a converted network"
)
