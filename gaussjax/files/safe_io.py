"""File helpers every other module builds on: checked reads and atomic writes (a leaf module).

Readers raise one-line errors that name the file (a `ValueError` subclass of the caller's choice),
so command-line tools can print them as they are. Writers never leave a half-written file behind.
"""

import json
import os
import pathlib
import tempfile

import numpy as np


class FileReadError(ValueError):
    """A file that is missing, empty or unreadable; the message is one line and names the file."""


def require_file(path, error: type[ValueError] = FileReadError) -> pathlib.Path:
    """The path of an existing, non-empty regular file, or `error` saying what is wrong."""
    path = pathlib.Path(path)
    if not path.exists():
        raise error(f"{path}: no such file")
    if path.is_dir():
        raise error(f"{path}: is a directory, not a file")
    if not path.is_file():
        raise error(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise error(f"{path}: the file is empty (0 bytes)")
    return path


def read_npz(path, error: type[ValueError] = FileReadError) -> dict[str, np.ndarray]:
    """All arrays of an .npz archive; pickled objects are refused.

    Raises:
      error: missing/empty file, a plain .npy or any other non-npz content, a corrupt archive.
    """
    path = require_file(path, error)
    try:
        # Opened here, not by np.load, which leaks the handle when the zip directory is corrupt.
        with path.open("rb") as f:
            problem = _not_a_zip(f.read(len(_ZIP_MAGIC)))
            if problem is None:
                f.seek(0)
                with np.load(f, allow_pickle=False) as data:
                    return {k: data[k] for k in data.files}
    except ValueError as e:
        # numpy's message advises loading with allow_pickle, which would run the file's code.
        problem = "it holds pickled Python objects, which are refused"
        if "pickle" not in str(e):
            problem = first_line(e)
        raise error(f"{path}: cannot read as .npz ({problem})") from e
    except Exception as e:  # zipfile, OSError, EOFError
        raise error(f"{path}: cannot read as .npz ({first_line(e)})") from e
    raise error(f"{path}: cannot read as .npz ({problem})")


_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"  # np.savez of no arrays
_NPY_MAGIC = b"\x93NUMPY"


def _not_a_zip(head: bytes) -> str | None:
    """What is wrong with a file starting with `head` as an .npz (a zip archive), or None."""
    if head.startswith(_NPY_MAGIC[: len(head)]):
        return "a single .npy array, not an .npz archive"
    if head not in (_ZIP_MAGIC, _EMPTY_ZIP_MAGIC):
        return "not an .npz archive: the file does not start like a zip file"
    return None


def read_json(path, error: type[ValueError] = FileReadError) -> dict:
    """The JSON object in `path`.

    Raises:
      error: missing/empty file, invalid JSON (with its line and column) or not an object.
    """
    path = require_file(path, error)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise error(f"{path}: corrupt JSON ({e.msg} at line {e.lineno}, column {e.colno})") from e
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: cannot read ({first_line(e)})") from e
    if not isinstance(doc, dict):
        raise error(f"{path}: expected a JSON object, found {type(doc).__name__}")
    return doc


def read_torch(path, error: type[ValueError] = FileReadError):
    """A torch.save file loaded with weights_only=True (no code runs), tensors turned into numpy
    arrays (floating ones as float32).

    Raises:
      error: missing/empty file, torch not installed, or a file torch cannot read safely.
    """
    path = require_file(path, error)
    try:
        import torch  # Optional dependency: only needed for .pt/.pth files.
    except ImportError as e:
        raise error(
            f"{path}: reading .pt/.pth files needs torch (pip install 'gaussjax[torch]')"
        ) from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or unsafe files.
        raise error(f"{path}: cannot read as a PyTorch file ({first_line(e)})") from e
    return _tensors_to_numpy(obj)


def _tensors_to_numpy(obj):
    if isinstance(obj, dict):
        return {k: _tensors_to_numpy(v) for k, v in obj.items()}
    if hasattr(obj, "detach"):
        return obj.detach().float().numpy() if obj.is_floating_point() else obj.detach().numpy()
    return obj


def first_line(e: BaseException, limit: int = 160) -> str:
    """'TypeName: first sentence of the message' (library errors can span many lines and
    sentences); a sentence over `limit` characters is cut at a word and ends in '...'."""
    lines = str(e).strip().splitlines()
    sentence = lines[0].split(". ")[0].rstrip(".") if lines else ""
    if len(sentence) > limit:
        sentence = sentence[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(e).__name__}: {sentence}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path, data: bytes) -> None:
    """Writes a file via a temporary sibling and rename, so a reader never sees half of it.

    The file gets the usual permissions (0666 minus the umask), not mkstemp's private 0600.
    """
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        pathlib.Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise write_error(path, e) from e
        raise


class WriteError(OSError):
    """A failed write (a full disk, a read-only folder). Its message is one line naming the file,
    "no space left on device while writing out/a.npz", without Python's "[Errno N]" prefix, so
    every launcher's `error: {e}` reads right; `errno` is kept."""

    def __str__(self) -> str:
        return self.strerror


def write_error(path, error: OSError) -> WriteError:
    """`error`, raised while writing `path`, as a WriteError."""
    reason = error.strerror or str(error)
    return WriteError(error.errno, f"{reason[:1].lower()}{reason[1:]} while writing {path}")
