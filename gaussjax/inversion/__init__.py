"""Inversion: its settings (config), the jitted engine with its optimiser and passes, the latent
spaces it optimises in, tasks, device placement, and the run pipeline (targets, batches, run settings)."""

from gaussjax.inversion.config import InversionConfig as InversionConfig
from gaussjax.inversion.engine import InversionResult as InversionResult
from gaussjax.inversion.engine import Inverter as Inverter
from gaussjax.inversion.engine import area_downsample as area_downsample
from gaussjax.inversion.engine import noise_regularizer as noise_regularizer
from gaussjax.inversion.engine import normalize_noise as normalize_noise
from gaussjax.inversion.engine import psnr as psnr
from gaussjax.inversion.optimizer import lr_schedule as lr_schedule
from gaussjax.inversion.optimizer import make_optimizer as make_optimizer
from gaussjax.inversion.passes import in_passes as in_passes
from gaussjax.inversion.passes import pass_count as pass_count
from gaussjax.inversion.passes import resolve_microbatch as resolve_microbatch
