"""Safe reader for NVIDIA's TensorFlow StyleGAN2 network pickles (stylegan2, stylegan2-ada TF).

Such a file is a pickled tuple ``(G, D, Gs)`` of ``dnnlib.tflib.network.Network`` objects. The
state of each (what its ``__getstate__`` wrote) is a dict: ``version`` (4 for stylegan2, 5 for
stylegan2-ada), ``name``, ``static_kwargs`` (the build function's keyword arguments),
``components`` (nested networks: ``mapping``, ``synthesis``), ``build_module_src``,
``build_func_name`` and ``variables`` (a list of ``(name, numpy array)``).

The restricted unpickler of ``converters.safe_pickle`` turns every network into an inert
``TFNetworkRecord``: neither TensorFlow nor ``build_module_src`` is ever touched. This module checks
the structure and collects the variables under their full TF names (``dlatent_avg``,
``mapping/Dense0/weight``, ``synthesis/4x4/Conv/weight``, ...); ``converters.tf_keys`` maps
them to the official PyTorch layout.
"""

import dataclasses

import numpy as np

from converters.errors import ConversionError
from converters.safe_pickle import TFNetworkRecord
from converters.untrusted import GraphWalk, as_output, clean, is_int, to_plain

_VERSIONS = (4, 5)  # dnnlib.tflib.network of stylegan2 writes 4, that of stylegan2-ada TF 5
_TUPLE_NAMES = ("G", "D", "Gs")
# --network -> index into (G, D, Gs): G_ema is the PyTorch name of the averaged generator Gs.
_NETWORK_INDEX = {"G": 0, "G_ema": 2, "Gs": 2}
# Synthesis build function -> flavour (its defaults and kwargs differ, see tf_keys).
_SYNTHESIS_FLAVOURS = {"G_synthesis_stylegan2": "stylegan2", "G_synthesis": "stylegan2-ada"}
_REFUSED_BUILDERS = {
    "G_style": "StyleGAN1",
    "G_synthesis_stylegan_revised": "StyleGAN2 configs A-D (progressive growing)",
}


@dataclasses.dataclass(frozen=True)
class TFGenerator:
    """One generator of a TF pickle, read without executing anything.

    Attributes:
      name: 'G' or 'Gs'.
      flavour: 'stylegan2' (original TF release) or 'stylegan2-ada' (its TF code base).
      static_kwargs: the top-level network's build kwargs, as plain dicts/lists.
      variables: full TF name -> array (floats as float32; 0-d for scalars).
    """

    name: str
    flavour: str
    static_kwargs: dict
    variables: dict[str, np.ndarray]


def is_tf_pickle(top) -> bool:
    """True when an unpickled top level is (or holds) TF networks rather than a snapshot dict."""
    if isinstance(top, TFNetworkRecord):
        return True
    return isinstance(top, tuple) and any(isinstance(item, TFNetworkRecord) for item in top)


def _state(record, path, where) -> dict:
    """The checked state dict of one TF network (`where` names it in messages)."""
    state = getattr(record, "state", None)
    if not isinstance(state, dict):
        raise ConversionError(f"{path}: TF network {where} has no pickled state dict")
    version = state.get("version")
    if not is_int(version) or version not in _VERSIONS:
        raise ConversionError(
            f"{path}: TF network {where} has dnnlib.tflib format version {clean(version)}; only "
            "4 (stylegan2) and 5 (stylegan2-ada TF) are supported (older ones are StyleGAN1)"
        )
    kinds = {
        "static_kwargs": dict,
        "components": dict,
        "build_func_name": str,
        "variables": (list, tuple),
    }
    for key, kind in kinds.items():
        if not isinstance(state.get(key), kind):
            raise ConversionError(f"{path}: TF network {where} has no valid {key!r}")
    return state


def _builder(state, path, where, expected) -> str:
    """The network's build function name, checked against the `expected` names."""
    name = state["build_func_name"]
    if name in _REFUSED_BUILDERS:
        raise ConversionError(
            f"{path}: TF network {where} is built by {clean(name)!r} ({_REFUSED_BUILDERS[name]}), "
            "which gaussjax does not support; only StyleGAN2(-ADA) generators (G_main)"
        )
    if name not in expected:
        raise ConversionError(
            f"{path}: TF network {where} is built by {clean(name)!r}, "
            f"not by {' or '.join(sorted(expected))} of a StyleGAN2 generator"
        )
    return name


