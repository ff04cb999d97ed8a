"""Inverse problems solved through the generator against their classical baselines (baselines.py),
from the same measurements: the engine's `measurements` draws y exactly as its `init` does, so the
baseline and every latent space see one y per image.

PSNR is always against the clean targets. Denoising also reports the noisy input itself.
"""

import jax.numpy as jnp
import numpy as np

from gaussjax.inversion import psnr
from gaussjax.inversion.config import InversionConfig
from gaussjax.studies import baselines
from gaussjax.studies.inversions import Targets
from gaussjax.studies.setup import Study


def _psnr(images, clean) -> np.ndarray:
    """[N] PSNR of images [N, H, W, C] against clean [N, H, W, C] (both in [-1, 1])."""
    mse = jnp.mean(jnp.square(jnp.asarray(images) - jnp.asarray(clean)), axis=(1, 2, 3))
    return np.asarray(psnr(mse))


def measurement_view(task, measured, shape) -> np.ndarray | None:
    """A measurement as an image of the targets' shape [N, H, W, C] for a picture (SR: nearest
    upsampling), or None when it is not an image (compressed sensing)."""
    if not task.image_shaped:
        return None
    measured = np.asarray(measured)
    factor = shape[1] // measured.shape[1]
    return measured.repeat(factor, axis=1).repeat(factor, axis=2)


def task_config(
    task: str, space: str, from_encoder: bool = False, num_steps: int | None = None, **overrides
) -> InversionConfig:
    """The config of one run of `task` in `space`: the space's defaults (those of a start from a
    code when `from_encoder`), `num_steps` when given, `overrides`, and never LPIPS for compressed
    sensing (its measurements are not images)."""
    if num_steps is not None:
        overrides["num_steps"] = num_steps
    if task == "compressed_sensing":
        overrides["lpips_weight"] = 0.0
    return InversionConfig.for_space(space, from_encoder, task=task, **overrides)


def baseline_run(study: Study, config: InversionConfig, targets: Targets) -> dict:
    """The classical solution of `config`'s task for every target.

    Returns:
      {"images": [N, H, W, C], "psnr": [N], "settings": per-image settings (denoise: the sigma),
       "measurement": [N, H, W, C] or None, "input_psnr": [N] (denoise only)}.
    """
    inverter = study.inverter(config)
    clean = jnp.asarray(targets.pixels)
    measured = inverter.measurements(jnp.asarray(targets.seeds), clean)
    solved = [baselines.solve(inverter.task, y, x) for y, x in zip(measured, clean)]
    images = np.stack([np.asarray(image) for image, _ in solved])
    run = {
        "images": images,
        "psnr": _psnr(images, clean),
        "settings": [settings for _, settings in solved],
        "measurement": measurement_view(inverter.task, measured, clean.shape),
    }
    if inverter.task.name == "denoise":
        run["input_psnr"] = _psnr(measured, clean)
    return run


def generator_run(study: Study, config: InversionConfig, targets: Targets, encoder=None) -> dict:
    """Inverts every target's measurement under `config` (one batch), from the encoder's code of the
    measurement when `encoder` is given. Returns {"images": [N, H, W, C], "psnr": [N]}."""
    inverter = study.inverter(config)
    prior = study.prior if config.loss.prior_weight > 0 else None
    result = inverter.invert(
        study.params,
        jnp.asarray(targets.pixels),
        jnp.asarray(targets.seeds),
        prior=prior,
        encode=None if encoder is None else encoder.encode,
    )
    return {"images": np.asarray(result.images), "psnr": np.asarray(result.terms["psnr"])}


def summary_row(task: str, set_name: str, method: str, run: dict, baseline_psnr) -> dict:
    """One report row: mean ± std over images of PSNR and of its gain over the baseline."""
    gain = np.asarray(run["psnr"]) - np.asarray(baseline_psnr)
    return {
        "task": task,
        "targets": set_name,
        "method": method,
        "psnr_mean": float(np.mean(run["psnr"])),
        "psnr_std": float(np.std(run["psnr"])),
        "gain_mean": float(np.mean(gain)),
        "gain_std": float(np.std(gain)),
        "beats_baseline": float(np.mean(gain > 0)),
    }
