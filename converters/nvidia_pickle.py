"""Safe, torch-free reader for NVIDIA StyleGAN2 network pickles.

stylegan2-ada-pytorch (and the StyleGAN2 networks of the stylegan3 repository) save
training snapshots with plain ``pickle`` through ``torch_utils.persistence`` (format
version 6). Loading them the official way imports torch and ``exec()``s the module
source text embedded in the file, so a malicious pickle can run arbitrary code. The
TensorFlow releases (stylegan2, stylegan2-ada TF) pickle ``dnnlib.tflib.network.Network``
objects whose ``__setstate__`` does the same with ``build_module_src``.

This module never does either. A restricted unpickler resolves only an explicit
whitelist of globals (``KNOWN_GLOBALS``) to inert replacements:

* every persistent object becomes a ``_PersistentRecord`` (class name + ``__dict__``
  state); the embedded ``module_src`` is never executed, not even looked at;
* every TF ``Network`` becomes a ``TFNetworkRecord`` holding its pickled state dict
  (``converters.tf_pickle`` reads it);
* tensors become numpy arrays, rebuilt from the torch-serialized storage bytes that a
  second restricted unpickler parses (legacy stream and zip formats);
* ``EasyDict`` becomes a ``dict`` subclass, ``OrderedDict``/``set``/numpy scalars are
  the real (code-free) constructors.

Every bad or unsupported input raises ``ConversionError`` with a one-line message.
"""

import collections
import contextlib
import io
import math
import os
import pickle
import struct
import zipfile

import numpy as np

from .errors import ConversionError
from .files import require_file

try:  # NumPy >= 2 keeps the implementation in numpy._core; numpy.core warns there.
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core import multiarray as _np_multiarray

_PERSISTENCE_VERSION = 6
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_MAX_DEPTH = 64  # real generators are 4 levels deep; bounds recursion on crafted files
# A 1024px generator walks ~350 entries (modules, tensors, kwargs); a crafted DAG walks 2**depth.
_MAX_WALK_ENTRIES = 10_000
_MAX_INNER_PICKLE = 16 << 20  # a storage's data.pkl is ~100 bytes; caps zip bombs

_GENERATOR_CLASSES = frozenset(
    {
        "Generator",
        "MappingNetwork",
        "SynthesisNetwork",
        "SynthesisBlock",
        "SynthesisLayer",
        "ToRGBLayer",
        "FullyConnectedLayer",
        "Conv2dLayer",
    }
)
_STYLEGAN3_CLASS = "SynthesisInput"

# torch storage class name -> numpy dtype of its raw bytes (byte order applied later).
_STORAGE_DTYPES = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "BFloat16Storage": "u2",  # numpy has no bfloat16: decoded by bit shifting
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "ByteStorage": "u1",
    "CharStorage": "i1",
    "BoolStorage": "?",
    "UntypedStorage": "u1",  # raw bytes; torch.save of an untyped storage
}

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

KNOWN_STORAGE_GLOBALS = frozenset(
    [f"torch.{name}" for name in _STORAGE_DTYPES] + ["torch.storage.UntypedStorage"]
)
"""Globals allowed inside the torch.save stream of a single tensor storage."""


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``; a type because it arrives via NEWOBJ."""


class _PersistentRecord:
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


class _Storage:
    """A decoded tensor storage: a flat numpy array (floats already float32)."""

    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array


class _StorageType:
    """Marker for a torch storage class global (e.g. ``torch.FloatStorage``)."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


class _StorageRef:
    """A persistent id of an inner torch.save stream, resolved once bytes are known."""

    __slots__ = ("type_name", "key", "numel", "view")

    def __init__(self, type_name, key, numel, view):
        self.type_name, self.key, self.numel, self.view = type_name, key, numel, view


_SCALARS = (str, bytes, int, float, np.generic, type(None))


def _prints_in_linear_time(value):
    """True for scalars, exceptions and flat lists/tuples of scalars (values in messages)."""
    if isinstance(value, (list, tuple)):
        return all(isinstance(item, _SCALARS) for item in value)
    return isinstance(value, (*_SCALARS, BaseException))


def _clean(text, limit=200):
    """Makes untrusted text safe for a one-line message.

    Args:
        text: any object; its ``str`` is used where that is cheap, else its type name.
        limit: maximum number of characters kept.

    Returns:
        The text with non-printable characters (newlines included) replaced by '?'.
    """
    # str() of a nested container prints all of it, once per path: on a crafted DAG of shared
    # lists that takes exponential time, so those are named by their type only.
    text = str(text) if _prints_in_linear_time(text) else f"<{type(text).__name__}>"
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[:limit] + "..."


