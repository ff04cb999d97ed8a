"""Reads the weights of `networks.lpips.LPIPS` from torchvision/lpips files or NVIDIA's vgg16.pt.

Two sources are supported, each through an explicit key map (every source key is consumed or on a
documented ignore list, every model parameter is filled exactly once, anything else raises
`LPIPSWeightsError` naming the keys):

* torchvision `vgg16().state_dict()` (`features.{0,2,5,...,28}.{weight,bias}`, conv kernels OIHW;
  the `classifier.*` head of a full state dict is ignored because LPIPS only reads `features`)
  plus the `lpips` package's lin weights file `lpips/weights/v0.1/vgg.pth`
  (`lin{0..4}.model.1.weight`, each [1, C, 1, 1]). Files may be `.pth` (torch.load with
  weights_only=True) or `.npz` with the same key names.
* NVIDIA's `vgg16.pt` (stylegan2-ada-pytorch metrics, TorchScript). That file cannot be fetched
  here, so its parameter names are ASSUMED from public code that loads it (genforce's
  `perceptual_model.py` maps `torch.jit.load(...).state_dict()` keys): `layers.conv{1..13}.
  {weight,bias}` (OIHW, RGB input channels), `layers.fc{1,2,3}.{weight,bias}` (classifier head,
  ignored here) and `lpips{0..4}` (the lin weights; [C, 1, 1] there, any shape with C elements
  is accepted). If the real file differs, the LPIPSWeightsError lists the unused and missing
  keys.

torch is imported lazily, only by the functions that read `.pth`/`.pt` files.
"""

from collections.abc import Callable, Mapping
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from gaussjax.files.key_maps import check_keys, short_list
from gaussjax.files.safe_io import first_line, read_npz, read_torch, require_file
from gaussjax.networks.lpips import LPIPS, LPIPS_CHANNELS

# Indices of the 13 conv layers inside torchvision's vgg16 `features` Sequential.
TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
# The fully-connected head of a full torchvision vgg16 state dict: LPIPS never runs it.
TORCHVISION_IGNORED = tuple(f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias"))
# The fully-connected head inside NVIDIA's vgg16.pt (assumed names, see the module docstring).
NVIDIA_IGNORED = tuple(f"layers.fc{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias"))

KeyMap = dict[str, tuple[tuple, Callable[[np.ndarray], np.ndarray]]]


class LPIPSWeightsError(ValueError):
    """An LPIPS weight file that is missing, unreadable or not the expected layout (one line)."""


def _identity(a: np.ndarray) -> np.ndarray:
    return a


def _conv(a: np.ndarray) -> np.ndarray:
    """[O, I, kh, kw] (torch) -> [kh, kw, I, O] (flax HWIO)."""
    return np.transpose(a, (2, 3, 1, 0))


def _lin(a: np.ndarray) -> np.ndarray:
    """A 1x1 conv weight with one output channel ([1, C, 1, 1], [C, 1, 1], ...) -> [C]."""
    return a.reshape(-1) if sum(d > 1 for d in a.shape) <= 1 else a


def _conv_entries(src_names: list[str]) -> KeyMap:
    out = {}
    for i, src in enumerate(src_names):
        out[f"{src}.weight"] = (("vgg", "convs", i, "kernel"), _conv)
        out[f"{src}.bias"] = (("vgg", "convs", i, "bias"), _identity)
    return out


def torchvision_key_map() -> KeyMap:
    """torchvision vgg16 `features.*` key -> (LPIPS state path, transform)."""
    return _conv_entries([f"features.{i}" for i in TORCHVISION_CONV_INDICES])


def lin_key_map() -> KeyMap:
    """lpips package lin-weights key -> (LPIPS state path, transform)."""
    return {f"lin{k}.model.1.weight": (("lin", k), _lin) for k in range(len(LPIPS_CHANNELS))}


def nvidia_key_map() -> KeyMap:
    """Assumed NVIDIA vgg16.pt state-dict key -> (LPIPS state path, transform)."""
    out = _conv_entries([f"layers.conv{i + 1}" for i in range(len(TORCHVISION_CONV_INDICES))])
    out.update({f"lpips{k}": (("lin", k), _lin) for k in range(len(LPIPS_CHANNELS))})
    return out


def _abstract_flat_state() -> dict[tuple, nnx.Variable]:
    """Parameter paths and shapes of LPIPS, without allocating or initialising weights."""
    _, state = nnx.split(nnx.eval_shape(lambda: LPIPS(rngs=nnx.Rngs(0))))
    return dict(nnx.to_flat_state(state))


def _convert(state: Mapping, key_map: KeyMap, ignored: tuple[str, ...], source: str) -> nnx.State:
    """Fills every LPIPS parameter from `state` through `key_map`; see the module docstring."""
    check_keys(state, key_map, ignored, what=f"{source} keys do not match", error=LPIPSWeightsError)
    flat = _abstract_flat_state()
    filled = {}
    for key, (path, transform) in key_map.items():
        value = np.ascontiguousarray(transform(np.asarray(state[key], np.float32)))
        if value.shape != flat[path].shape:
            raise LPIPSWeightsError(
                f"{source} {key}: shape {value.shape} after layout change does "
                f"not fit {'/'.join(map(str, path))} of shape {flat[path].shape}"
            )
        if path[0] == "lin" and value.min() < 0:
            # features() takes sqrt(lin); the lpips package clamps these to >= 0 when training.
            raise LPIPSWeightsError(
                f"{source} {key}: LPIPS lin weights must be >= 0, min is {value.min()}"
            )
        filled[path] = flat[path].replace(jnp.asarray(value))
    unfilled = sorted("/".join(map(str, p)) for p in set(flat) - set(filled))
    if unfilled:
        raise LPIPSWeightsError(f"LPIPS parameters left unfilled: {short_list(unfilled)}")
    return nnx.from_flat_state(filled)


