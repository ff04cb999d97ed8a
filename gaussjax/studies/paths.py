"""Interpolation paths between two inversion results, rendered, with their smoothness numbers."""

import jax
import jax.numpy as jnp
import numpy as np

from gaussjax import editing
from gaussjax.analysis.gaussianize import degaussianize, gaussianize
from gaussjax.analysis.prior import prior_energy
from gaussjax.studies import metrics
from gaussjax.studies.setup import Study


def native_path_ws(study: Study, space, variables_a: dict, variables_b: dict, ts) -> np.ndarray:
    """W+ codes [K, num_ws, w_dim] along the path in the result's own space: lerp of W/W+ codes,
    per-row slerp of Z/Z+ rows (`editing.interpolation_path`), mapped as the space renders."""
    path = editing.interpolation_path(variables_a, variables_b, ts)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *path)
    inputs = jax.vmap(lambda v: space.synthesis_inputs(study.params, v, {}).ws)
    return np.asarray(inputs(stacked))


def v_path_ws(ws_a: np.ndarray, ws_b: np.ndarray, ts, negative_slope: float) -> np.ndarray:
    """W+ codes [K, num_ws, w_dim] along the straight line between the two codes in V."""
    va, vb = (np.asarray(gaussianize(x, negative_slope)) for x in (ws_a, ws_b))
    return np.asarray(degaussianize(editing.lerp(va, vb, ts), negative_slope))


def path_numbers(study: Study, ws_path: np.ndarray, frames: np.ndarray, single_code: bool) -> dict:
    """Smoothness of one rendered path: the largest and mean RMS pixel step between consecutive
    frames, their ratio (1 for evenly spread change), and the prior energy along the path (one row
    per frame for single-code spaces, all rows for W+)."""
    steps = metrics.path_steps(frames)
    rows = ws_path[:, :1] if single_code else ws_path
    energy = np.asarray(prior_energy(study.prior, jnp.asarray(rows)))
    return {
        "max_step": float(steps.max()),
        "mean_step": float(steps.mean()),
        "max_over_mean": float(steps.max() / max(steps.mean(), 1e-12)),
        "energy_mean": float(energy.mean()),
        "energy_max": float(energy.max()),
        "steps": steps,
        "energy": energy,
    }