def _refuse_global(path, module, name):
    """Builds the error for a global that is not on a whitelist.

    Args:
        path: the file being read.
        module: module part of the global.
        name: attribute part of the global.

    Returns:
        A ConversionError to raise.
    """
    return ConversionError(
        f"refusing to load {path}: it references the global '{_clean(module)}.{_clean(name)}', "
        "which is not on the whitelist of a StyleGAN2 network pickle"
    )


class _GraphWalk:
    """Bounds one walk over an unpickled object graph that the walk reads as a tree.

    Pickle memoises objects, so a crafted file can reference one container from many places
    (n levels that each hold the next level twice: n objects, but 2**n paths) or put a container
    inside itself. A walk that follows every path would then take exponential time, or never
    end. The walk instead pays for every entry it reads along every path and is refused past
    ``_MAX_WALK_ENTRIES``, which also bounds the size of what it builds; containers on the
    current path are tracked by ``id()`` to refuse cycles. Sharing without a cycle (torch's
    ``state_dict`` reads a shared submodule under each of its names too) stays allowed.
    """

    def __init__(self, path, subject):
        """``subject`` names what is walked in messages, e.g. 'the module tree'."""
        self.path = path  # the file being read, for the walkers' own messages
        self._subject = subject
        self._entries_left = _MAX_WALK_ENTRIES
        self._on_path = set()  # id()s are stable: the unpickled graph keeps every object alive

    def pay(self, entries):
        """Charges ``entries`` read to the walk; refuses the file once they are too many."""
        self._entries_left -= entries
        if self._entries_left < 0:
            raise ConversionError(
                f"{self.path}: {self._subject} is implausibly large (over {_MAX_WALK_ENTRIES} "
                "entries; shared references can multiply its paths)"
            )

    @contextlib.contextmanager
    def inside(self, container):
        """Holds ``container`` on the current path while the walk reads its contents."""
        if id(container) in self._on_path:
            raise ConversionError(
                f"{self.path}: {self._subject} is not a plain tree (it contains itself)"
            )
        if len(self._on_path) >= _MAX_DEPTH:
            raise ConversionError(
                f"{self.path}: {self._subject} is implausibly deep (over {_MAX_DEPTH} levels)"
            )
        self._on_path.add(id(container))
        try:
            yield
        finally:
            self._on_path.discard(id(container))