def lpips_params_from_torch(
    vgg_state: Mapping[str, np.ndarray], lin_state: Mapping[str, np.ndarray]
) -> nnx.State:
    """LPIPS parameters from a torchvision vgg16 state dict and lpips lin weights.

    Args:
      vgg_state: `torchvision.models.vgg16().state_dict()` as arrays; `features.{i}.weight`
        [O, I, 3, 3] and `.bias` [O] for the 13 conv layers; `classifier.*` is ignored.
      lin_state: the lpips package's `weights/v0.1/vgg.pth`: `lin{k}.model.1.weight` [1, C_k, 1, 1].

    Returns:
      An `nnx.State` of float32 parameters; `lpips_from_params` turns it into a model.

    Raises:
      LPIPSWeightsError: unexpected or missing keys, a shape mismatch or negative lin weights.
    """
    vgg_map, lin_map = torchvision_key_map(), lin_key_map()
    for state, key_map, ignored, source in (
        (vgg_state, vgg_map, TORCHVISION_IGNORED, "torchvision vgg16 state dict"),
        (lin_state, lin_map, (), "LPIPS lin weights"),
    ):
        check_keys(
            state, key_map, ignored, what=f"{source} keys do not match", error=LPIPSWeightsError
        )
    merged = {**vgg_state, **lin_state}
    return _convert(merged, {**vgg_map, **lin_map}, TORCHVISION_IGNORED, "torchvision/lpips")


def lpips_params_from_nvidia_state(state: Mapping[str, np.ndarray]) -> nnx.State:
    """LPIPS parameters from the (assumed) state-dict names of NVIDIA's vgg16.pt.

    Args:
      state: `torch.jit.load('vgg16.pt').state_dict()` as arrays: `layers.conv{1..13}.weight`
        [O, I, 3, 3] / `.bias` [O], `lpips{0..4}` with C_k elements; `layers.fc*` is ignored.

    Returns:
      An `nnx.State` of float32 parameters.

    Raises:
      LPIPSWeightsError: the names or shapes differ from the assumed layout.
    """
    return _convert(state, nvidia_key_map(), NVIDIA_IGNORED, "NVIDIA vgg16.pt (assumed naming)")


def lpips_from_params(params: nnx.State) -> LPIPS:
    """Builds an LPIPS model around converted parameters (no random init of the backbone)."""
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: LPIPS(rngs=nnx.Rngs(0))))
    return nnx.merge(graphdef, params)


def read_state_dict(path) -> dict[str, np.ndarray]:
    """Reads a flat name -> array state dict from `.npz` or a torch `.pth` file.

    Raises:
      LPIPSWeightsError: one line, for a missing or unreadable file or one that is not a flat state dict.
    """
    path = Path(path)  # read_npz / read_torch check the file
    state = (
        read_npz(path, LPIPSWeightsError)
        if path.suffix == ".npz"
        else read_torch(path, LPIPSWeightsError)
    )
    if not isinstance(state, Mapping) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise LPIPSWeightsError(
            f"{path}: expected a state dict of tensors, got {type(state).__name__}"
        )
    return {str(k): np.asarray(v, np.float32) for k, v in state.items()}


def lpips_params_from_nvidia_vgg16(path) -> nnx.State:
    """LPIPS parameters from NVIDIA's TorchScript `vgg16.pt` (see the module docstring for names).

    Raises:
      LPIPSWeightsError: missing file, not TorchScript, or names/shapes differ from the assumption.
    """
    path = require_file(path, LPIPSWeightsError)
    import torch  # Lazy: only this loader needs TorchScript.

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # torch raises RuntimeError/ValueError variants for non-archives.
        raise LPIPSWeightsError(
            f"{path}: not NVIDIA's TorchScript vgg16.pt ({first_line(e)}); for a torchvision "
            "vgg16 state dict, also give lpips_lin=vgg.pth (the LPIPS v0.1 lin weights)"
        ) from e
    state = {k: v.detach().to(torch.float32).numpy() for k, v in module.state_dict().items()}
    return lpips_params_from_nvidia_state(state)


def load_lpips(vgg_path, lin_path=None) -> LPIPS:
    """Loads an LPIPS-VGG16 model from weight files.

    Args:
      vgg_path: torchvision vgg16 state dict (`.pth` or `.npz`) when `lin_path` is given, else
        NVIDIA's TorchScript `vgg16.pt`.
      lin_path: the lpips package's lin weights (`lpips/weights/v0.1/vgg.pth` or a `.npz`).

    Returns:
      The LPIPS model with float32 parameters.

    Raises:
      LPIPSWeightsError: one line, for missing/unreadable files or mismatching contents.
    """
    if lin_path is None:
        return lpips_from_params(lpips_params_from_nvidia_vgg16(vgg_path))
    params = lpips_params_from_torch(read_state_dict(vgg_path), read_state_dict(lin_path))
    return lpips_from_params(params)
