"""Inversion results read back: a result file -> its latent space and variables -> images.

Result files (`files.results.result_arrays`) keep `w` [1, num_ws, w_dim] in the official format and,
for gaussjax results, the space's record and native variables, so any result can be re-rendered,
edited and interpolated later in its own space. Files with `w` only (NVIDIA's projected_w.npz)
are read as W+ codes.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from gaussjax.files import results
from gaussjax.inversion import spaces


@dataclasses.dataclass
class SavedResult:
    """space: the LatentSpace; variables: its variables (one image, no batch axis); noise: optimised
    per-layer [res, res] noise maps or None."""

    space: spaces.LatentSpace
    variables: dict
    noise: list | None


def load_results(path, gen_fns, gen_cfg) -> list[SavedResult]:
    """Reads a result file into its space: one SavedResult per row of `w` (gaussjax results have
    one; a file with `w` only gives W+ codes).

    Raises:
      ValueError: unreadable file, or latents that do not fit the generator.
    """
    ws, noise = results.read_latents(path, gen_cfg)
    record, latents = results.read_native_latents(path)
    if record is None:
        space = spaces.restore_space({"name": "wplus"}, gen_fns, gen_cfg)
        return [SavedResult(space, {"wplus": jnp.asarray(w)}, noise) for w in ws]
    try:
        space = spaces.restore_space(record, gen_fns, gen_cfg)
        variables, _ = space.from_arrays(latents)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"{path}: the saved latents do not match space {record.get('name')!r} ({e})"
        ) from e
    return [SavedResult(space, variables, noise)]


def render_variables(saved: SavedResult, gen_params, variables_list) -> np.ndarray:
    """Images [K, H, W, C] float32 of K variable sets of the saved result's space (e.g. an edit path),
    one jitted call per image to bound memory."""
    render = jax.jit(lambda p, v: spaces.render(saved.space, p, v, noise=saved.noise)[1])
    return np.stack([np.asarray(render(gen_params, v)) for v in variables_list])