def _is_int(value):
    """Returns True for a real integer (``bool`` is excluded on purpose)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _decode_storage(raw, type_name, byteorder):
    """Turns raw storage bytes into a flat, native-order numpy array.

    Args:
        raw: the bytes of the storage.
        type_name: torch storage class name, a key of ``_STORAGE_DTYPES``.
        byteorder: 'little' or 'big', as recorded by torch.save.

    Returns:
        A 1-D array; floating types are converted to float32, integers kept.
    """
    endian = "<" if byteorder == "little" else ">"
    if type_name == "BFloat16Storage":
        # bfloat16 is the upper half of a float32: shift the bits into place.
        bits = np.frombuffer(raw, np.dtype(endian + "u2")).astype(np.uint32) << 16
        return bits.view(np.float32)
    array = np.frombuffer(raw, np.dtype(_STORAGE_DTYPES[type_name]).newbyteorder(endian))
    if array.dtype.kind == "f":
        return array.astype(np.float32)
    return array.astype(array.dtype.newbyteorder("="))


class _StorageUnpickler(pickle.Unpickler):
    """Unpickler for the pickles inside a torch.save stream of one storage.

    Only storage class globals resolve (to markers); persistent ids become
    ``_StorageRef`` objects collected in ``refs`` so the data can be attached later.
    """

    def __init__(self, file, path):
        super().__init__(file)
        self._path = path
        self.refs = {}

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch.storage" and name == "UntypedStorage":
            return _StorageType(name)
        raise _refuse_global(self._path, module, name)

    def persistent_load(self, pid):
        # Legacy ids have 6 fields (last: view metadata), zip ids have 5.
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise ConversionError(f"{self._path}: unexpected persistent id in a tensor storage")
        _, stype, key, _location, numel = pid[:5]
        valid = isinstance(stype, _StorageType) and isinstance(key, str) and _is_int(numel)
        if not valid or numel < 0:
            raise ConversionError(f"{self._path}: malformed storage record in a tensor storage")
        ref = _StorageRef(stype.name, key, numel, pid[5] if len(pid) == 6 else None)
        known = self.refs.setdefault(key, ref)
        if known.type_name != ref.type_name:
            raise ConversionError(
                f"{self._path}: storage {_clean(key)!r} is declared with two types"
            )
        return ref


def _resolve_storage(root, raw_by_key, byteorder, path):
    """Decodes the storage a torch.save stream holds, applying a legacy view.

    Args:
        root: the object the main pickle produced; must be a ``_StorageRef``.
        raw_by_key: storage key -> raw bytes.
        byteorder: 'little' or 'big'.
        path: the file being read (for messages).

    Returns:
        The flat numpy array of the storage.
    """
    if not isinstance(root, _StorageRef):
        raise ConversionError(f"{path}: a tensor storage stream does not hold a storage")
    array = _decode_storage(raw_by_key[root.key], root.type_name, byteorder)
    if root.view is not None:  # legacy torch (< 1.0) storage views: (key, offset, size)
        _key, offset, size = root.view
        if not (_is_int(offset) and _is_int(size) and 0 <= offset and offset + size <= array.size):
            raise ConversionError(f"{path}: a tensor storage view is out of bounds")
        array = array[offset : offset + size]
    return array


def _itemsize(type_name):
    """Returns the size in bytes of one element of a torch storage class."""
    return np.dtype(_STORAGE_DTYPES[type_name]).itemsize


def _parse_legacy_storage(blob, path):
    """Parses a legacy (non-zip) torch.save stream holding one storage.

    Layout: pickled magic number, pickled protocol 1001, pickled sys_info dict, the
    main pickle, pickled list of storage keys, then per key an int64 element count
    followed by the raw element bytes.

    Args:
        blob: the bytes of the stream.
        path: the file being read (for messages).

    Returns:
        The flat numpy array of the storage.
    """
    stream = io.BytesIO(blob)
    unpickler = _StorageUnpickler(stream, path)
    if unpickler.load() != _LEGACY_MAGIC or unpickler.load() != _LEGACY_PROTOCOL:
        raise ConversionError(f"{path}: a tensor storage is not in torch.save format")
    sys_info = unpickler.load()
    little = sys_info.get("little_endian", True) if isinstance(sys_info, dict) else True
    byteorder = "little" if little else "big"
    root = unpickler.load()
    keys = unpickler.load()
    if not isinstance(keys, list):
        raise ConversionError(f"{path}: a tensor storage has no key list")
    raw_by_key = {}
    for key in keys:
        ref = unpickler.refs.get(key) if isinstance(key, str) else None
        header = stream.read(8)
        if ref is None or len(header) != 8:
            raise ConversionError(f"{path}: a tensor storage is truncated or inconsistent")
        (count,) = struct.unpack("<q" if little else ">q", header)
        nbytes = count * _itemsize(ref.type_name)
        raw_by_key[key] = stream.read(nbytes) if count >= 0 else b""
        if count < ref.numel or len(raw_by_key[key]) != nbytes:
            raise ConversionError(f"{path}: a tensor storage is truncated")
    return _resolve_storage(root, raw_by_key, byteorder, path)


def _read_zip_member(archive, name, size, path):
    """Reads exactly ``size`` bytes of an archive member, never more.

    Args:
        archive: an open ``zipfile.ZipFile``.
        name: member name.
        size: number of bytes wanted.
        path: the file being read (for messages).

    Returns:
        The bytes.
    """
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ConversionError(f"{path}: a tensor storage archive lacks {_clean(name)!r}") from None
    if info.file_size < size:
        raise ConversionError(f"{path}: a tensor storage archive member is truncated")
    with archive.open(info) as member:  # reading a bounded amount defuses zip bombs
        return member.read(size)


def _parse_zip_storage(blob, path):
    """Parses a zip-format torch.save archive holding one storage.

    Layout: ``<prefix>/data.pkl`` (main pickle), ``<prefix>/byteorder`` (optional),
    ``<prefix>/data/<key>`` (raw bytes of each storage).

    Args:
        blob: the bytes of the archive.
        path: the file being read (for messages).

    Returns:
        The flat numpy array of the storage.
    """
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ConversionError(f"{path}: a tensor storage archive has no single data.pkl")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"  # torch's assumption for archives without the record
        if prefix + "byteorder" in names:
            size = min(archive.getinfo(prefix + "byteorder").file_size, 16)
            raw = _read_zip_member(archive, prefix + "byteorder", size, path)
            byteorder = raw.decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise ConversionError(f"{path}: a tensor storage has unknown byte order")
        size = archive.getinfo(pickles[0]).file_size
        if size > _MAX_INNER_PICKLE:
            raise ConversionError(f"{path}: a tensor storage archive is implausibly large")
        main = _read_zip_member(archive, pickles[0], size, path)
        unpickler = _StorageUnpickler(io.BytesIO(main), path)
        root = unpickler.load()
        raw_by_key = {
            key: _read_zip_member(
                archive, f"{prefix}data/{key}", ref.numel * _itemsize(ref.type_name), path
            )
            for key, ref in unpickler.refs.items()
        }
    return _resolve_storage(root, raw_by_key, byteorder, path)


def _parse_storage_bytes(blob, path="<storage>"):
    """Decodes the torch.save byte stream of one storage, without torch.

    Args:
        blob: bytes given to ``torch.storage._load_from_bytes``.
        path: the file being read (for messages).

    Returns:
        A flat numpy array (float32 for floating storages, integer types kept,
        uint8 for an untyped storage).

    Raises:
        ConversionError: for anything malformed or not whitelisted.
    """
    try:
        if blob[:4] == b"PK\x03\x04":  # torch >= 1.6 default serialization
            return _parse_zip_storage(blob, path)
        return _parse_legacy_storage(blob, path)
    except ConversionError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
        raise ConversionError(
            f"{path}: a tensor storage is corrupt ({type(exc).__name__}: {_clean(exc)})"
        ) from None


def _strided_copy(flat, offset, size, stride, path):
    """Materializes a strided tensor view of a flat storage, bounds-checked.

    Args:
        flat: the storage array.
        offset: storage offset in elements.
        size: tensor shape.
        stride: tensor strides in elements.
        path: the file being read (for messages).

    Returns:
        A C-contiguous copy with the given shape.
    """
    valid = (
        _is_int(offset)
        and offset >= 0
        and isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride)
        and all(_is_int(v) and v >= 0 for v in size + stride)
    )
    if not valid:
        raise ConversionError(f"{path}: malformed tensor shape or stride")
    numel = math.prod(size)
    if numel == 0:
        return np.zeros(size, flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    # Checked before as_strided, which would otherwise read outside the buffer. Tensors
    # larger than their storage (stride-0 expansions) never occur in a snapshot.
    if last >= flat.size or numel > flat.size:
        raise ConversionError(f"{path}: a tensor reaches outside its storage")
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=tuple(s * flat.itemsize for s in stride), writeable=False
    )
    return np.array(view)


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
            raise _refuse_global(self._path, module, name)
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
        if not _is_int(version) or version != _PERSISTENCE_VERSION:
            raise ConversionError(
                f"{self._path} uses torch_utils.persistence format version {_clean(version)}; "
                f"only version {_PERSISTENCE_VERSION} (stylegan2-ada-pytorch, stylegan3) "
                "is supported"
            )
        if meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
            raise ConversionError(f"{self._path}: unsupported persistent object record")
        return _PersistentRecord(meta["class_name"], meta.get("state"))

    def _rebuild_tensor_v2(self, storage, offset, size, stride, *_unused):
        """Replaces torch's tensor rebuild (requires_grad, hooks, metadata ignored)."""
        if not isinstance(storage, _Storage):
            raise ConversionError(f"{self._path}: a tensor has no valid storage")
        return _strided_copy(storage.array, offset, size, stride, self._path)

    def _rebuild_parameter(self, data, *_unused):
        """Replaces torch's Parameter rebuild (with or without state): the tensor itself."""
        if not isinstance(data, np.ndarray):
            raise ConversionError(f"{self._path}: a parameter holds no tensor")
        return data

    def _load_from_bytes(self, data):
        """Replaces torch.storage._load_from_bytes with the torch-free parser."""
        if not isinstance(data, (bytes, bytearray)):
            raise ConversionError(f"{self._path}: a tensor storage is not a byte string")
        return _Storage(_parse_storage_bytes(bytes(data), self._path))


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
        The top-level object, with persistent objects as ``_PersistentRecord`` and TF
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
        reason = _clean(exc.strerror or exc)
        raise ConversionError(f"cannot read network pickle {path}: {reason}") from None
    except EOFError:
        raise ConversionError(f"{path} is truncated: the pickle stream ends early") from None
    except pickle.UnpicklingError as exc:
        reason = "is truncated" if "truncated" in str(exc) else "is corrupt"
        raise ConversionError(f"{path} {reason}: {_clean(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - crafted pickles can fail in any way
        raise ConversionError(
            f"{path} is not a valid StyleGAN2 network pickle ({type(exc).__name__}: {_clean(exc)})"
        ) from None


def _select_network(top, network, path):
    """Picks the requested network out of the snapshot dict.

    Args:
        top: the unpickled top-level object.
        network: the key, e.g. 'G_ema'.
        path: the file being read (for messages).

    Returns:
        The ``_PersistentRecord`` of a Generator.
    """
    if not isinstance(top, dict):
        raise ConversionError(
            f"{path} is not a StyleGAN2 snapshot: its top level is a {type(top).__name__}, "
            "not a dict like {'G': ..., 'D': ..., 'G_ema': ...}"
        )
    if network not in top:
        available = ", ".join(sorted(_clean(key) for key in top)) or "nothing"
        raise ConversionError(f"no network {network!r} in {path} (it holds: {available})")
    record = top[network]
    if record is None:
        raise ConversionError(f"network {network!r} in {path} is empty (None)")
    if not isinstance(record, _PersistentRecord):
        kind = "a dict" if isinstance(record, dict) else f"a {type(record).__name__}"
        raise ConversionError(
            f"{network!r} in {path} is {kind}, not a persistent StyleGAN2 network"
        )
    if record.class_name != "Generator":
        raise ConversionError(
            f"network {network!r} in {path} is a {_clean(record.class_name)}, not a Generator"
        )
    return record


def _state_dict_of(record, key, path, where):
    """Returns one dict-valued entry of an nn.Module state, type-checked.

    Args:
        record: the module's record.
        key: e.g. '_parameters', '_buffers', '_modules'.
        path: the file being read (for messages).
        where: dotted module name (for messages).

    Returns:
        The dict (possibly an OrderedDict).
    """
    state = record.state
    value = state.get(key) if isinstance(state, dict) else None
    if not isinstance(value, dict):
        raise ConversionError(
            f"{path}: module {where} ({_clean(record.class_name)}) has no valid {key} state"
        )
    return value


def _iter_records(record, walk, where):
    """Yields (dotted name, record) for a module tree in state_dict (pre-)order.

    Args:
        record: the root record.
        walk: the ``_GraphWalk`` of the module tree.
        where: dotted name of ``record`` ('' for the root).

    Yields:
        Pairs of dotted module name and record, parents before children.
    """
    modules = _state_dict_of(record, "_modules", walk.path, where or "<root>")
    walk.pay(1 + len(modules))
    with walk.inside(record):
        yield where, record
        for name, child in modules.items():
            if child is None:  # torch skips None submodules as well
                continue
            dotted = f"{where}.{name}" if where else str(name)
            if not isinstance(child, _PersistentRecord):
                raise ConversionError(
                    f"{walk.path}: submodule {_clean(dotted)} is a {type(child).__name__}, "
                    "not a persistent StyleGAN2 module"
                )
            yield from _iter_records(child, walk, dotted)


def _check_classes(records, network, path):
    """Accepts only StyleGAN2 generator classes in the module tree.

    Args:
        records: list of (dotted name, record) from ``_iter_records``.
        network: the requested key (for messages).
        path: the file being read (for messages).
    """
    # StyleGAN3 shares most class names with StyleGAN2; SynthesisInput gives it away.
    for where, record in records:
        if record.class_name == _STYLEGAN3_CLASS:
            raise ConversionError(
                f"network {network!r} in {path} is a StyleGAN3 alias-free synthesis network "
                f"(class {_STYLEGAN3_CLASS} at {_clean(where)}), which gaussjax does not support; "
                "only StyleGAN2 generators"
            )
    for where, record in records:
        if record.class_name not in _GENERATOR_CLASSES:
            raise ConversionError(
                f"network {network!r} in {path} contains the class {_clean(record.class_name)!r} "
                f"(at {_clean(where) or 'the top'}), which is not a StyleGAN2 generator class"
            )


def _as_output(value, name, path):
    """Checks a parameter/buffer value and normalizes floating types to float32.

    Args:
        value: the unpickled value.
        name: its dotted state_dict name (for messages).
        path: the file being read (for messages).

    Returns:
        The numpy array.
    """
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise ConversionError(f"{path}: {_clean(name)} is not a numeric tensor")
    return value.astype(np.float32, copy=False) if value.dtype.kind == "f" else value


def _collect_state(records, walk):
    """Builds the dotted state_dict exactly as torch's ``Module.state_dict()`` would.

    Args:
        records: list of (dotted name, record) in pre-order.
        walk: the ``_GraphWalk`` that produced ``records``; it pays for their entries too,
            since a crafted file can share one huge parameter dict among many modules.

    Returns:
        Ordered dict of name -> numpy array: per module its parameters, then its
        persistent buffers, then its children (pre-order gives exactly that).
    """
    state_dict = {}
    for where, record in records:
        prefix = f"{where}." if where else ""
        skip = record.state.get("_non_persistent_buffers_set")
        skip = set() if skip is None else skip
        if not isinstance(skip, (set, frozenset)):
            raise ConversionError(
                f"{walk.path}: module {where or '<root>'} has a malformed buffer set"
            )
        for key in ("_parameters", "_buffers"):
            entries = _state_dict_of(record, key, walk.path, where or "<root>")
            walk.pay(len(entries))
            for name, value in entries.items():
                if value is None or (key == "_buffers" and name in skip):
                    continue
                dotted = prefix + str(name)
                state_dict[dotted] = _as_output(value, dotted, walk.path)
    return state_dict


def _to_plain(value, walk):
    """Recursively turns EasyDict/OrderedDict into plain dicts.

    Args:
        value: a constructor argument (nested dicts, lists, tuples, scalars).
        walk: the ``_GraphWalk`` of the kwargs.

    Returns:
        The same structure with every dict a plain ``dict`` (lists/tuples kept).
    """
    if not isinstance(value, (dict, list, tuple)):
        return value
    walk.pay(1 + len(value))
    with walk.inside(value):
        if isinstance(value, dict):
            return {key: _to_plain(item, walk) for key, item in value.items()}
        return type(value)(_to_plain(item, walk) for item in value)


def _init_kwargs(record, network, path):
    """Returns the Generator's constructor kwargs recorded by the persistence wrapper.

    Args:
        record: the Generator's record.
        network: the requested key (for messages).
        path: the file being read (for messages).

    Returns:
        The kwargs as plain (nested) dicts.
    """
    state = record.state
    args = state.get("_init_args", ())
    kwargs = state.get("_init_kwargs")
    if not isinstance(args, (tuple, list)) or len(args) != 0:
        raise ConversionError(
            f"network {network!r} in {path} was built with positional arguments, "
            "which are not supported"
        )
    if not isinstance(kwargs, dict):
        raise ConversionError(f"network {network!r} in {path} has no recorded constructor kwargs")
    walk = _GraphWalk(path, f"the constructor kwargs record of network {network!r}")
    return _to_plain(kwargs, walk)


def read_network_pickle(path: str, network: str = "G_ema") -> tuple[dict, dict[str, np.ndarray]]:
    """Reads one network of a stylegan2-ada-pytorch snapshot pickle, safely.

    Nothing in the file is executed and torch is not needed.

    Args:
        path: the ``.pkl`` file (str or os.PathLike).
        network: top-level key of the snapshot dict, usually 'G_ema' (or 'G').

    Returns:
        ``(init_kwargs, state_dict)``: the Generator's constructor kwargs as plain
        dicts, and its state_dict (same names, order and values as torch's
        ``state_dict()``) as numpy arrays, float32 for floating tensors.

    Raises:
        ConversionError: one-line message for every bad or unsupported input.
    """
    path = os.fspath(path)
    return snapshot_generator(load_network_pickle(path), network, path)


def snapshot_generator(top, network: str, path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """``read_network_pickle`` on an already unpickled snapshot (see ``load_network_pickle``).

    Args:
        top: the unpickled top-level object.
        network: top-level key of the snapshot dict.
        path: the file it came from (for messages).

    Returns:
        ``(init_kwargs, state_dict)`` as ``read_network_pickle`` does.
    """
    record = _select_network(top, network, path)
    walk = _GraphWalk(path, f"the module tree of network {network!r}")
    records = list(_iter_records(record, walk, ""))
    _check_classes(records, network, path)
    return _init_kwargs(record, network, path), _collect_state(records, walk)
