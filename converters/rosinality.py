"""rosinality/stylegan2-pytorch `g_ema` state dicts -> official stylegan2-ada-pytorch names.

The two implementations share numerics and storage conventions (shared/notes/reference-stylegan2.md
§2c); only names and a few leading singleton dimensions differ. Every source key is renamed or
checked (the FIR kernels), anything left over is an error.
"""

import math

import numpy as np

from converters.errors import ConversionError
from gaussjax.files.key_maps import check_keys
from gaussjax.networks import ops


def _squeeze0(a):
    return a.reshape(a.shape[1:])


def _layer(src, dst):
    """A rosinality StyledConv -> official SynthesisLayer entries: {src key: (dst key, transform)}."""
    return {
        f"{src}.conv.weight": (f"{dst}.weight", _squeeze0),
        f"{src}.conv.modulation.weight": (f"{dst}.affine.weight", np.asarray),
        f"{src}.conv.modulation.bias": (f"{dst}.affine.bias", np.asarray),
        f"{src}.noise.weight": (f"{dst}.noise_strength", lambda a: a.reshape(())),
        f"{src}.activate.bias": (f"{dst}.bias", np.asarray),
    }


def _torgb(src, dst):
    return {
        f"{src}.conv.weight": (f"{dst}.weight", _squeeze0),
        f"{src}.conv.modulation.weight": (f"{dst}.affine.weight", np.asarray),
        f"{src}.conv.modulation.bias": (f"{dst}.affine.bias", np.asarray),
        f"{src}.bias": (f"{dst}.bias", lambda a: a.reshape(-1)),
    }


def rename_map(num_mapping_layers: int, resolution: int) -> dict:
    """rosinality key -> (official key, transform) for a `Generator(size=resolution, n_mlp=...)`."""
    out = {
        f"style.{k + 1}.{p}": (f"mapping.fc{k}.{p}", np.asarray)
        for k in range(num_mapping_layers)
        for p in ("weight", "bias")
    }
    out["input.input"] = ("synthesis.b4.const", _squeeze0)
    out.update(_layer("conv1", "synthesis.b4.conv1"))
    out.update(_torgb("to_rgb1", "synthesis.b4.torgb"))
    out["noises.noise_0"] = ("synthesis.b4.conv1.noise_const", lambda a: a.reshape(a.shape[-2:]))
    for i in range(int(math.log2(resolution)) - 2):
        res = 2 ** (i + 3)
        out.update(_layer(f"convs.{2 * i}", f"synthesis.b{res}.conv0"))
        out.update(_layer(f"convs.{2 * i + 1}", f"synthesis.b{res}.conv1"))
        out.update(_torgb(f"to_rgbs.{i}", f"synthesis.b{res}.torgb"))
        for j, conv in ((2 * i + 1, "conv0"), (2 * i + 2, "conv1")):
            out[f"noises.noise_{j}"] = (
                f"synthesis.b{res}.{conv}.noise_const",
                lambda a: a.reshape(a.shape[-2:]),
            )
    return out


def _fir_kernel_keys(resolution: int) -> list[str]:
    n = int(math.log2(resolution)) - 2
    return [f"convs.{2 * i}.conv.blur.kernel" for i in range(n)] + [
        f"to_rgbs.{i}.upsample.kernel" for i in range(n)
    ]


def official_state_dict(
    g_ema: dict[str, np.ndarray], latent_avg: np.ndarray | None, resample_filter=(1, 3, 3, 1)
) -> dict[str, np.ndarray]:
    """Renames a rosinality `g_ema` state dict (plus `latent_avg` as `mapping.w_avg`) to official keys.

    Without `latent_avg` (training checkpoints) `w_avg` is zero and truncation is meaningless; the
    caller warns about that.

    Raises:
      ConversionError: keys that are not part of a rosinality Generator, or missing ones.
    """
    num_mapping = sum(1 for k in g_ema if k.startswith("style.") and k.endswith(".weight"))
    if "input.input" not in g_ema or num_mapping == 0:
        raise ConversionError(
            "not a rosinality generator state dict (no input.input / style.* keys)"
        )
    num_noise = sum(1 for k in g_ema if k.startswith("noises.noise_"))  # 2 * log2(resolution) - 3
    resolution = 2 ** ((num_noise + 3) // 2)
    renames = rename_map(num_mapping, resolution)
    fir = _fir_kernel_keys(resolution)
    check_keys(
        g_ema,
        renames,
        fir,
        what=f"rosinality state dict does not match a {resolution} px Generator",
        error=ConversionError,
    )
    expected = 4 * ops.setup_filter(
        resample_filter
    )  # rosinality stores the FIR kernel times up**2.
    for key in fir:
        if not np.allclose(g_ema[key], expected, atol=1e-6):
            raise ConversionError(f"{key} is not the FIR filter {list(resample_filter)} times 4")
    out = {
        dst: np.asarray(fn(np.asarray(g_ema[src], np.float32)), np.float32)
        for src, (dst, fn) in renames.items()
    }
    w_dim = out["mapping.fc0.weight"].shape[1]
    out["mapping.w_avg"] = (
        np.zeros(w_dim, np.float32)
        if latent_avg is None
        else np.asarray(latent_avg, np.float32).reshape(w_dim)
    )
    return out
