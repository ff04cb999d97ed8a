"""Inversion: the jitted engine, the latent spaces it optimises in, device placement, the run pipeline."""

from gaussjax.inversion.config import InversionConfig as InversionConfig
from gaussjax.inversion.engine import InversionResult as InversionResult
from gaussjax.inversion.engine import Inverter as Inverter
from gaussjax.inversion.engine import area_downsample as area_downsample
from gaussjax.inversion.engine import in_passes as in_passes
from gaussjax.inversion.engine import lr_schedule as lr_schedule
from gaussjax.inversion.engine import make_optimizer as make_optimizer
from gaussjax.inversion.engine import noise_regularizer as noise_regularizer
from gaussjax.inversion.engine import normalize_noise as normalize_noise
from gaussjax.inversion.engine import pass_count as pass_count
from gaussjax.inversion.engine import psnr as psnr
from gaussjax.inversion.engine import resolve_microbatch as resolve_microbatch
