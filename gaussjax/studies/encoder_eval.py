"""Encoder initialisation against the mean latent: PSNR after 0 steps and along the optimisation,
on generated targets (with latent error) and on real images, and encoder-only throughput.

Both starts run the same engine with the same settings and seeds; only `Inverter.init` differs
(codes or none), so every difference in the curves is the start.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from gaussjax.inversion import targets as target_lib
from gaussjax.inversion.config import InversionConfig
from gaussjax.studies import inversions
from gaussjax.studies.setup import Study

INITS = ("mean", "encoder")
SHORT = " short"  # suffix of the short runs' inits


def image_targets(pixels: np.ndarray, prefix: str, cfg) -> inversions.Targets:
    """Targets of real images [N, R, R, C] in [-1, 1]; their true codes are unknown (NaN)."""
    names = [f"{prefix}{i:04d}" for i in range(len(pixels))]
    true_ws = np.full((len(pixels), cfg.num_ws, cfg.w_dim), np.nan, np.float32)
    seeds = np.asarray([target_lib.image_seed(n) for n in names], np.int32)
    return inversions.Targets(np.asarray(pixels, np.float32), true_ws, names, seeds)


def run_configs(space: str, steps: int, short_steps: int, every: int) -> dict:
    """{init: InversionConfig}: both starts over `steps` and over `short_steps` (each schedule
    spans its own run), the encoder's with the defaults of a start from a code."""
    configs = {}
    for init in INITS:
        for suffix, num_steps in (("", steps), (SHORT, short_steps)):
            configs[init + suffix] = InversionConfig.for_space(
                space,
                from_encoder=init == "encoder",
                num_steps=num_steps,
                steps_per_dispatch=min(every, num_steps),
            )
    return configs


def init_curves(study: Study, encoder, configs: dict, targets) -> dict:
    """{init: Trace from step 0} of `targets` under configs[init]; inits starting with "mean"
    start from the mean latent, the others from the encoder's codes."""
    codes = encoder.encode(jnp.asarray(targets.pixels))
    return {
        init: inversions.invert_traced(
            study,
            config,
            targets,
            codes=None if init.startswith("mean") else codes,
            include_start=True,
        )[1]
        for init, config in configs.items()
    }


def steps_to_reach(trace: inversions.Trace, psnr_db: float) -> int | None:
    """The first traced step whose mean PSNR is at least `psnr_db`, or None."""
    reached = np.flatnonzero(trace.psnr.mean(axis=1) >= psnr_db)
    return int(trace.steps[reached[0]]) if reached.size else None


def curve_row(space: str, target_set: str, traces: dict) -> dict:
    """One report row: start and final PSNR of both starts, when the encoder's curve reaches the
    mean start's final PSNR, and both starts' PSNR after a short run of their own."""
    mean, enc = traces["mean"], traces["encoder"]
    final = float(mean.psnr[-1].mean())
    return {
        "space": space,
        "targets": target_set,
        "steps": int(mean.steps[-1]),
        "mean_start_psnr": float(mean.psnr[0].mean()),
        "encoder_start_psnr": float(enc.psnr[0].mean()),
        "mean_final_psnr": final,
        "encoder_final_psnr": float(enc.psnr[-1].mean()),
        "encoder_steps_to_mean_final": steps_to_reach(enc, final),
        "short_steps": int(traces["mean" + SHORT].steps[-1]),
        "mean_short_psnr": float(traces["mean" + SHORT].psnr[-1].mean()),
        "encoder_short_psnr": float(traces["encoder" + SHORT].psnr[-1].mean()),
        "mean_final_latent_mse": float(np.mean(mean.latent_mse[-1])),
        "encoder_start_latent_mse": float(np.mean(enc.latent_mse[0])),
    }


def _timed(fn, repeats: int) -> float:
    """Seconds per call of fn() (its result blocked on), after one warm-up call."""
    jax.block_until_ready(fn())
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn())
    return (time.perf_counter() - start) / repeats


def throughput(study: Study, encoder, config: InversionConfig, targets, probe_steps: int) -> dict:
    """Images per second of encoder-only inversion (encode + render) and of `config.num_steps`
    steps of optimisation, the latter timed over `probe_steps` compiled steps and scaled."""
    pixels = jnp.asarray(targets.pixels)
    synthesis = jax.jit(study.fns.synthesis)
    encode_seconds = _timed(lambda: synthesis(study.params, encoder.encode(pixels)), 5)
    probe = InversionConfig.for_space(
        config.space, num_steps=probe_steps, steps_per_dispatch=probe_steps
    )
    inverter = study.inverter(probe)
    feats = inverter.features(None, pixels)
    seeds = jnp.asarray(targets.seeds)
    prior = study.prior if probe.loss.prior_weight > 0 else None

    def dispatch():
        state = inverter.init(study.params, seeds, pixels)
        return inverter.run(study.params, None, prior, state, pixels, feats)

    step_seconds = _timed(dispatch, 2) / probe_steps
    optimise_rate = len(pixels) / (step_seconds * config.optim.num_steps)
    encode_rate = len(pixels) / encode_seconds
    return {
        "batch": len(pixels),
        "encoder_images_per_s": encode_rate,
        "optimisation_images_per_s": optimise_rate,
        "speedup": encode_rate / optimise_rate,
        "optimisation_steps": config.optim.num_steps,
    }
