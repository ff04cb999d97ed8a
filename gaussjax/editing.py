"""Editing and interpolation of inversion results in their own latent space.

Z and Z+ rows live on the sphere of radius sqrt(z_dim) (the mapping's input PixelNorm), so they are
edited as Katsumata et al.'s public code does (papers note §2.2): a walk along a direction in many
small steps, each followed by re-projection onto the sphere, and per-row slerp between two results.
W and W+ codes edit and interpolate linearly. F (F/Z+ and the F ablations) is held fixed.

    saved = load_results("out/NAME.npz", fns, cfg)[0]
    path = edit_path(saved.space, saved.variables, direction, distances=np.linspace(-2, 2, 11))
    frames = render_variables(saved, params, path)
"""

import numpy as np

SPHERE_KEYS = ("z", "zplus")  # variables edited on the sphere
LINEAR_KEYS = ("w", "wplus")  # variables edited linearly


def sphere_walk(z_rows, direction, distances, num_substeps: int = 1000) -> np.ndarray:
    """Walks rows on the sphere along `direction` to each distance, re-projecting after each of
    `num_substeps` equal sub-steps (an approximate geodesic walk).

    Args:
      z_rows: [L, D].
      direction: [D] (every row) or [L, D].
      distances: [K] signed distances (in units of the direction's length).
      num_substeps: sub-steps per walk.
    Returns:
      [K, L, D] rows on the sphere of radius sqrt(D).
    """
    z_rows, direction, distances = _check_edit_args(z_rows, direction, distances)
    z = np.broadcast_to(to_sphere_np(z_rows), (len(distances),) + z_rows.shape).copy()
    step = (distances / num_substeps)[:, None, None] * direction
    for _ in range(num_substeps):
        z = to_sphere_np(z + step)
    return z.astype(np.float32)


def slerp_rows(z0, z1, ts) -> np.ndarray:
    """Per-row spherical interpolation between two sets of rows on the sphere.

    Args:
      z0, z1: [L, D]; ts: [K] in [0, 1].
    Returns:
      [K, L, D] on the sphere of radius sqrt(D); nearly parallel rows fall back to lerp.
    """
    a, b = to_sphere_np(np.asarray(z0, np.float64)), to_sphere_np(np.asarray(z1, np.float64))
    if a.shape != b.shape:
        raise ValueError(f"cannot interpolate rows of shapes {a.shape} and {b.shape}")
    ts = np.asarray(ts, np.float64)[:, None, None]
    cos = np.clip(np.sum(a * b, axis=-1, keepdims=True) / a.shape[-1], -1.0, 1.0)
    omega = np.arccos(cos)[None]
    sin = np.sin(omega)
    safe = np.where(sin < 1e-6, 1.0, sin)
    slerp = (np.sin((1 - ts) * omega) * a + np.sin(ts * omega) * b) / safe
    lerp = (1 - ts) * a + ts * b
    return to_sphere_np(np.where(sin < 1e-6, lerp, slerp)).astype(np.float32)


def lerp(a, b, ts) -> np.ndarray:
    """(1 - t) a + t b for each t: [K, *a.shape]."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape != b.shape:
        raise ValueError(f"cannot interpolate codes of shapes {a.shape} and {b.shape}")
    ts = np.asarray(ts, np.float32).reshape((-1,) + (1,) * a.ndim)
    return (1 - ts) * a + ts * b


def linear_path(w, direction, distances) -> np.ndarray:
    """w + d * direction for each distance d: [K, *w.shape]. direction: [D] or w's shape."""
    w, direction, distances = _check_edit_args(w, direction, distances)
    return (w[None] + distances.reshape((-1,) + (1,) * w.ndim) * direction).astype(np.float32)


