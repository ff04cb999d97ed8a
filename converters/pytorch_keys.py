"""Official stylegan2-ada-pytorch state-dict names -> gaussjax Generator parameters.

The key map is explicit: every official key has exactly one destination (or is a fixed buffer that
is checked against its expected value), every destination is filled once, and anything else is an
error naming the keys.
"""

from collections.abc import Callable

import numpy as np
from flax import nnx

from converters.errors import ConversionError
from gaussjax.files import checkpoints
from gaussjax.files.key_maps import check_keys, short_list
from gaussjax.networks import ops
from gaussjax.networks.config import GeneratorConfig
from gaussjax.networks.stylegan2 import Generator


def _transpose(*axes):
    return lambda a: np.transpose(a, axes)


_IDENTITY = np.asarray
_DENSE = _transpose(1, 0)  # [out, in] -> [in, out]
_CONV = _transpose(2, 3, 1, 0)  # [O, I, kh, kw] -> [kh, kw, I, O]


def _conv_true_to_correlation(a):
    """Official up=2 layers apply a true convolution: flip kh, kw for our cross-correlation."""
    return _CONV(a[:, :, ::-1, ::-1])


def _layer_entries(src, dst, *, up, use_noise):
    """Keys of one official SynthesisLayer -> (destination path, transform)."""
    out = {
        f"{src}.weight": (dst + ("weight",), _conv_true_to_correlation if up else _CONV),
        f"{src}.bias": (dst + ("bias",), _IDENTITY),
        f"{src}.affine.weight": (dst + ("affine", "weight"), _DENSE),
        f"{src}.affine.bias": (dst + ("affine", "bias"), _IDENTITY),
    }
    if use_noise:
        out[f"{src}.noise_strength"] = (dst + ("noise_strength",), _IDENTITY)
        out[f"{src}.noise_const"] = (dst + ("noise_const",), _IDENTITY)
    return out


def key_map(cfg: GeneratorConfig) -> dict[str, tuple[tuple, Callable]]:
    """Official key -> (gaussjax state path, transform) for every parameter and buffer of `cfg`."""
    out = {"mapping.w_avg": (("mapping", "w_avg"), _IDENTITY)}
    if cfg.c_dim > 0:
        out["mapping.embed.weight"] = (("mapping", "embed", "weight"), _DENSE)
        out["mapping.embed.bias"] = (("mapping", "embed", "bias"), _IDENTITY)
    for i in range(cfg.mapping_layers):
        out[f"mapping.fc{i}.weight"] = (("mapping", "layers", i, "weight"), _DENSE)
        out[f"mapping.fc{i}.bias"] = (("mapping", "layers", i, "bias"), _IDENTITY)
    for b, res in enumerate(cfg.block_resolutions):
        src, dst = f"synthesis.b{res}", ("synthesis", "blocks", b)
        if res == 4:
            out[f"{src}.const"] = (dst + ("const",), _transpose(1, 2, 0))
        else:
            out.update(
                _layer_entries(f"{src}.conv0", dst + ("conv0",), up=True, use_noise=cfg.use_noise)
            )
        out.update(
            _layer_entries(f"{src}.conv1", dst + ("conv1",), up=False, use_noise=cfg.use_noise)
        )
        if cfg.architecture == "skip" or res == cfg.img_resolution:
            for name, fn in (
                ("weight", _CONV),
                ("bias", _IDENTITY),
                ("affine.weight", _DENSE),
                ("affine.bias", _IDENTITY),
            ):
                out[f"{src}.torgb.{name}"] = (dst + ("torgb",) + tuple(name.split(".")), fn)
        if cfg.architecture == "resnet" and res > 4:
            out[f"{src}.skip.weight"] = (dst + ("skip",), _CONV)
    return out


def fixed_buffers(cfg: GeneratorConfig) -> dict[str, np.ndarray]:
    """Official buffers whose value follows from the config (FIR filters); checked, not stored."""
    f = ops.setup_filter(cfg.resample_filter)
    out = {}
    for res in cfg.block_resolutions:
        src = f"synthesis.b{res}"
        names = [src, f"{src}.conv1"] + ([] if res == 4 else [f"{src}.conv0"])
        if cfg.architecture == "resnet" and res > 4:
            names.append(f"{src}.skip")
        out.update({f"{n}.resample_filter": f for n in names})
    return out


