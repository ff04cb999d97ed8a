"""Inversion settings: one frozen config of small groups, each setting documented once on its field.

    InversionConfig(space, class_idx, optim: OptimConfig, loss: LossConfig, options: SpaceOptions,
                    compute: ComputeConfig, problem: ProblemConfig)

Defaults follow NVIDIA's projector.py where it has one (reference-stylegan2.md §3.1); a space
brings its own (`InversionConfig.for_space`), and explicit settings override those. Settings are
addressed by their flat names everywhere outside the engine (`for_space(space, num_steps=...)`,
`replace`, `to_dict` for run.json, the launcher's flags from `settings.define_flags`).
"""

import dataclasses

from gaussjax.inversion import spaces as latent_spaces
from gaussjax.inversion.spaces import SpaceOptions
from gaussjax.inversion.tasks import CS_OPERATORS, DENOISE_FORWARDS, TASKS, check_task
from gaussjax.settings import leaf_fields, setting

LR_SCHEDULES = ("official", "constant")
COMPUTE_DTYPES = ("float32", "bfloat16")
# How the prior energy of the K scored W rows enters the loss: "mean" divides by K * w_dim, so
# that an in-distribution code scores ~1 whatever the generator and λ is a fraction of the
# per-pixel MSE; "sum" is the paper's sum over rows (λ then depends on K and w_dim).
PRIOR_SCALES = ("mean", "sum")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """The optimisation: optax optimiser, learning-rate schedule, latent-noise ramp."""

    num_steps: int = setting(1000, "Optimisation steps per image.", flag="steps")
    steps_per_dispatch: int = setting(50, "Steps per device call.")
    optimizer: str = setting("adam", "optax optimiser name (any taking learning_rate).")
    learning_rate: float = setting(0.1, "(Peak) learning rate.")
    lr_schedule: str = setting(
        "official",
        "Learning-rate schedule: official (ramp up, cosine ramp down) or constant.",
        choices=LR_SCHEDULES,
    )
    lr_rampup: float = 0.05  # fractions of num_steps, official
    lr_rampdown: float = 0.25
    latent_noise_factor: float = setting(0.05, "Latent-noise ramp strength (0 turns it off).")
    latent_noise_ramp: float = 0.75
    encoder_refine: int = setting(
        0, "Corrections w += E(x) - E(G(w)) of an encoder's start code, before the steps (invert)."
    )

    def __post_init__(self):
        if self.encoder_refine < 0:
            raise ValueError(f"encoder_refine must be >= 0, got {self.encoder_refine}")
        if self.num_steps < 0 or self.steps_per_dispatch < 1:
            raise ValueError(
                f"num_steps must be >= 0 and steps_per_dispatch >= 1, got {self.num_steps}, "
                f"{self.steps_per_dispatch}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")


