"""TensorFlow StyleGAN2 generators -> official stylegan2-ada-pytorch config and state-dict names.

The same conversion the official PyTorch repository's `legacy.py` performs (its behaviour is the
specification; nothing is copied), as explicit tables: every static kwarg is mapped, ignored for a
stated reason or refused; every TF variable has exactly one official key, and every key one
variable. `converters.pytorch_keys` then builds the gaussjax generator from the state dict.

Two code bases wrote these pickles and their build functions differ ("flavours"):
  * 'stylegan2' (NVlabs/stylegan2, `G_synthesis_stylegan2`): no conv_clamp or fp16 kwargs,
    `mapping_fmaps` defaults to 512, labels are concatenated *before* normalisation (LabelConcat);
  * 'stylegan2-ada' (NVlabs/stylegan2-ada TF, `G_synthesis`): conv_clamp, num_fp16_res, use_noise,
    fmap_const; `mapping_fmaps` defaults to dlatent_size, labels embedded (LabelEmbed, with bias).
"""

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from converters.errors import ConversionError
from converters.tf_pickle import TFGenerator
from converters.untrusted import clean, is_int
from gaussjax.files.key_maps import check_keys, short_list
from gaussjax.networks.config import GeneratorConfig

# TF static kwarg -> (GeneratorConfig field, TF default), for kwargs that carry over unchanged.
_DIRECT = {
    "latent_size": ("z_dim", 512),
    "label_size": ("c_dim", 0),
    "dlatent_size": ("w_dim", 512),
    "resolution": ("img_resolution", 1024),
    "num_channels": ("img_channels", 3),
    "mapping_layers": ("mapping_layers", 8),
    "mapping_nonlinearity": ("mapping_activation", "lrelu"),
    "mapping_lrmul": ("mapping_lr_multiplier", 0.01),
    "architecture": ("architecture", "skip"),
}
_ADA_DIRECT = {
    "num_fp16_res": ("num_fp16_res", 0),
    "conv_clamp": ("conv_clamp", None),
    "use_noise": ("use_noise", True),
}
# Read by the functions below (channels, mapping widths, checks).
_DERIVED = {
    "fmap_base",
    "fmap_decay",
    "fmap_min",
    "fmap_max",
    "mapping_fmaps",
    "dlatent_avg_beta",
    "resample_kernel",
    "nonlinearity",
    "normalize_latents",
}
_ADA_DERIVED = {"label_fmaps", "fmap_const"}
# Change nothing for given weights in float32 inference: run-time defaults (truncation, noise
# randomisation, fused or not), training-only settings, the activation dtype, and the build
# function names (already checked through the components' build functions). legacy.py ignores
# `structure` as well.
_IGNORED = {
    "truncation_psi",
    "truncation_cutoff",
    "truncation_psi_val",
    "truncation_cutoff_val",
    "style_mixing_prob",
    "randomize_noise",
    "fused_modconv",
    "dtype",
    "mapping_func",
    "synthesis_func",
    "structure",
}
_KNOWN = {
    "stylegan2": set(_DIRECT) | _DERIVED | _IGNORED,
    "stylegan2-ada": set(_DIRECT) | set(_ADA_DIRECT) | _DERIVED | _ADA_DERIVED | _IGNORED,
}
_MAPPING_FMAPS_DEFAULT = {"stylegan2": 512, "stylegan2-ada": None}  # None: dlatent_size
# G_main's progressive-growing level (stylegan2 only); a StyleGAN2 synthesis network never reads it.
_UNMAPPED_VARIABLES = {"lod"}


# Config fields and the values they take (None is allowed where the config allows it).
_INT_FIELDS = (
    "z_dim",
    "c_dim",
    "w_dim",
    "img_resolution",
    "img_channels",
    "mapping_layers",
    "mapping_layer_features",
    "mapping_embed_features",
    "num_fp16_res",
)
_NUMBER_FIELDS = ("mapping_lr_multiplier", "mapping_w_avg_beta", "conv_clamp")
_SCALARS = (bool, int, float, str)