def generator_from_state_dict(state_dict: dict[str, np.ndarray], cfg: GeneratorConfig) -> Generator:
    """Builds a gaussjax Generator from an official `G.state_dict()` (numpy arrays).

    Raises:
      ConversionError: unused source keys, unfilled parameters, shape or buffer-value mismatches.
    """
    mapping = key_map(cfg)
    buffers = fixed_buffers(cfg)
    check_keys(
        state_dict,
        mapping,
        buffers,
        what="state dict does not match the generator config",
        error=ConversionError,
    )
    for key, expected in buffers.items():
        if key in state_dict and not np.allclose(state_dict[key], expected, atol=1e-6):
            raise ConversionError(
                f"{key} differs from the FIR filter {list(cfg.resample_filter)} "
                f"of the config; set resample_filter to match"
            )
    graphdef, state = nnx.split(checkpoints.abstract_generator(cfg))
    flat = dict(nnx.to_flat_state(state))
    filled = {}
    for key, (path, transform) in mapping.items():
        if path not in flat:
            raise ConversionError(
                f"internal key map error: {key} -> {path} is not a generator parameter"
            )
        value = np.array(transform(np.asarray(state_dict[key], np.float32)), order="C")
        if value.shape != flat[path].shape:
            raise ConversionError(
                f"{key}: shape {value.shape} (after layout change) does not fit "
                f"{'/'.join(map(str, path))} of shape {flat[path].shape}"
            )
        filled[path] = flat[path].replace(value)
    unfilled = sorted("/".join(map(str, p)) for p in set(flat) - set(filled))
    if unfilled:
        raise ConversionError(f"generator parameters left unfilled: {short_list(unfilled)}")
    return nnx.merge(graphdef, nnx.from_flat_state(filled))


def infer_config(
    state_dict: dict[str, np.ndarray],
    *,
    conv_clamp=None,
    mapping_lr_multiplier=0.01,
    resample_filter=(1, 3, 3, 1),
) -> GeneratorConfig:
    """Reads a GeneratorConfig off the shapes of an official state dict.

    Shapes cannot tell `conv_clamp`, the mapping learning-rate multiplier (its storage convention
    divides by it) or the FIR taps, so those come from the arguments.
    """
    try:
        return _infer_config(state_dict, conv_clamp, mapping_lr_multiplier, tuple(resample_filter))
    except (KeyError, IndexError, ValueError) as e:
        raise ConversionError(
            f"cannot infer a StyleGAN2 generator config from this state dict: {e}"
        ) from e


def _infer_config(sd, conv_clamp, lr_multiplier, resample_filter):
    resolutions = sorted(
        int(k.split(".")[1][1:])
        for k in sd
        if k.startswith("synthesis.b") and k.endswith(".conv1.weight")
    )
    if not resolutions:
        raise KeyError("no synthesis.b*.conv1.weight keys")
    top = resolutions[-1]
    mapping_layers = sum(1 for k in sd if k.startswith("mapping.fc") and k.endswith(".weight"))
    c_dim, embed = (
        sd["mapping.embed.weight"].shape[::-1] if "mapping.embed.weight" in sd else (0, 0)
    )
    channels = tuple(int(sd[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in resolutions)
    if "synthesis.b4.torgb.weight" in sd or top == 4:
        architecture = "skip"
    elif any(k.endswith(".skip.weight") for k in sd):
        architecture = "resnet"
    else:
        architecture = "orig"
    kwargs = dict(
        z_dim=int(sd["mapping.fc0.weight"].shape[1]) - embed,
        c_dim=int(c_dim),
        w_dim=int(sd["mapping.w_avg"].shape[0]),
        img_resolution=top,
        img_channels=int(sd[f"synthesis.b{top}.torgb.weight"].shape[0]),
        mapping_layers=mapping_layers,
        mapping_lr_multiplier=lr_multiplier,
        conv_clamp=conv_clamp,
        architecture=architecture,
        resample_filter=resample_filter,
        use_noise="synthesis.b4.conv1.noise_const" in sd,
    )
    w_dim = kwargs["w_dim"]
    if c_dim and embed != w_dim:
        kwargs["mapping_embed_features"] = int(embed)
    if mapping_layers > 1 and sd["mapping.fc0.weight"].shape[0] != w_dim:
        kwargs["mapping_layer_features"] = int(sd["mapping.fc0.weight"].shape[0])
    kwargs.update(_channel_fields(resolutions, channels))
    return GeneratorConfig(**kwargs)


def _channel_fields(resolutions, channels) -> dict:
    """channel_base/channel_max reproducing `channels`, else an explicit channel_table."""
    channel_max = max(channels)
    below = [r * c for r, c in zip(resolutions, channels) if c < channel_max]
    candidates = [below[0]] if below else [32768, channel_max * resolutions[-1]]
    for base in candidates:
        if all(min(base // r, channel_max) == c for r, c in zip(resolutions, channels)):
            return {"channel_base": base, "channel_max": channel_max}
    return {"channel_table": channels, "channel_max": channel_max}
