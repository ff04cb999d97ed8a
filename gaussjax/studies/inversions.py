"""Inversions of generated images with their error traced along the optimisation.

The engine runs `steps_per_dispatch` steps per call; evaluating after every call gives curves of
image error (PSNR) and latent error against the true W+ codes, at that resolution, for the cost of
one extra render per dispatch. Results equal those of `Inverter.invert` (same calls, same order).
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

from gaussjax.analysis.prior import energy_per_dimension
from gaussjax.inversion import targets as target_lib
from gaussjax.inversion.config import InversionConfig
from gaussjax.inversion.engine import InversionResult
from gaussjax.studies.setup import Study

# Report columns (gaussjax.reports.markdown.Report.table) of `sweep` and `chosen_prior_weights` rows.
SWEEP_COLUMNS = [
    ("space", "space"),
    ("prior_weight", "λ"),
    (("psnr_mean", "psnr_std"), "PSNR dB"),
    (("latent_mse_mean", "latent_mse_std"), "latent MSE"),
    (("prior_mean", "prior_std"), "prior energy / dim"),
]
CHOSEN_COLUMNS = [
    ("space", "space"),
    ("prior_weight", "λ"),
    ("psnr_change_db", "PSNR change dB"),
    ("latent_mse_ratio", "latent MSE ×lower than λ=0"),
]


@dataclasses.dataclass(frozen=True)
class Targets:
    """pixels [N, H, W, C] float32; true_ws [N, num_ws, w_dim]; names [N]; seeds [N] int32."""

    pixels: np.ndarray
    true_ws: np.ndarray
    names: list
    seeds: np.ndarray


def generated_targets(study: Study, space: str, num_per_seed: int, seeds) -> Targets:
    """Images the generator makes, `num_per_seed` for each target seed, as experiments.invert
    renders them: one z for single-code spaces (w, z), a z per layer (styles mixed) otherwise.
    Each image's optimisation seed comes from its name and target seed."""
    items = []
    for seed in seeds:
        made = target_lib.generated_targets(
            study.fns,
            study.params,
            study.cfg,
            space=space,
            count=num_per_seed,
            seed=int(seed),
        )
        items += [(f"seed{seed}_{t.name}", t) for t in made]
    return Targets(
        np.stack([t.pixels for _, t in items]).astype(np.float32),
        np.stack([t.true_ws for _, t in items]).astype(np.float32),
        [name for name, _ in items],
        np.asarray([target_lib.image_seed(name) for name, _ in items], np.int32),
    )


@dataclasses.dataclass(frozen=True)
class Trace:
    """steps [T]; psnr, latent_mse, prior [T, N] after each dispatch (prior: the energy per latent
    dimension and row of the W rows the images render with, whether or not the loss used it)."""

    steps: np.ndarray
    psnr: np.ndarray
    latent_mse: np.ndarray
    prior: np.ndarray


def _metrics(study: Study, result: InversionResult, true_ws: np.ndarray):
    ws = np.asarray(result.ws)
    # Per latent dimension and row, the scale of the loss's prior term (~1 in distribution).
    energy = np.asarray(energy_per_dimension(study.prior, jnp.asarray(ws)))
    latent_mse = np.mean(np.square(ws - true_ws), axis=(1, 2))
    return np.asarray(result.terms["psnr"]), latent_mse, energy


def invert_traced(
    study: Study, config: InversionConfig, targets: Targets, codes=None, include_start=False
):
    """Inverts every target in one batch under `config`, evaluating after each dispatch.

    Args:
      codes: None, or encoder W+ codes [N, num_ws, w_dim] the space starts from.
      include_start: also evaluate the start (step 0) as the first point of the trace.
    Returns:
      (final InversionResult, Trace).
    """
    inverter = study.inverter(config)
    prior = study.prior if config.loss.prior_weight > 0 else None
    pixels = jnp.asarray(targets.pixels)
    feats = inverter.features(None, pixels)
    if codes is not None:
        inverter.check_encodable()
    state = inverter.init(study.params, jnp.asarray(targets.seeds), pixels, codes)
    rows = []
    if include_start:
        result = inverter.evaluate(study.params, None, prior, state, pixels, feats)
        rows.append((0, *_metrics(study, result, targets.true_ws)))
    for _ in range(inverter.num_dispatches()):
        state, _ = inverter.run(study.params, None, prior, state, pixels, feats)
        result = inverter.evaluate(study.params, None, prior, state, pixels, feats)
        rows.append((int(state["step"]), *_metrics(study, result, targets.true_ws)))
    steps, psnr, latent_mse, energy = (np.asarray(column) for column in zip(*rows))
    return result, Trace(steps, psnr, latent_mse, energy)


def final_row(trace: Trace, groups: np.ndarray) -> dict:
    """Final PSNR, latent MSE and prior energy as mean ± std over groups (target seeds): each
    group's mean over its images first, so the std says how much the result varies by seed.

    Args:
      trace: a Trace of N images.
      groups: [N] the group (target seed) of each image.
    """
    row = {}
    for name in ("psnr", "latent_mse", "prior"):
        final = getattr(trace, name)[-1]
        per_group = np.asarray([final[groups == g].mean() for g in np.unique(groups)])
        row[f"{name}_mean"], row[f"{name}_std"] = float(per_group.mean()), float(per_group.std())
    return row


def choose_prior_weight(rows: list[dict], max_psnr_loss_db: float = 0.5) -> dict | None:
    """The row with the lowest latent error among those whose mean PSNR is at most
    `max_psnr_loss_db` below that of λ = 0 (rows: dicts with prior_weight, psnr_mean,
    latent_mse_mean; one of them λ = 0). None without a λ = 0 row."""
    baseline = [r for r in rows if r["prior_weight"] == 0]
    if not baseline:
        return None
    floor = baseline[0]["psnr_mean"] - max_psnr_loss_db
    allowed = [r for r in rows if r["psnr_mean"] >= floor]
    return min(allowed, key=lambda r: r["latent_mse_mean"])


def chosen_prior_weights(rows: list[dict], max_psnr_loss_db: float = 0.5) -> list[dict]:
    """Per space of `sweep` rows: the `choose_prior_weight` λ, its PSNR change against λ = 0 and how
    many times lower its latent error is."""
    chosen = []
    for space in dict.fromkeys(r["space"] for r in rows):
        mine = [r for r in rows if r["space"] == space]
        best = choose_prior_weight(mine, max_psnr_loss_db)
        base = next((r for r in mine if r["prior_weight"] == 0), None)
        if best is None:
            continue
        chosen.append(
            {
                "space": space,
                "prior_weight": best["prior_weight"],
                "psnr_change_db": best["psnr_mean"] - base["psnr_mean"],
                "latent_mse_ratio": base["latent_mse_mean"] / best["latent_mse_mean"],
            }
        )
    return chosen


def sweep(study: Study, space: str, prior_weights, targets: Targets, groups, log, **overrides):
    """Inverts `targets` in `space` once per prior weight λ.

    Returns:
      (rows: one `final_row` per λ, with space and prior_weight; traces: {λ: Trace}).
    """
    rows, traces = [], {}
    for weight in prior_weights:
        config = InversionConfig.for_space(space, prior_weight=float(weight), **overrides)
        _, trace = invert_traced(study, config, targets)
        traces[float(weight)] = trace
        rows.append({"space": space, "prior_weight": float(weight), **final_row(trace, groups)})
        log(f"{space} λ={float(weight):g}: PSNR {rows[-1]['psnr_mean']:.2f} dB")
    return rows, traces
