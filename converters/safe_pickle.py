"""Safe, torch-free unpickling of NVIDIA StyleGAN2 network pickles (PyTorch and TF releases).

stylegan2-ada-pytorch (and the StyleGAN2 networks of the stylegan3 repository) save
training snapshots with plain ``pickle`` through ``torch_utils.persistence`` (format
version 6). Loading them the official way imports torch and ``exec()``s the module
source text embedded in the file, so a malicious pickle can run arbitrary code. The
TensorFlow releases (stylegan2, stylegan2-ada TF) pickle ``dnnlib.tflib.network.Network``
objects whose ``__setstate__`` does the same with ``build_module_src``.

This module never does either. A restricted unpickler resolves only an explicit
whitelist of globals (``KNOWN_GLOBALS``) to inert replacements:

* every persistent object becomes a ``PersistentRecord`` (class name + ``__dict__``
  state); the embedded ``module_src`` is never executed, not even looked at;
* every TF ``Network`` becomes a ``TFNetworkRecord`` holding its pickled state dict
  (``converters.tf_pickle`` reads it);
* tensors become numpy arrays, rebuilt from the torch-serialized storage bytes that a
  second restricted unpickler parses (``converters.torch_storage``);
* ``EasyDict`` becomes a ``dict`` subclass, ``OrderedDict``/``set``/numpy scalars are
  the real (code-free) constructors.

Every bad or unsupported input raises ``ConversionError`` with a one-line message; the
network readers (``converters.nvidia_pickle``, ``converters.tf_pickle``) take the result.
"""

import collections
import pickle

import numpy as np

from converters.errors import ConversionError
from converters.files import require_file
from converters.torch_storage import Storage, parse_storage_bytes, strided_copy
from converters.untrusted import clean, is_int, refuse_global

try:  # NumPy >= 2 keeps the implementation in numpy._core; numpy.core warns there.
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core import multiarray as _np_multiarray

_PERSISTENCE_VERSION = 6

# Globals the outer snapshot pickle may reference -> name of the replacement.
_OUTER_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): "_reconstruct_persistent_obj",
    ("torch._utils", "_rebuild_tensor_v2"): "_rebuild_tensor_v2",
    ("torch._utils", "_rebuild_parameter"): "_rebuild_parameter",
    ("torch._utils", "_rebuild_parameter_with_state"): "_rebuild_parameter",
    ("torch.storage", "_load_from_bytes"): "_load_from_bytes",
    ("collections", "OrderedDict"): "OrderedDict",
    ("builtins", "set"): "set",
    ("__builtin__", "set"): "set",  # what protocol <= 2 writes (Python 2 naming)
    ("dnnlib.util", "EasyDict"): "EasyDict",
    ("numpy", "dtype"): "dtype",
    ("numpy", "ndarray"): "ndarray",
    ("numpy.core.multiarray", "scalar"): "scalar",
    ("numpy._core.multiarray", "scalar"): "scalar",
    ("numpy.core.multiarray", "_reconstruct"): "_reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "_reconstruct",
    ("dnnlib.tflib.network", "Network"): "TFNetwork",  # TF pickles: (G, D, Gs)
}

