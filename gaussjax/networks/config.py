"""Typed configuration of a StyleGAN2 generator, mirroring the official constructor arguments."""

import dataclasses
import json
import math
from typing import Any

import numpy as np

ARCHITECTURES = ("skip", "orig", "resnet")
ACTIVATIONS = ("linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish")


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Every option of the official `training/networks.py` Generator (stylegan2-ada-pytorch).

    Field names follow the official keyword arguments; `mapping_*` fields come from `mapping_kwargs`
    and the synthesis fields from `synthesis_kwargs`. `num_fp16_res` is recorded for provenance only:
    gaussjax computes in float32 (or bfloat16 on request), like the official `force_fp32=True`.
    """

    z_dim: int = 512
    c_dim: int = 0
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    # Mapping network.
    mapping_layers: int = 8
    mapping_embed_features: int | None = None
    mapping_layer_features: int | None = None
    mapping_activation: str = "lrelu"
    mapping_lr_multiplier: float = 0.01
    mapping_w_avg_beta: float | None = 0.995
    # Synthesis network.
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 0
    conv_clamp: float | None = None
    architecture: str = "skip"
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)
    use_noise: bool = True
    # Explicit channel count per block resolution (4, 8, ..., img_resolution), for networks whose
    # channel table is not of the min(channel_base // res, channel_max) form (e.g. patched rosinality
    # models). None: use channel_base and channel_max.
    channel_table: tuple[int, ...] | None = None

    def __post_init__(self):
        log2 = math.log2(self.img_resolution) if self.img_resolution > 0 else -1
        if log2 < 2 or log2 != int(log2):
            raise ValueError(
                f"img_resolution must be a power of two >= 4, got {self.img_resolution}"
            )
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}"
            )
        if self.mapping_activation not in ACTIVATIONS:
            raise ValueError(
                f"mapping activation must be one of {ACTIVATIONS}, got {self.mapping_activation!r}"
            )
        if self.z_dim + self.c_dim == 0:
            raise ValueError("z_dim and c_dim cannot both be 0")
        if self.channel_table is not None and len(self.channel_table) != len(
            self.block_resolutions
        ):
            raise ValueError(
                f"channel_table needs {len(self.block_resolutions)} entries, got {len(self.channel_table)}"
            )
        if self.mapping_layers < 1:
            raise ValueError(f"mapping_layers must be >= 1, got {self.mapping_layers}")

    # Derived quantities (official formulas).
    @property
    def block_resolutions(self) -> tuple[int, ...]:
        return tuple(2**i for i in range(2, int(math.log2(self.img_resolution)) + 1))

    def channels(self, res: int) -> int:
        if self.channel_table is not None:
            return self.channel_table[self.block_resolutions.index(res)]
        return min(self.channel_base // res, self.channel_max)

    @property
    def num_ws(self) -> int:
        return 2 * int(math.log2(self.img_resolution)) - 2

    @property
    def embed_features(self) -> int:
        if self.c_dim == 0:
            return 0
        return self.w_dim if self.mapping_embed_features is None else self.mapping_embed_features

    @property
    def layer_features(self) -> int:
        return self.w_dim if self.mapping_layer_features is None else self.mapping_layer_features

    @property
    def num_layers(self) -> int:
        """Number of synthesis layers (modulated 3x3 convs), one noise input each."""
        return len(self.noise_resolutions)

    def layer_resolution(self, layer: int) -> int:
        """Output resolution of synthesis layer `layer` (0: b4.conv1, 2k-1 / 2k: the k-th block)."""
        return self.noise_resolutions[layer]

    def layer_channels(self, layer: int) -> int:
        return self.channels(self.noise_resolutions[layer])

    @property
    def noise_resolutions(self) -> tuple[int, ...]:
        """Resolution of every noise input, in synthesis order: [4, 8, 8, 16, 16, ...]."""
        return (4,) + tuple(r for r in self.block_resolutions[1:] for _ in range(2))

    @property
    def mapping_negative_slope(self) -> float:
        """Slope of the mapping network's last activation on negative inputs (1 when it is linear there)."""
        return {"lrelu": 0.2, "relu": 0.0}.get(self.mapping_activation, 1.0)

    def class_labels(self, class_idx: int | None, n: int):
        """One-hot labels [n, c_dim] float32 of class `class_idx`; None for unconditional generators.

        Raises:
          ValueError: a conditional generator and no class index, or one out of range.
        """
        if self.c_dim == 0:
            return None
        if class_idx is None or not 0 <= class_idx < self.c_dim:
            raise ValueError(
                f"this generator is conditional: give a class index (class_idx) in [0, {self.c_dim})"
            )
        return np.tile(np.eye(self.c_dim, dtype=np.float32)[class_idx], (n, 1))

    # Conversions.
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["resample_filter"] = list(self.resample_filter)
        if self.channel_table is not None:
            d["channel_table"] = list(self.channel_table)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GeneratorConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown generator config keys: {unknown}")
        d = dict(d)
        for key in ("resample_filter", "channel_table"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_official_kwargs(cls, kwargs: dict[str, Any]) -> "GeneratorConfig":
        """Builds the config from the official `Generator(**kwargs)` constructor arguments.

        Raises:
          ValueError: an argument gaussjax does not know (so nothing is silently ignored).
        """
        kwargs = dict(kwargs)
        mapping = dict(kwargs.pop("mapping_kwargs", {}) or {})
        synthesis = dict(kwargs.pop("synthesis_kwargs", {}) or {})
        top = {
            k: kwargs.pop(k)
            for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
            if k in kwargs
        }
        out = dict(top)
        for src, dst in _MAPPING_KWARGS.items():
            if src in mapping:
                out[dst] = mapping.pop(src)
        mapping.pop("num_ws", None)  # Set by the Generator itself.
        for src in _SYNTHESIS_KWARGS:
            if src in synthesis:
                out[src] = synthesis.pop(src)
        # Options that change nothing numerically in float32 inference.
        for ignored in ("fp16_channels_last", "channels_last", "use_fp16"):
            synthesis.pop(ignored, None)
        leftover = {
            **{f"mapping_kwargs.{k}": v for k, v in mapping.items()},
            **{f"synthesis_kwargs.{k}": v for k, v in synthesis.items()},
            **kwargs,
        }
        if leftover:
            raise ValueError(f"unsupported Generator arguments: {sorted(leftover)}")
        if "resample_filter" in out:
            out["resample_filter"] = tuple(out["resample_filter"])
        return cls(**out)


_MAPPING_KWARGS = {
    "num_layers": "mapping_layers",
    "embed_features": "mapping_embed_features",
    "layer_features": "mapping_layer_features",
    "activation": "mapping_activation",
    "lr_multiplier": "mapping_lr_multiplier",
    "w_avg_beta": "mapping_w_avg_beta",
}
_SYNTHESIS_KWARGS = (
    "channel_base",
    "channel_max",
    "num_fp16_res",
    "conv_clamp",
    "architecture",
    "resample_filter",
    "use_noise",
)