def _own_variables(state, path, where, prefix) -> dict[str, np.ndarray]:
    """`prefix + name -> array` for the network's own `(name, array)` variable list."""
    out = {}
    for item in state["variables"]:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise ConversionError(f"{path}: TF network {where} has a malformed variable entry")
        name, value = prefix + item[0], item[1]
        if name in out:
            raise ConversionError(f"{path}: TF variable {clean(name)} appears twice")
        # Session.run returns numpy scalars (not arrays) for 0-d variables such as noise_strength.
        value = np.asarray(value) if isinstance(value, np.generic) else value
        out[name] = as_output(value, name, path)
    return out


def _collect_variables(record, walk, where, prefix="") -> dict[str, np.ndarray]:
    """All variables of a network and its components, named `component/.../variable`.

    `walk` (a `GraphWalk`) refuses cyclic components and bounds the total work, which shared
    components could otherwise multiply exponentially.
    """
    state = _state(record, walk.path, where)
    walk.pay(1 + len(state["variables"]) + len(state["components"]))
    with walk.inside(record):
        out = _own_variables(state, walk.path, where, prefix)
        for name, child in state["components"].items():
            label = f"{where}/{clean(name)}"
            if not isinstance(child, TFNetworkRecord):
                raise ConversionError(f"{walk.path}: TF component {label} is not a TF network")
            nested = _collect_variables(child, walk, label, f"{prefix}{name}/")
            for key, value in nested.items():
                if key in out:
                    raise ConversionError(f"{walk.path}: TF variable {clean(key)} appears twice")
                out[key] = value
    return out


def _flavour(state, path, where) -> str:
    """'stylegan2' or 'stylegan2-ada', from the build functions of G_main and its components."""
    _builder(state, path, where, {"G_main"})
    components = state["components"]
    if sorted(map(str, components)) != ["mapping", "synthesis"]:
        names = ", ".join(sorted(clean(name) for name in components)) or "none"
        raise ConversionError(
            f"{path}: TF generator {where} has components [{names}], not [mapping, synthesis]"
        )
    mapping, synthesis = f"{where}/mapping", f"{where}/synthesis"
    _builder(_state(components["mapping"], path, mapping), path, mapping, {"G_mapping"})
    state = _state(components["synthesis"], path, synthesis)
    return _SYNTHESIS_FLAVOURS[_builder(state, path, synthesis, _SYNTHESIS_FLAVOURS)]


def _networks(top, path) -> tuple:
    """The checked (G, D, Gs) tuple."""
    if isinstance(top, TFNetworkRecord):
        raise ConversionError(
            f"{path} holds a single TF network, not the (G, D, Gs) tuple of a StyleGAN2 TF pickle"
        )
    if len(top) != 3:
        raise ConversionError(
            f"{path} holds a tuple of {len(top)} objects, not the (G, D, Gs) tuple of a "
            "StyleGAN2 TF pickle"
        )
    for name, item in zip(_TUPLE_NAMES, top):
        if not isinstance(item, TFNetworkRecord):
            raise ConversionError(
                f"{path}: {name} (in the (G, D, Gs) tuple) is a {type(item).__name__}, "
                "not a TF network"
            )
    return top


def select_generator(top, network: str, path: str) -> TFGenerator:
    """Reads generator `network` ('Gs' or its PyTorch name 'G_ema', or 'G') of a TF pickle.

    Args:
      top: the unpickled top level (see ``converters.safe_pickle.load_network_pickle``).
      network: which generator.
      path: the file it came from (for messages).

    Returns:
      The generator's flavour, static kwargs and variables (mapped by ``converters.tf_keys``).

    Raises:
      ConversionError: wrong structure, unsupported network or malformed variables.
    """
    networks = _networks(top, path)
    if network not in _NETWORK_INDEX:
        raise ConversionError(
            f"no network {clean(network)!r} in TF pickle {path}: choose Gs (= G_ema) or G "
            "(D is a discriminator)"
        )
    name = _TUPLE_NAMES[_NETWORK_INDEX[network]]
    record = networks[_NETWORK_INDEX[network]]
    state = _state(record, path, name)
    flavour = _flavour(state, path, name)
    kwargs_walk = GraphWalk(path, f"the static_kwargs dict of TF network {name}")
    kwargs = to_plain(state["static_kwargs"], kwargs_walk)
    if not all(isinstance(key, str) for key in kwargs):
        raise ConversionError(f"{path}: TF network {name} has non-string static_kwargs keys")
    components = GraphWalk(path, f"the TF network {name} with its components")
    return TFGenerator(name, flavour, kwargs, _collect_variables(record, components, name))
