"""Reading weight files for the converters, with one-line `ConversionError`s for every failure."""

import pathlib

import numpy as np

from converters.errors import ConversionError
from gaussjax.files import safe_io
from gaussjax.files.safe_io import first_line as first_line


def short_list(keys, limit: int = 8) -> str:
    """'[a, b, ... (N in all)]' for error messages that name keys."""
    keys = list(keys)
    more = f", ... ({len(keys)} in all)" if len(keys) > limit else ""
    return "[" + ", ".join(keys[:limit]) + more + "]"


def require_file(path) -> pathlib.Path:
    """The path of an existing, non-empty regular file, or a ConversionError saying what is wrong."""
    return safe_io.require_file(path, ConversionError)


def read_npz(path) -> dict[str, np.ndarray]:
    """All arrays of an .npz file (no pickles allowed), or a ConversionError."""
    return safe_io.read_npz(path, ConversionError)


def read_torch(path):
    """A torch.save file loaded with weights_only=True, tensors turned into numpy arrays
    (floating ones as float32)."""
    path = require_file(path)
    try:
        import torch  # Optional dependency: only needed for .pt/.pth files.
    except ImportError as e:
        raise ConversionError(
            f"{path}: reading .pt/.pth files needs torch (pip install 'gaussjax[torch]')"
        ) from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or unsafe files.
        raise ConversionError(f"{path}: cannot read as a PyTorch file ({first_line(e)})") from e
    return _tensors_to_numpy(obj)


def _tensors_to_numpy(obj):
    if isinstance(obj, dict):
        return {k: _tensors_to_numpy(v) for k, v in obj.items()}
    if hasattr(obj, "detach"):
        return obj.detach().float().numpy() if obj.is_floating_point() else obj.detach().numpy()
    return obj
