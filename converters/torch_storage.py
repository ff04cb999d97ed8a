"""Torch-free decoding of the torch.save stream of one tensor storage (legacy and zip formats).

A snapshot pickle keeps each tensor's storage as the bytes of a nested ``torch.save`` call
(``torch.storage._load_from_bytes``). A second restricted unpickler reads them: only the storage
classes of ``KNOWN_STORAGE_GLOBALS`` resolve, to inert markers, and the raw bytes become numpy
arrays, with every size, offset and stride bounds-checked.
"""

import io
import math
import pickle
import struct
import zipfile

import numpy as np

from converters.errors import ConversionError
from converters.untrusted import clean, is_int, refuse_global

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_MAX_INNER_PICKLE = 16 << 20  # a storage's data.pkl is ~100 bytes; caps zip bombs

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

# (module, name) a storage stream may reference -> the storage class name it stands for.
_STORAGE_GLOBALS = {("torch", name): name for name in _STORAGE_DTYPES}
_STORAGE_GLOBALS["torch.storage", "UntypedStorage"] = "UntypedStorage"

KNOWN_STORAGE_GLOBALS = frozenset(f"{module}.{name}" for module, name in _STORAGE_GLOBALS)
"""Globals allowed inside the torch.save stream of a single tensor storage; anything else is
refused (``_StorageUnpickler.find_class`` consults the same table)."""


class Storage:
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

    Only the storage classes of ``KNOWN_STORAGE_GLOBALS`` resolve (to markers); persistent ids become
    ``_StorageRef`` objects collected in ``refs`` so the data can be attached later.
    """

    def __init__(self, file, path):
        super().__init__(file)
        self._path = path
        self.refs = {}

    def find_class(self, module, name):
        type_name = _STORAGE_GLOBALS.get((module, name))
        if type_name is None:
            raise refuse_global(self._path, module, name)
        return _StorageType(type_name)

    def persistent_load(self, pid):
        # Legacy ids have 6 fields (last: view metadata), zip ids have 5.
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise ConversionError(f"{self._path}: unexpected persistent id in a tensor storage")
        _, stype, key, _location, numel = pid[:5]
        valid = isinstance(stype, _StorageType) and isinstance(key, str) and is_int(numel)
        if not valid or numel < 0:
            raise ConversionError(f"{self._path}: malformed storage record in a tensor storage")
        ref = _StorageRef(stype.name, key, numel, pid[5] if len(pid) == 6 else None)
        known = self.refs.setdefault(key, ref)
        if known.type_name != ref.type_name:
            raise ConversionError(
                f"{self._path}: storage {clean(key)!r} is declared with two types"
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
        if not (is_int(offset) and is_int(size) and 0 <= offset and offset + size <= array.size):
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
        raise ConversionError(f"{path}: a tensor storage archive lacks {clean(name)!r}") from None
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


def parse_storage_bytes(blob, path="<storage>"):
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
            f"{path}: a tensor storage is corrupt ({type(exc).__name__}: {clean(exc)})"
        ) from None


def strided_copy(flat, offset, size, stride, path):
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
        is_int(offset)
        and offset >= 0
        and isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride)
        and all(is_int(v) and v >= 0 for v in size + stride)
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
