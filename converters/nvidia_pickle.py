"""Reads the generator out of an NVIDIA StyleGAN2 PyTorch snapshot pickle, without torch.

``converters.safe_pickle`` unpickles the file without running anything in it; this module picks
the requested network (G_ema, G) out of the snapshot dict, checks that its module tree holds only
StyleGAN2 generator classes, and collects what the official code would: the constructor kwargs
recorded by ``torch_utils.persistence`` and the ``state_dict()`` as numpy arrays.
"""

import os

import numpy as np

from converters.errors import ConversionError
from converters.safe_pickle import PersistentRecord, load_network_pickle
from converters.untrusted import GraphWalk, as_output, clean, to_plain

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


def _select_network(top, network, path):
    """Picks the requested network out of the snapshot dict.

    Args:
        top: the unpickled top-level object.
        network: the key, e.g. 'G_ema'.
        path: the file being read (for messages).

    Returns:
        The ``PersistentRecord`` of a Generator.
    """
    if not isinstance(top, dict):
        raise ConversionError(
            f"{path} is not a StyleGAN2 snapshot: its top level is a {type(top).__name__}, "
            "not a dict like {'G': ..., 'D': ..., 'G_ema': ...}"
        )
    if network not in top:
        available = ", ".join(sorted(clean(key) for key in top)) or "nothing"
        raise ConversionError(f"no network {network!r} in {path} (it holds: {available})")
    record = top[network]
    if record is None:
        raise ConversionError(f"network {network!r} in {path} is empty (None)")
    if not isinstance(record, PersistentRecord):
        kind = "a dict" if isinstance(record, dict) else f"a {type(record).__name__}"
        raise ConversionError(
            f"{network!r} in {path} is {kind}, not a persistent StyleGAN2 network"
        )
    if record.class_name != "Generator":
        raise ConversionError(
            f"network {network!r} in {path} is a {clean(record.class_name)}, not a Generator"
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
            f"{path}: module {where} ({clean(record.class_name)}) has no valid {key} state"
        )
    return value


def _iter_records(record, walk, where):
    """Yields (dotted name, record) for a module tree in state_dict (pre-)order.

    Args:
        record: the root record.
        walk: the ``GraphWalk`` of the module tree.
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
            if not isinstance(child, PersistentRecord):
                raise ConversionError(
                    f"{walk.path}: submodule {clean(dotted)} is a {type(child).__name__}, "
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
                f"(class {_STYLEGAN3_CLASS} at {clean(where)}), which gaussjax does not support; "
                "only StyleGAN2 generators"
            )
    for where, record in records:
        if record.class_name not in _GENERATOR_CLASSES:
            raise ConversionError(
                f"network {network!r} in {path} contains the class {clean(record.class_name)!r} "
                f"(at {clean(where) or 'the top'}), which is not a StyleGAN2 generator class"
            )


def _collect_state(records, walk):
    """Builds the dotted state_dict exactly as torch's ``Module.state_dict()`` would.

    Args:
        records: list of (dotted name, record) in pre-order.
        walk: the ``GraphWalk`` that produced ``records``; it pays for their entries too,
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
                state_dict[dotted] = as_output(value, dotted, walk.path)
    return state_dict


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
    walk = GraphWalk(path, f"the constructor kwargs record of network {network!r}")
    return to_plain(kwargs, walk)


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
    walk = GraphWalk(path, f"the module tree of network {network!r}")
    records = list(_iter_records(record, walk, ""))
    _check_classes(records, network, path)
    return _init_kwargs(record, network, path), _collect_state(records, walk)
