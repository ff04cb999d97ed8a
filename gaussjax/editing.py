"""Editing and interpolation of inversion results in their own latent space.

Z and Z+ rows live on the sphere of radius sqrt(z_dim) (the mapping's input PixelNorm), so they are
edited as Katsumata et al.'s public code does (papers note §2.2): a walk along a direction in many
small steps, each followed by re-projection onto the sphere (InterFaceGAN style), a single step
then re-projection (GANSpace style), and per-row slerp between two results. W and W+ codes edit and
interpolate linearly. F (F/Z+ and the F ablations) is held fixed when editing.

    saved = load_results("out/NAME.npz", fns, cfg)[0]
    path = edit_path(saved.space, saved.variables, direction, distances=np.linspace(-2, 2, 11))
    frames = render_variables(saved, params, path)

Everything here is host-side numpy: the paths are small and built once per edit. Sphere arithmetic
runs in float64 (a thousand re-projections accumulate float32 rounding); results are float32.
"""

import numpy as np

SPHERE_KEYS = ("z", "zplus")  # variables edited on the sphere
LINEAR_KEYS = ("w", "wplus")  # variables edited linearly
_PIXELNORM_EPS = 1e-8  # the mapping network's PixelNorm epsilon
_PARALLEL_SIN = 1e-6  # below this sin(angle) slerp divides by ~0: nearly (anti)parallel rows


def to_sphere(z) -> np.ndarray:
    """Rows onto the sphere of radius sqrt(D): the mapping's PixelNorm z / sqrt(mean(z²) + 1e-8).

    Args:
      z: [..., D].
    Returns:
      [..., D] float32.
    """
    return _to_sphere64(_finite(z, "z")).astype(np.float32)


def sphere_walk(z_rows, direction, distances, num_substeps: int = 1000) -> np.ndarray:
    """Walks rows on the sphere along a fixed `direction` to each distance, re-projecting after each
    of `num_substeps` equal sub-steps (Katsumata et al.'s approximate geodesic walk).

    Every distance starts from the normalised rows; all distances walk together (one loop over
    sub-steps on [K, L, D]). Distance 0 returns the normalised rows.

    Args:
      z_rows: [L, D] (any leading dims work).
      direction: [D] (every row) or [L, D].
      distances: [K] signed distances (ambient length walked, in units of the direction's length).
      num_substeps: sub-steps per walk (>= 1).
    Returns:
      [K, L, D] float32 rows on the sphere of radius sqrt(D).
    """
    z_rows, direction, distances = _check_edit_args(z_rows, direction, distances)
    if int(num_substeps) != num_substeps or num_substeps < 1:
        raise ValueError(f"num_substeps must be a positive integer, got {num_substeps}")
    z = np.broadcast_to(_to_sphere64(z_rows), distances.shape + z_rows.shape).copy()
    step = _per_distance(distances / num_substeps, z_rows.ndim) * direction
    for _ in range(int(num_substeps)):
        z += step
        z /= np.sqrt(np.mean(np.square(z), axis=-1, keepdims=True) + _PIXELNORM_EPS)  # in place
    return z.astype(np.float32)


def sphere_shift(z_rows, direction, distances, scale: float = 1.0) -> np.ndarray:
    """GANSpace-style edit on the sphere: one step z + d * scale * direction, then re-projection.

    Args:
      z_rows: [L, D] (any leading dims work); normalised first, as in `sphere_walk`.
      direction: [D] (every row) or [L, D].
      distances: [K] signed distances.
      scale: multiplies every distance, e.g. the component's standard deviation σ_k.
    Returns:
      [K, L, D] float32 rows on the sphere of radius sqrt(D).
    """
    z_rows, direction, distances = _check_edit_args(z_rows, direction, distances)
    if not np.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale}")
    shift = _per_distance(distances * scale, z_rows.ndim) * direction
    return _to_sphere64(_to_sphere64(z_rows)[None] + shift).astype(np.float32)


