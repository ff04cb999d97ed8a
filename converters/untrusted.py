"""Bounds and one-line messages for reading untrusted, unpickled object graphs.

Shared by the safe unpicklers (``converters.safe_pickle``, ``converters.torch_storage``) and the
network readers (``converters.nvidia_pickle``, ``converters.tf_pickle``): every value from a file
is printed through ``clean`` and every walk over its graph is bounded by a ``GraphWalk``.
"""

import contextlib

import numpy as np

from converters.errors import ConversionError

_MAX_DEPTH = 64  # real generators are 4 levels deep; bounds recursion on crafted files
# A 1024px generator walks ~350 entries (modules, tensors, kwargs); a crafted DAG walks 2**depth.
_MAX_WALK_ENTRIES = 10_000

_SCALARS = (str, bytes, int, float, np.generic, type(None))


def _prints_in_linear_time(value):
    """True for scalars, exceptions and flat lists/tuples of scalars (values in messages)."""
    if isinstance(value, (list, tuple)):
        return all(isinstance(item, _SCALARS) for item in value)
    return isinstance(value, (*_SCALARS, BaseException))


def clean(text, limit=200):
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


def refuse_global(path, module, name):
    """Builds the error for a global that is not on a whitelist.

    Args:
        path: the file being read.
        module: module part of the global.
        name: attribute part of the global.

    Returns:
        A ConversionError to raise.
    """
    return ConversionError(
        f"refusing to load {path}: it references the global '{clean(module)}.{clean(name)}', "
        "which is not on the whitelist of a StyleGAN2 network pickle"
    )


class GraphWalk:
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


def is_int(value):
    """Returns True for a real integer (``bool`` is excluded on purpose)."""
    return isinstance(value, int) and not isinstance(value, bool)


def to_plain(value, walk):
    """Recursively turns EasyDict/OrderedDict into plain dicts.

    Args:
        value: a constructor argument (nested dicts, lists, tuples, scalars).
        walk: the ``GraphWalk`` of the kwargs.

    Returns:
        The same structure with every dict a plain ``dict`` (lists/tuples kept).
    """
    if not isinstance(value, (dict, list, tuple)):
        return value
    walk.pay(1 + len(value))
    with walk.inside(value):
        if isinstance(value, dict):
            return {key: to_plain(item, walk) for key, item in value.items()}
        return type(value)(to_plain(item, walk) for item in value)


def as_output(value, name, path):
    """Checks a parameter/buffer value and normalizes floating types to float32.

    Args:
        value: the unpickled value.
        name: its dotted state_dict name (for messages).
        path: the file being read (for messages).

    Returns:
        The numpy array.
    """
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise ConversionError(f"{path}: {clean(name)} is not a numeric tensor")
    return value.astype(np.float32, copy=False) if value.dtype.kind == "f" else value