KNOWN_GLOBALS = frozenset(f"{module}.{name}" for module, name in _OUTER_GLOBALS)
"""Every global a StyleGAN2 network pickle (PyTorch or TF) may reference; anything else is refused."""


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``; a type because it arrives via NEWOBJ."""


class PersistentRecord:
    """Inert result of ``_reconstruct_persistent_obj``: class name and module state."""

    __slots__ = ("class_name", "state")

    def __init__(self, class_name, state):
        self.class_name = class_name
        self.state = state


class TFNetworkRecord:
    """Inert stand-in for ``dnnlib.tflib.network.Network``: keeps the pickled state dict.

    Pickle creates it with NEWOBJ (no arguments) and hands the state to ``__setstate__``,
    which only stores it; the TF original would ``exec()`` ``build_module_src`` there.
    Without a BUILD opcode ``state`` stays unset: read it with ``getattr(..., None)``.
    """

    __slots__ = ("state",)

    def __setstate__(self, state):
        self.state = state


class _NetworkUnpickler(pickle.Unpickler):
    """Restricted unpickler for the outer snapshot pickle (see ``KNOWN_GLOBALS``)."""

    OrderedDict = collections.OrderedDict
    set = set
    EasyDict = _EasyDict
    TFNetwork = TFNetworkRecord
    dtype = np.dtype
    ndarray = np.ndarray
    scalar = staticmethod(_np_multiarray.scalar)
    _reconstruct = staticmethod(_np_multiarray._reconstruct)

    def __init__(self, file, path):
        super().__init__(file)
        self._path = path

    def find_class(self, module, name):
        attribute = _OUTER_GLOBALS.get((module, name))
        if attribute is None:
            raise refuse_global(self._path, module, name)
        return getattr(self, attribute)

    def persistent_load(self, pid):
        # Network pickles are plain pickles; persistent ids mean a torch.save file.
        raise ConversionError(
            f"{self._path} uses persistent ids (a torch.save checkpoint?), not a network pickle"
        )

    def _reconstruct_persistent_obj(self, meta):
        """Replaces torch_utils.persistence's loader; never executes ``module_src``."""
        if not isinstance(meta, dict):
            raise ConversionError(f"{self._path}: malformed persistent object record")
        version = meta.get("version")
        if not is_int(version) or version != _PERSISTENCE_VERSION:
            raise ConversionError(
                f"{self._path} uses torch_utils.persistence format version {clean(version)}; "
                f"only version {_PERSISTENCE_VERSION} (stylegan2-ada-pytorch, stylegan3) "
                "is supported"
            )
        if meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
            raise ConversionError(f"{self._path}: unsupported persistent object record")
        return PersistentRecord(meta["class_name"], meta.get("state"))

    def _rebuild_tensor_v2(self, storage, offset, size, stride, *_unused):
        """Replaces torch's tensor rebuild (requires_grad, hooks, metadata ignored)."""
        if not isinstance(storage, Storage):
            raise ConversionError(f"{self._path}: a tensor has no valid storage")
        return strided_copy(storage.array, offset, size, stride, self._path)

    def _rebuild_parameter(self, data, *_unused):
        """Replaces torch's Parameter rebuild (with or without state): the tensor itself."""
        if not isinstance(data, np.ndarray):
            raise ConversionError(f"{self._path}: a parameter holds no tensor")
        return data

    def _load_from_bytes(self, data):
        """Replaces torch.storage._load_from_bytes with the torch-free parser."""
        if not isinstance(data, (bytes, bytearray)):
            raise ConversionError(f"{self._path}: a tensor storage is not a byte string")
        return Storage(parse_storage_bytes(bytes(data), self._path))


def _check_header(head, path):
    """Rejects files that are obviously not a protocol >= 2 pickle.

    Args:
        head: the first bytes of the file.
        path: the file being read (for messages).
    """
    if head.startswith(b"PK\x03\x04"):
        raise ConversionError(
            f"{path} is a zip archive (a torch.save checkpoint?), not a StyleGAN2 network pickle"
        )
    # pickle.dump in Python 3 always writes a PROTO opcode (0x80) and a version 2..5.
    if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= 5:
        raise ConversionError(
            f"{path} is not a network pickle (it starts with {head[:8]!r}; "
            "expected a protocol 2-5 pickle)"
        )


def load_network_pickle(path):
    """Unpickles a network pickle (PyTorch snapshot or TF) with the restricted unpickler.

    Args:
        path: the file to read.

    Returns:
        The top-level object, with persistent objects as ``PersistentRecord`` and TF
        networks as ``TFNetworkRecord``.

    Raises:
        ConversionError: missing, unreadable, truncated or corrupt file, or a global
            outside the whitelist.
    """
    require_file(path)
    try:
        with open(path, "rb") as file:
            _check_header(file.read(8), path)
            file.seek(0)
            return _NetworkUnpickler(file, path).load()
    except ConversionError:
        raise
    except OSError as exc:
        reason = clean(exc.strerror or exc)
        raise ConversionError(f"cannot read network pickle {path}: {reason}") from None
    except EOFError:
        raise ConversionError(f"{path} is truncated: the pickle stream ends early") from None
    except pickle.UnpicklingError as exc:
        reason = "is truncated" if "truncated" in str(exc) else "is corrupt"
        raise ConversionError(f"{path} {reason}: {clean(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - crafted pickles can fail in any way
        raise ConversionError(
            f"{path} is not a valid StyleGAN2 network pickle ({type(exc).__name__}: {clean(exc)})"
        ) from None
