"""Latent spaces an image can be inverted into. The engine only talks to the `LatentSpace` protocol.

A space owns the per-image variables that are optimised and says how they become what the
synthesis network receives (`SynthesisInputs`: W+ codes, optionally a start state at a layer, a
replacement of the 4x4 constant, noise maps are the engine's). It also names the W rows the
Gaussian prior scores, adds its own loss terms, picks which variables get the latent-noise ramp and
brings its own default hyperparameters.

Spaces (`SPACES`), one module per family behind the protocol of base.py:
  w, wplus     w.py: one w / one w per layer (NVIDIA's projector; Wulff & Torralba's prior).
  z, zplus     z.py: one z / one z per W+ row, each through the full mapping network inside the
               loss. The mapping's input PixelNorm keeps every row on the sphere of radius
               sqrt(z_dim) (Katsumata et al.'s hyperspherical constraint; papers note §2.2).
  f_<space>    features.py: F/Z+ and its ablations: the activation after `feature_layer` (default:
               the first, upsampling conv of the 16x16 block) is optimised jointly with the latent,
               the RGB accumulator restarts there, and mean((F - F0)^2) keeps F near its start.
  sphinx       sphinx.py: SPHInX: the parameters of a style head (-> W+, bypassing the mapping)
               and a content head (-> the 4x4 constant), plus freely optimised noise maps
               (heads.py).

This package is the registry (`make_space`, `space_defaults`, ...). Every function works on ONE
image; the engine vmaps them over a batch.
"""

import jax.numpy as jnp

from gaussjax.inversion.spaces.base import (
    LatentSpace,
    SpaceContext,
    SpaceOptions,
    SynthesisInputs,
    render,
)
from gaussjax.inversion.spaces.features import (
    FEATURE_INITIALISERS,
    WithFeatures,
    default_feature_layer,
    feature_space_defaults,
    mean_latent_features,
)
from gaussjax.inversion.spaces.sphinx import SphinxSpace
from gaussjax.inversion.spaces.w import WPlusSpace, WSpace
from gaussjax.inversion.spaces.z import ZPlusSpace, ZSpace, to_sphere

__all__ = [
    "FEATURE_INITIALISERS",
    "SPACES",
    "LatentSpace",
    "SpaceContext",
    "SpaceOptions",
    "SphinxSpace",
    "SynthesisInputs",
    "WPlusSpace",
    "WSpace",
    "WithFeatures",
    "ZPlusSpace",
    "ZSpace",
    "check_space_name",
    "constant_rate_prefixes",
    "default_feature_layer",
    "make_space",
    "mean_latent_features",
    "owns_noise",
    "render",
    "restore_space",
    "space_defaults",
    "to_sphere",
]

_BASE_SPACES = {cls.name: cls for cls in (WSpace, WPlusSpace, ZSpace, ZPlusSpace)}
_OTHER_SPACES = {cls.name: cls for cls in (SphinxSpace,)}  # no F variant
SPACES = tuple(_BASE_SPACES) + tuple(f"f_{name}" for name in _BASE_SPACES) + tuple(_OTHER_SPACES)
_SPACE_CLASSES = {**_BASE_SPACES, **_OTHER_SPACES}


def make_space(name: str, ctx: SpaceContext) -> LatentSpace:
    """The space called `name` (one of SPACES) for the generator and statistics in `ctx`."""
    check_space_name(name)
    if name.startswith("f_"):
        return WithFeatures(ctx, _BASE_SPACES[name[2:]](ctx))
    return _SPACE_CLASSES[name](ctx)


def space_defaults(name: str) -> dict:
    """The InversionConfig defaults a space brings (without building it)."""
    check_space_name(name)
    if name.startswith("f_"):
        return feature_space_defaults(_BASE_SPACES[name[2:]].defaults)
    return dict(_SPACE_CLASSES[name].defaults)


def owns_noise(name: str) -> bool:
    """Whether the space's variables include its noise maps (without building it)."""
    check_space_name(name)
    return not name.startswith("f_") and _SPACE_CLASSES[name].owns_noise


def constant_rate_prefixes(name: str) -> tuple[str, ...]:
    """The space's `constant_rate_prefixes` (without building it)."""
    check_space_name(name)
    return () if name.startswith("f_") else _SPACE_CLASSES[name].constant_rate_prefixes


def check_space_name(name: str) -> None:
    if name not in SPACES:
        raise ValueError(f"unknown latent space {name!r}; choose from {list(SPACES)}")


def restore_space(record: dict, gen_fns, gen_cfg) -> LatentSpace:
    """The space of a saved result, from its `record()`; enough to render and edit its variables."""
    record = dict(record)
    name, class_idx = record.pop("name"), record.pop("class_idx", None)
    label = None if class_idx is None else jnp.asarray(gen_cfg.class_labels(class_idx, 1)[0])
    ctx = SpaceContext(
        gen_fns, gen_cfg, jnp.zeros((gen_cfg.w_dim,)), 1.0, label, SpaceOptions(**record)
    )
    return make_space(name, ctx)