# Loss term -> the LossConfig field holding its weight.
LOSS_WEIGHTS = {
    "mse": "mse_weight",
    "lpips": "lpips_weight",
    "prior": "prior_weight",
    "noise_reg": "noise_reg_weight",
    "feature_reg": "feature_reg_weight",
}


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms. `prior_weight` (λ) is not given by the paper ([NF] in
    papers.md). With the energy per latent dimension and row (prior_scale=mean) the default 1e-4
    was measured best on three generators (1000 steps in W+: the built-in digits, the tiny test
    generator and a 128 px one): the lowest latent error at <= 0.5 dB PSNR cost on each. Released
    over the second half of the steps (prior_release 0.5) it keeps the latent error as low and
    costs less PSNR (built-in, style-mixed targets: -0.16 dB instead of -0.79 dB, latent error
    2.0x lower than without the prior; experiments.reconstruction)."""

    mse_weight: float = 1.0
    lpips_weight: float = setting(0.0, "Weight of LPIPS.")
    prior_weight: float = setting(1e-4, "λ (per-pixel MSE units; see prior_scale); 0: no prior.")
    prior_scale: str = setting(
        "mean",
        "Prior energy per latent dimension and row (mean) or summed over rows (sum, the paper's).",
        choices=PRIOR_SCALES,
    )
    prior_release: float = setting(
        0.5, "Fraction of the steps at the end over which λ falls linearly to 0 (0: λ throughout)."
    )
    feature_reg_weight: float = setting(10.0, "F spaces: weight of mean((F - F0)^2).")
    optimize_noise: bool = setting(False, "Also optimise the noise maps (official reg).")
    noise_reg_weight: float = 1e5
    lpips_resolution: int = 256  # targets above this are area-downsampled for LPIPS, as official

    def __post_init__(self):
        negative = [k for k in LOSS_WEIGHTS.values() if getattr(self, k) < 0]
        if negative:
            raise ValueError(f"loss weights must be >= 0: {negative}")
        if self.mse_weight == 0 and self.lpips_weight == 0:
            raise ValueError("no data term: mse_weight and lpips_weight are both 0")
        if not 0 <= self.prior_release <= 1:
            raise ValueError(f"prior_release must be in [0, 1], got {self.prior_release}")
        if self.prior_scale not in PRIOR_SCALES:
            raise ValueError(f"prior_scale must be one of {PRIOR_SCALES}, got {self.prior_scale!r}")

    @property
    def label(self) -> str:
        """The data terms in use, e.g. 'mse+lpips'."""
        return "+".join(
            k for k, w in (("mse", self.mse_weight), ("lpips", self.lpips_weight)) if w > 0
        )


@dataclasses.dataclass(frozen=True)
class ComputeConfig:
    """Speed and memory; results are equal (to float tolerance) for every setting."""

    dtype: str = setting(
        "float32",
        "Synthesis compute dtype (bfloat16: GPU/TPU; image, styles and losses stay float32).",
        choices=COMPUTE_DTYPES,
    )
    remat: bool = setting(False, "Recompute synthesis blocks in the backward pass (memory).")
    # None: one image per device on CPU (its working set stays in cache: 1.2x the image-steps/s
    # at 128 px, 64 channels, batch 8), the whole batch on accelerators.
    microbatch: int | None = setting(
        None, "Images per pass of a step (0: all; default: 1 per device on CPU, else all)."
    )

    def __post_init__(self):
        if self.microbatch is not None and self.microbatch < 0:
            raise ValueError(f"microbatch must be >= 0, got {self.microbatch}")
        if self.dtype not in COMPUTE_DTYPES:
            raise ValueError(f"dtype must be one of {COMPUTE_DTYPES}, got {self.dtype!r}")


@dataclasses.dataclass(frozen=True)
class ProblemConfig:
    """The inverse problem (tasks.py): the loss compares A(G(s)) with y = A(x) (+ noise)."""

    task: str = setting("invert", "Inverse problem.", choices=TASKS)
    denoise_std: float = setting(0.25, "denoise: noise sigma on [-1, 1].")  # SPHInX's README
    denoise_forward: str = setting(
        "expected",
        "denoise: the render's expected noisy-clipped value (expected) or a fresh draw each step "
        "(sampled, SPHInX's public code).",
        choices=DENOISE_FORWARDS,
    )
    measurement_std: float = setting(0.0, "Other tasks: Gaussian noise on y.")
    inpaint_mask: str | None = setting(
        None, "inpaint: mask image, white = known; default: a block."
    )
    # The public code's random_occlusion block, as fractions of the image.
    inpaint_block_height: float = setting(0.4, "inpaint: hole height fraction.")
    inpaint_block_width: float = setting(0.2, "inpaint: hole width fraction.")
    sr_factor: int = setting(4, "super_resolution: box downsampling factor.")
    cs_ratio: float = setting(0.1, "compressed_sensing: measurements / pixel values ([NF]).")
    cs_operator: str = setting(
        "auto", "compressed_sensing operator (auto: dense while <= 16 MB).", choices=CS_OPERATORS
    )
    task_seed: int = setting(0, "Seed of the operator (mask block, sensing matrix).")

    def __post_init__(self):
        check_task(self)


_GROUPS = {
    "optim": OptimConfig,
    "loss": LossConfig,
    "options": SpaceOptions,
    "compute": ComputeConfig,
    "problem": ProblemConfig,
}


# A start from an encoder's code turns the latent-noise ramp off: the ramp explores around the mean
# latent, and from a code it only shakes the code loose. Measured on the built-in generator
# (200 steps, 8 targets): W+ generated digits 39.1 -> 43.3 dB, real digits 31.9 -> 32.8 dB;
# W 37.6 -> 38.3 / 26.2 -> 26.4 dB (the other spaces have no ramp).
ENCODER_START_DEFAULTS = {"latent_noise_factor": 0.0}


@dataclasses.dataclass(frozen=True)
class InversionConfig:
    """Every setting of an inversion, in groups; build it with `for_space`."""

    space: str = "wplus"
    class_idx: int | None = setting(None, "Conditional generators: the class Z spaces map with.")
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()
    options: SpaceOptions = SpaceOptions()
    compute: ComputeConfig = ComputeConfig()
    problem: ProblemConfig = ProblemConfig()

    def __post_init__(self):
        latent_spaces.check_space_name(self.space)
        if self.loss.optimize_noise and latent_spaces.owns_noise(self.space):
            raise ValueError(
                f"the {self.space} space optimises its own noise maps: drop optimize_noise"
            )
        if self.problem.task == "compressed_sensing" and self.loss.lpips_weight > 0:
            raise ValueError("compressed-sensing measurements are not images: set lpips_weight=0")
        if self.optim.encoder_refine and self.problem.task != "invert":
            # E(G(w)) would read a clean render against the encoding of a degraded measurement.
            raise ValueError(f"encoder_refine works for task invert, not {self.problem.task}")

    @classmethod
    def from_flat(cls, **settings) -> "InversionConfig":
        """The config with the named settings (flat names, e.g. num_steps=100); others default."""
        unknown = settings.keys() - leaf_fields(cls).keys() - {"space"}
        if unknown:
            raise ValueError(f"unknown inversion settings: {sorted(unknown)}")
        groups = {
            group: kind(
                **{f.name: settings[f.name] for f in dataclasses.fields(kind) if f.name in settings}
            )
            for group, kind in _GROUPS.items()
        }
        top = {k: settings[k] for k in ("space", "class_idx") if k in settings}
        return cls(**top, **groups)

    @classmethod
    def for_space(cls, space: str, from_encoder: bool = False, **overrides) -> "InversionConfig":
        """The config of `space`: its own defaults (spaces.space_defaults), then, for a start from
        an encoder's code, ENCODER_START_DEFAULTS, then `overrides`."""
        start = ENCODER_START_DEFAULTS if from_encoder else {}
        defaults = {**latent_spaces.space_defaults(space), **start}
        return cls.from_flat(**{**defaults, **overrides, "space": space})

    def replace(self, **overrides) -> "InversionConfig":
        """This config with some settings (flat names) changed."""
        return self.from_flat(**{**self.to_dict(), **overrides})

    def to_dict(self) -> dict:
        """{flat setting name: value} (run.json's `config`)."""
        flat = {"space": self.space, "class_idx": self.class_idx}
        for group in _GROUPS:
            flat.update(dataclasses.asdict(getattr(self, group)))
        return flat
