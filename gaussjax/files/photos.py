"""Natural photos that ship with a dependency: scikit-learn's sample images (china.jpg, flower.jpg,
427x640 JPEGs). Out of domain for any face or random generator, and on every machine without a
download, so tests and `experiments.compare_spaces` have real photographs to invert.
"""

import importlib.resources
import pathlib

import numpy as np

from gaussjax.files import images


def sample_photos_dir() -> pathlib.Path:
    """The directory of scikit-learn's sample images (an `--images` spec).

    Raises:
      ValueError: scikit-learn is not installed (pip install scikit-learn, or the [test] extra).
    """
    try:
        return pathlib.Path(str(importlib.resources.files("sklearn.datasets.images")))
    except ModuleNotFoundError as e:
        raise ValueError(
            "the default natural photos come from scikit-learn: pip install scikit-learn"
        ) from e


def sample_photos(resolution: int, channels: int) -> dict[str, np.ndarray]:
    """{name: float32 [resolution, resolution, channels] in [-1, 1]}, center-cropped and resized
    like every input image (files.images.load_image)."""
    paths = images.image_files(str(sample_photos_dir()))
    return {p.stem: images.to_float(images.load_image(p, resolution, channels)) for p in paths}