def _plain_kwargs(kwargs, path) -> dict:
    """The kwargs with numpy scalars as Python numbers; anything but scalars or lists of numbers
    (the taps of `resample_kernel`) is refused, so later checks compare plain values only."""
    out = {}
    for name, value in kwargs.items():
        value = value.item() if isinstance(value, np.generic) else value
        if isinstance(value, (list, tuple)):
            value = [v.item() if isinstance(v, np.generic) else v for v in value]
            valid = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        else:
            valid = value is None or isinstance(value, _SCALARS)
        if not valid:
            raise ConversionError(
                f"{path}: TF generator static_kwargs[{clean(name)!r}] is not a number, string "
                "or list of numbers"
            )
        out[name] = value
    return out


def _get(kwargs, name, default):
    """kwargs[name], or `default` when absent or None."""
    value = kwargs.get(name)
    return default if value is None else value


def _check_fields(fields, path):
    """Refuses config values of the wrong type before they reach the generator."""

    def is_number(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    bad = [k for k in _INT_FIELDS if fields.get(k) is not None and not is_int(fields[k])]
    bad += [k for k in _INT_FIELDS if is_int(fields.get(k)) and fields[k] < 0]
    bad += [k for k in _NUMBER_FIELDS if fields.get(k) is not None and not is_number(fields[k])]
    bad += [] if isinstance(fields.get("use_noise", True), bool) else ["use_noise"]
    if bad:
        raise ConversionError(f"{path}: TF generator static_kwargs give invalid {sorted(bad)}")


def _check_kwargs(kwargs, flavour, path):
    """Refuses kwargs the flavour does not know and settings the official layout cannot express."""
    unknown = sorted(set(kwargs) - _KNOWN[flavour])
    if unknown:
        raise ConversionError(
            f"{path}: unknown static_kwargs for a {flavour} TF generator: {short_list(unknown)}"
        )
    refusals = {
        "nonlinearity": _get(kwargs, "nonlinearity", "lrelu") != "lrelu",
        "normalize_latents": _get(kwargs, "normalize_latents", True) is not True,
        "resample_kernel": "resample_kernel" in kwargs and not kwargs["resample_kernel"],
    }
    for name, refused in refusals.items():
        if refused:
            raise ConversionError(
                f"{path}: unsupported TF generator setting {name}={clean(kwargs[name])!r} "
                "(the official PyTorch generator has no equivalent)"
            )
    if flavour == "stylegan2" and _get(kwargs, "label_size", 0):
        raise ConversionError(
            f"{path}: conditional generators of the original stylegan2 TF code (LabelConcat) "
            "normalise [z, embedded label] jointly, which the official layout cannot express"
        )


def _channel_fields(kwargs, resolutions, path) -> dict:
    """channel_base = 2 * fmap_base and channel_max = fmap_max, or an explicit channel table.

    TF: channels(res) = clip(int(fmap_base / 2 ** ((log2(res) - 1) * fmap_decay)), fmap_min,
    fmap_max); with fmap_decay 1 and fmap_min 1 that is min(2 * fmap_base // res, fmap_max).
    """
    base, decay = _get(kwargs, "fmap_base", 16384), _get(kwargs, "fmap_decay", 1)
    low, high = _get(kwargs, "fmap_min", 1), _get(kwargs, "fmap_max", 512)
    try:
        channels = tuple(
            int(np.clip(int(base / 2.0 ** ((math.log2(r) - 1) * decay)), low, high))
            for r in resolutions
        )
    except (TypeError, ValueError, OverflowError) as e:
        raise ConversionError(f"{path}: invalid fmap_* static_kwargs ({clean(e)})") from None
    const = _get(kwargs, "fmap_const", channels[0])
    if const != channels[0]:
        raise ConversionError(
            f"{path}: fmap_const={clean(const)} differs from the 4x4 channel count "
            f"{channels[0]}, which the official layout requires"
        )
    if isinstance(base, int) and isinstance(high, int):
        if all(min(2 * base // r, high) == c for r, c in zip(resolutions, channels)):
            return {"channel_base": 2 * base, "channel_max": high}
    return {"channel_table": channels, "channel_max": max(channels)}


def _mapping_fields(kwargs, flavour) -> dict:
    """Mapping widths (None where they equal w_dim, the official default) and the w_avg decay."""
    w_dim = _get(kwargs, "dlatent_size", 512)
    layer = _get(kwargs, "mapping_fmaps", _MAPPING_FMAPS_DEFAULT[flavour])
    # TF default 0.995; None there means "never updated", which is beta 1 (as legacy.py maps it).
    beta = 0.995 if "dlatent_avg_beta" not in kwargs else _get(kwargs, "dlatent_avg_beta", 1.0)
    fields = {
        "mapping_layer_features": None if layer == w_dim else layer,
        "mapping_w_avg_beta": beta,
    }
    if _get(kwargs, "label_size", 0):  # stylegan2-ada: the embedding defaults to latent_size
        embed = _get(kwargs, "label_fmaps", _get(kwargs, "latent_size", 512))
        fields["mapping_embed_features"] = None if embed == w_dim else embed
    return fields


def generator_config(kwargs: dict, flavour: str, path: str) -> GeneratorConfig:
    """The GeneratorConfig of a TF generator from its top-level static kwargs.

    Raises:
      ConversionError: unknown kwargs, unsupported settings or invalid values.
    """
    kwargs = _plain_kwargs(kwargs, path)
    _check_kwargs(kwargs, flavour, path)
    table = {**_DIRECT, **(_ADA_DIRECT if flavour == "stylegan2-ada" else {})}
    fields = {field: _get(kwargs, name, default) for name, (field, default) in table.items()}
    fields.update(_mapping_fields(kwargs, flavour))
    if "resample_kernel" in kwargs:
        fields["resample_filter"] = tuple(kwargs["resample_kernel"])
    _check_fields(fields, path)
    try:
        cfg = GeneratorConfig(**fields)
    except ValueError as e:
        raise ConversionError(f"{path}: invalid TF generator static_kwargs: {clean(e)}") from None
    return dataclasses.replace(cfg, **_channel_fields(kwargs, cfg.block_resolutions, path))


class _Layout(NamedTuple):
    """TF array -> official array: expected rank, leading singleton dims, transform."""

    ndim: int
    lead: int
    fn: Callable[[np.ndarray], np.ndarray]


_VECTOR = _Layout(1, 0, np.asarray)
_SCALAR = _Layout(0, 0, np.asarray)  # noise_strength
_DENSE = _Layout(2, 0, np.transpose)  # [in, out] -> [out, in]
_CONV = _Layout(4, 0, lambda a: a.transpose(3, 2, 0, 1))  # [kh, kw, in, out] -> [out, in, kh, kw]
# TF's upsample_conv_2d flips the kernel before its transposed convolution, so it correlates the
# upsampled image with the stored kernel; the official up=2 layers apply a true convolution, hence
# the flip in kh, kw (as legacy.py does; a no-op for the 1x1 resnet skip).
_CONV_UP = _Layout(4, 0, lambda a: a[::-1, ::-1].transpose(3, 2, 0, 1))
# TF adds the style bias's 1 at run time (`apply_bias_act(...) + 1`); the official bias holds it.
_MOD_BIAS = _Layout(1, 0, lambda a: a + 1)
_CONST = _Layout(4, 1, lambda a: a[0])  # [1, C, 4, 4] -> [C, 4, 4]
_NOISE = _Layout(4, 2, lambda a: a[0, 0])  # [1, 1, r, r] -> [r, r]


def _layer_keys(dst, src, noise=None, up=False) -> dict[str, tuple[str, _Layout]]:
    """One modulated layer: official key -> (TF variable, layout); noise index None = no noise."""
    out = {
        f"{dst}.weight": (f"{src}/weight", _CONV_UP if up else _CONV),
        f"{dst}.bias": (f"{src}/bias", _VECTOR),
        f"{dst}.affine.weight": (f"{src}/mod_weight", _DENSE),
        f"{dst}.affine.bias": (f"{src}/mod_bias", _MOD_BIAS),
    }
    if noise is not None:
        out[f"{dst}.noise_strength"] = (f"{src}/noise_strength", _SCALAR)
        out[f"{dst}.noise_const"] = (f"synthesis/noise{noise}", _NOISE)
    return out


def _block_keys(cfg, res) -> dict[str, tuple[str, _Layout]]:
    """Synthesis block `res`; TF numbers noise inputs by layer: b4.conv1 0, b{r}.conv0/1 2log2(r)-5/-4."""
    dst, src, log2 = f"synthesis.b{res}", f"synthesis/{res}x{res}", int(math.log2(res))
    noise = (lambda i: i) if cfg.use_noise else (lambda i: None)
    if res == 4:
        out = {f"{dst}.const": (f"{src}/Const/const", _CONST)}
        out.update(_layer_keys(f"{dst}.conv1", f"{src}/Conv", noise(0)))
    else:
        out = _layer_keys(f"{dst}.conv0", f"{src}/Conv0_up", noise(2 * log2 - 5), up=True)
        out.update(_layer_keys(f"{dst}.conv1", f"{src}/Conv1", noise(2 * log2 - 4)))
    if cfg.architecture == "skip" or res == cfg.img_resolution:
        out.update(_layer_keys(f"{dst}.torgb", f"{src}/ToRGB"))
    if cfg.architecture == "resnet" and res > 4:
        out[f"{dst}.skip.weight"] = (f"{src}/Skip/weight", _CONV_UP)
    return out


def key_map(cfg: GeneratorConfig) -> dict[str, tuple[str, _Layout]]:
    """Official state-dict key -> (TF variable name, layout) for every parameter of `cfg`.

    The FIR `resample_filter` buffers have no TF variable (TF passes the taps as a kwarg).
    """
    out = {"mapping.w_avg": ("dlatent_avg", _VECTOR)}
    if cfg.c_dim > 0:
        out["mapping.embed.weight"] = ("mapping/LabelEmbed/weight", _DENSE)
        out["mapping.embed.bias"] = ("mapping/LabelEmbed/bias", _VECTOR)
    for i in range(cfg.mapping_layers):
        out[f"mapping.fc{i}.weight"] = (f"mapping/Dense{i}/weight", _DENSE)
        out[f"mapping.fc{i}.bias"] = (f"mapping/Dense{i}/bias", _VECTOR)
    for res in cfg.block_resolutions:
        out.update(_block_keys(cfg, res))
    return out


def _convert(value, name, layout, path) -> np.ndarray:
    """Applies `layout` to TF variable `name` after checking its rank."""
    lead = value.shape[: layout.lead]
    if value.ndim != layout.ndim or any(n != 1 for n in lead):
        raise ConversionError(
            f"{path}: TF variable {name} has shape {list(value.shape)}, expected "
            f"{layout.ndim} dims" + (f" starting with {[1] * layout.lead}" if layout.lead else "")
        )
    # np.array, not ascontiguousarray: that one turns 0-d arrays (noise strengths) into 1-d.
    return np.array(layout.fn(value), dtype=np.float32, order="C")


def official_state_dict(generator: TFGenerator, cfg: GeneratorConfig, path: str) -> dict:
    """The official `G.state_dict()` (numpy, without FIR buffers) of a TF generator.

    Raises:
      ConversionError: TF variables left over or missing (naming them), or of the wrong rank.
    """
    keys = key_map(cfg)
    check_keys(
        generator.variables,
        (name for name, _ in keys.values()),
        _UNMAPPED_VARIABLES,
        what=f"{path}: the TF variables of {generator.name} do not match the generator its "
        "static_kwargs describe",
        error=ConversionError,
    )
    return {
        key: _convert(generator.variables[name], name, layout, path)
        for key, (name, layout) in keys.items()
    }


def convert_tf_generator(generator: TFGenerator, path: str) -> tuple[GeneratorConfig, dict]:
    """(config, official state dict) of a generator read by `converters.tf_pickle`."""
    cfg = generator_config(generator.static_kwargs, generator.flavour, path)
    return cfg, official_state_dict(generator, cfg, path)