def slerp_rows(z0, z1, ts) -> np.ndarray:
    """Per-row spherical linear interpolation between two sets of rows, after normalising both.

    Nearly parallel rows fall back to lerp + re-projection (same result, no division by ~0).

    Args:
      z0, z1: [L, D] (any leading dims work, the same for both).
      ts: [K] fractions, 0 -> z0, 1 -> z1.
    Returns:
      [K, L, D] float32 rows on the sphere of radius sqrt(D).
    Raises:
      ValueError: also for exactly opposite rows (no unique great circle between them).
    """
    a, b = _finite(z0, "z0"), _finite(z1, "z1")
    if a.shape != b.shape:
        raise ValueError(f"cannot interpolate rows of shapes {a.shape} and {b.shape}")
    a, b = _to_sphere64(a), _to_sphere64(b)
    ts = _per_distance(_vector(ts, "ts"), a.ndim)
    # Exact norms, not sqrt(D): PixelNorm's eps leaves |a| slightly below sqrt(D).
    norms = np.linalg.norm(a, axis=-1, keepdims=True) * np.linalg.norm(b, axis=-1, keepdims=True)
    cos = np.clip(np.sum(a * b, axis=-1, keepdims=True) / np.maximum(norms, 1e-30), -1.0, 1.0)
    omega = np.arccos(cos)
    sin = np.sin(omega)
    nearly_parallel = sin < _PARALLEL_SIN
    if np.any(nearly_parallel & (cos < 0)):
        raise ValueError("cannot slerp between opposite rows: no unique great circle")
    safe_sin = np.where(nearly_parallel, 1.0, sin)
    slerp = (np.sin((1 - ts) * omega) * a + np.sin(ts * omega) * b) / safe_sin
    lerp_rows = (1 - ts) * a + ts * b
    return _to_sphere64(np.where(nearly_parallel, lerp_rows, slerp)).astype(np.float32)


def lerp(a, b, ts) -> np.ndarray:
    """(1 - t) a + t b for each t (W/W+ codes, F).

    Args:
      a, b: arrays of the same shape S.
      ts: [K] fractions.
    Returns:
      [K, *S] float32.
    """
    a, b = _finite(a, "a"), _finite(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"cannot interpolate codes of shapes {a.shape} and {b.shape}")
    ts = _per_distance(_vector(ts, "ts"), a.ndim)
    return ((1 - ts) * a + ts * b).astype(np.float32)


def linear_path(w, direction, distances) -> np.ndarray:
    """w + d * direction for each distance d (W/W+ edits).

    Args:
      w: [..., D].
      direction: [D] or w's shape.
      distances: [K].
    Returns:
      [K, *w.shape] float32.
    """
    w, direction, distances = _check_edit_args(w, direction, distances)
    return (w[None] + _per_distance(distances, w.ndim) * direction).astype(np.float32)


