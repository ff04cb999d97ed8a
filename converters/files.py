"""Reading weight files for the converters, with one-line `ConversionError`s for every failure."""

import pathlib

import numpy as np

from converters.errors import ConversionError
from gaussjax.files import safe_io


def require_file(path) -> pathlib.Path:
    """The path of an existing, non-empty regular file, or a ConversionError saying what is wrong."""
    return safe_io.require_file(path, ConversionError)


def read_npz(path) -> dict[str, np.ndarray]:
    """All arrays of an .npz file (no pickles allowed), or a ConversionError."""
    return safe_io.read_npz(path, ConversionError)


def read_torch(path):
    """A torch.save file loaded with weights_only=True, tensors turned into numpy arrays
    (floating ones as float32), or a ConversionError."""
    return safe_io.read_torch(path, ConversionError)