def zspace_principal_directions(z, w, k: int):
    """GANSpace-style principal directions for Z: PCA of mapped samples w, then the Z direction of
    component i is the least-squares regression of z on the PCA coordinates.

    Args:
      z: [N, D_z] samples; w: [N, D_w] their mapped codes; k: number of components.
    Returns:
      (directions [k, D_z] unit rows, stds [k] spread of the W coordinates, w_components [k, D_w]).
    """
    z, w = np.asarray(z, np.float64), np.asarray(w, np.float64)
    if z.ndim != 2 or w.ndim != 2 or len(z) != len(w):
        raise ValueError(f"z and w must be [N, D] with the same N, got {z.shape} and {w.shape}")
    if not 1 <= k <= min(len(w) - 1, w.shape[1]):
        raise ValueError(f"k must be in [1, {min(len(w) - 1, w.shape[1])}], got {k}")
    centred = w - w.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:k]
    coords = centred @ components.T  # [N, k]
    regression, *_ = np.linalg.lstsq(coords, z - z.mean(axis=0), rcond=None)  # [k, D_z]
    directions = regression / np.linalg.norm(regression, axis=1, keepdims=True)
    return (
        directions.astype(np.float32),
        coords.std(axis=0).astype(np.float32),
        components.astype(np.float32),
    )


def edit_path(space, variables: dict, direction, distances, num_substeps: int = 1000) -> list[dict]:
    """Variables of one result moved along `direction` to each distance, in the space's own way:
    Z/Z+ rows on the sphere, W/W+ linearly; everything else (F) unchanged.

    Args:
      space: the result's LatentSpace.
      variables: its variables (no batch axis).
      direction: [D] or the latent's shape.
      distances: [K].
    Returns:
      K variable dicts.
    """
    key = latent_key(variables)
    latent = np.asarray(variables[key])
    if key in SPHERE_KEYS:
        path = sphere_walk(latent.reshape(-1, latent.shape[-1]), direction, distances, num_substeps)
    else:
        path = linear_path(latent, direction, distances)
    return [{**variables, key: p.reshape(latent.shape)} for p in path]


def interpolation_path(variables_a: dict, variables_b: dict, ts) -> list[dict]:
    """From result a to result b (same space): slerp of Z/Z+ rows, lerp of W/W+ codes and of F."""
    key = latent_key(variables_a)
    if set(variables_a) != set(variables_b):
        raise ValueError(
            f"results of different spaces: {sorted(variables_a)} vs {sorted(variables_b)}"
        )
    a, b = np.asarray(variables_a[key]), np.asarray(variables_b[key])
    if key in SPHERE_KEYS:
        path = slerp_rows(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]), ts).reshape(
            (-1,) + a.shape
        )
    else:
        path = lerp(a, b, ts)
    others = {k: lerp(variables_a[k], variables_b[k], ts) for k in variables_a if k != key}
    return [{key: path[i], **{k: v[i] for k, v in others.items()}} for i in range(len(path))]


def to_sphere_np(z):
    """`spaces.to_sphere` in float64 numpy (host-side loops of many small steps)."""
    z = np.asarray(z, np.float64)
    return z / np.sqrt(np.mean(np.square(z), axis=-1, keepdims=True) + 1e-8)


def latent_key(variables: dict) -> str:
    """The name of the editable latent among a result's variables (z, zplus, w or wplus)."""
    keys = [k for k in SPHERE_KEYS + LINEAR_KEYS if k in variables]
    if len(keys) != 1:
        raise ValueError(
            f"cannot edit variables {sorted(variables)}: expected one of {SPHERE_KEYS + LINEAR_KEYS}"
        )
    return keys[0]


def _check_edit_args(rows, direction, distances):
    rows = np.asarray(rows, np.float32)
    direction = np.asarray(direction, np.float32)
    distances = np.atleast_1d(np.asarray(distances, np.float32))
    if direction.shape not in (rows.shape[-1:], rows.shape):
        raise ValueError(
            f"direction of shape {direction.shape} does not fit latents of shape {rows.shape}"
        )
    if not (
        np.all(np.isfinite(rows))
        and np.all(np.isfinite(direction))
        and np.all(np.isfinite(distances))
    ):
        raise ValueError("latents, direction and distances must be finite")
    return rows, direction, distances