def zspace_principal_directions(z, w, k: int):
    """GANSpace-style principal directions for Z: PCA of mapped samples w, then the Z direction of
    component i is the least-squares regression of z on the PCA coordinates (z ≈ c B), row-normalised.

    Component signs are fixed (largest-magnitude entry of each W component positive), so repeated
    runs and different BLAS builds agree.

    Args:
      z: [N, D_z] samples; w: [N, D_w] their mapped codes; k: number of components.
    Returns:
      (directions [k, D_z] unit rows, stds [k] standard deviations of the W coordinates,
      w_components [k, D_w] orthonormal rows), all float32.
    """
    z, w = _finite(z, "z"), _finite(w, "w")
    if z.ndim != 2 or w.ndim != 2 or len(z) != len(w):
        raise ValueError(f"z and w must be [N, D] with the same N, got {z.shape} and {w.shape}")
    max_k = min(len(w) - 1, w.shape[1])
    if int(k) != k or not 1 <= k <= max_k:
        raise ValueError(f"k must be an integer in [1, {max_k}], got {k}")
    centred = w - w.mean(axis=0)
    _, singular_values, vt = np.linalg.svd(centred, full_matrices=False)
    if singular_values[k - 1] <= 1e-6 * singular_values[0]:
        rank = int(np.sum(singular_values > 1e-6 * singular_values[0]))
        raise ValueError(f"k={k} exceeds the {rank} non-degenerate principal components of w")
    components = _with_fixed_signs(vt[: int(k)])
    coords = centred @ components.T  # [N, k]
    regression, *_ = np.linalg.lstsq(coords, z - z.mean(axis=0), rcond=None)  # [k, D_z]
    norms = np.linalg.norm(regression, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("a principal coordinate of w is uncorrelated with z: no Z direction")
    return (
        (regression / norms).astype(np.float32),
        coords.std(axis=0).astype(np.float32),
        components.astype(np.float32),
    )


def edit_path(space, variables: dict, direction, distances, num_substeps: int = 1000) -> list[dict]:
    """Variables of one result moved along `direction` to each distance, in the space's own way:
    Z/Z+ rows by `sphere_walk`, W/W+ by `linear_path`; everything else (F) unchanged.

    Args:
      space: the result's LatentSpace (unused: the latent's name decides).
      variables: its variables (no batch axis).
      direction: [D] or the latent's shape.
      distances: [K].
    Returns:
      K variable dicts.
    """
    del space
    key = latent_key(variables)
    latent = np.asarray(variables[key])
    if key in SPHERE_KEYS:
        path = sphere_walk(latent.reshape(-1, latent.shape[-1]), direction, distances, num_substeps)
    else:
        path = linear_path(latent, direction, distances)
    return [{**variables, key: p.reshape(latent.shape)} for p in path]


def interpolation_path(variables_a: dict, variables_b: dict, ts) -> list[dict]:
    """From result a to result b (same space): slerp of Z/Z+ rows, lerp of W/W+ codes and of F.

    Returns:
      len(ts) variable dicts.
    """
    key = latent_key(variables_a)
    if set(variables_a) != set(variables_b):
        raise ValueError(
            f"results of different spaces: {sorted(variables_a)} vs {sorted(variables_b)}"
        )
    a, b = np.asarray(variables_a[key]), np.asarray(variables_b[key])
    path = slerp_rows(a, b, ts) if key in SPHERE_KEYS else lerp(a, b, ts)
    others = {k: lerp(variables_a[k], variables_b[k], ts) for k in variables_a if k != key}
    return [{key: path[i], **{k: v[i] for k, v in others.items()}} for i in range(len(path))]


def latent_key(variables: dict) -> str:
    """The name of the editable latent among a result's variables (z, zplus, w or wplus)."""
    keys = [k for k in SPHERE_KEYS + LINEAR_KEYS if k in variables]
    if len(keys) != 1:
        raise ValueError(
            f"cannot edit variables {sorted(variables)}: expected one of {SPHERE_KEYS + LINEAR_KEYS}"
        )
    return keys[0]


def _to_sphere64(z) -> np.ndarray:
    z = np.asarray(z, np.float64)
    return z / np.sqrt(np.mean(np.square(z), axis=-1, keepdims=True) + _PIXELNORM_EPS)


def _with_fixed_signs(rows) -> np.ndarray:
    """Each row times the sign of its largest-magnitude entry (SVD signs are arbitrary)."""
    largest = rows[np.arange(len(rows)), np.argmax(np.abs(rows), axis=1)]
    return rows * np.sign(largest)[:, None]


def _per_distance(values, ndim: int) -> np.ndarray:
    """[K] -> [K, 1, ..., 1] broadcasting against a stack of K latents of `ndim` dims."""
    return values.reshape((-1,) + (1,) * ndim)


def _finite(x, name: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite (it has NaN or inf)")
    return x


def _vector(x, name: str) -> np.ndarray:
    x = _finite(np.atleast_1d(x), name)
    if x.ndim != 1:
        raise ValueError(f"{name} must be a scalar or a 1-D list, got shape {x.shape}")
    return x


def _check_edit_args(rows, direction, distances):
    rows, direction = _finite(rows, "latents"), _finite(direction, "direction")
    distances = _vector(distances, "distances")
    if rows.ndim == 0 or direction.shape not in (rows.shape[-1:], rows.shape):
        raise ValueError(
            f"direction of shape {direction.shape} does not fit latents of shape {rows.shape}"
        )
    return rows, direction, distances
