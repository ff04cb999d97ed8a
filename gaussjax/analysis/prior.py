"""The Gaussian latent prior of Wulff & Torralba (papers note §1.3-1.4): fit, energy, files.

The mapping network's output w becomes close to Gaussian after `gaussianize` (v = LeakyReLU_5(w)).
A prior is then the mean μ and covariance Σ of v over mapping samples, and the prior term of an
inversion is the Mahalanobis energy

    E(w) = (v − μ)ᵀ Σ⁻¹ (v − μ) = ||L⁻¹ (v − μ)||²,   Σ + ridge = L Lᵀ,

summed over the layers of a W+ latent (one μ, Σ shared by every layer).

Typical use:

    stats = fit_generator_prior(fns, params, cfg, num_samples=100_000, seed=0)
    save_prior("prior.npz", stats, generator_fingerprint)
    prior, stats = load_prior("prior.npz", expected_fingerprint=generator_fingerprint)
    energy = prior_energy(prior, ws)                  # [N]
"""

import dataclasses
import functools
import hashlib
import io
import math
import pathlib
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gaussjax.analysis.gaussianize import gaussianize
from gaussjax.files.checkpoints import FINGERPRINT_KEY
from gaussjax.files.safe_io import read_npz, write_bytes_atomic
from gaussjax.networks.config import GeneratorConfig

# Keys of a fitted prior's npz (PriorStats fields; `save_prior` adds the generator fingerprint).
PRIOR_KEYS = (
    "mean",
    "cov",
    "num_samples",
    "negative_slope",
    "seed",
    "class_idx",
    "w_std",
    "mean_w",
    "skew_w",
    "kurt_w",
    "skew_v",
    "kurt_v",
)
_VECTOR_KEYS = ("mean_w", "skew_w", "kurt_w", "skew_v", "kurt_v")  # each [D]
_SCALAR_TYPES = {
    "num_samples": int,
    "seed": int,
    "class_idx": int,
    "negative_slope": float,
    "w_std": float,
    FINGERPRINT_KEY: str,
}


@dataclasses.dataclass(frozen=True)
class PriorStats:
    """The statistics of a fitted (or loaded) prior: what prior.npz holds, one field per key.

    Frozen so that a loaded prior cannot drift from its file; the arrays are float64 as fitted
    (a prior made elsewhere keeps the dtype it was saved with).

    Attributes:
      mean: [D] μ of v = gaussianize(w).
      cov: [D, D] Σ of v.
      negative_slope: the slope gaussianize undoes (0.2 for StyleGAN2).
      mean_w: [D] mean of w itself (the official projector's starting point).
      w_std: RMS distance of w from mean_w (the official projector's latent-noise scale).
      num_samples: mapping samples the fit used; None for a prior made elsewhere.
      seed: the fit's PRNG seed; None for a prior made elsewhere.
      class_idx: the class the fit conditioned on, -1 for the marginal or an unconditional
        generator; None for a prior made elsewhere.
      generator_fingerprint: the generator it was fitted on; None: not checked.
      skew_w: [D] per-dimension skewness of w (a diagnostic; None for a prior made elsewhere).
      kurt_w: [D] per-dimension excess kurtosis of w (likewise).
      skew_v: [D] per-dimension skewness of v (likewise).
      kurt_v: [D] per-dimension excess kurtosis of v (likewise).
    """

    mean: np.ndarray
    cov: np.ndarray
    negative_slope: float
    mean_w: np.ndarray
    w_std: float
    num_samples: int | None = None
    seed: int | None = None
    class_idx: int | None = None
    generator_fingerprint: str | None = None
    skew_w: np.ndarray | None = None
    kurt_w: np.ndarray | None = None
    skew_v: np.ndarray | None = None
    kurt_v: np.ndarray | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """The npz content: PRIOR_KEYS and the fingerprint; refuses a record with one missing."""
        missing = [k for k in (*PRIOR_KEYS, FINGERPRINT_KEY) if getattr(self, k) is None]
        if missing:
            raise ValueError(f"cannot save prior: stats lack keys {missing}")
        return {k: np.asarray(getattr(self, k)) for k in (*PRIOR_KEYS, FINGERPRINT_KEY)}


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["mean", "scale_tril"],
    meta_fields=["negative_slope"],
)
@dataclasses.dataclass(frozen=True)
class GaussianPrior:
    """A Gaussian N(μ, Σ) over Gaussianized latents v = gaussianize(w, negative_slope).

    A pytree: `mean` and `scale_tril` are leaves, so a prior can be passed into jitted code;
    `negative_slope` is static.

    Attributes:
      mean: [D] float32, μ.
      scale_tril: [D, D] float32, the lower Cholesky factor L of Σ + ridge (see `make_prior`).
      negative_slope: slope of the mapping network's last activation, undone by `gaussianize`.
    """

    mean: jax.Array
    scale_tril: jax.Array
    negative_slope: float = 0.2


def prior_energy(prior: GaussianPrior, w: jax.Array) -> jax.Array:
    """The Mahalanobis energy (v − μ)ᵀ Σ⁻¹ (v − μ) of latents, v = gaussianize(w).

    Pure and jittable. Σ⁻¹ is applied as two triangular solves with L, never as an explicit
    inverse, which would lose precision on the near-singular Σ of a real mapping network.

    Args:
      prior: the prior (μ [D], L [D, D]).
      w: [N, D] (W) or [N, L, D] (W+) latents.

    Returns:
      [N] energies; for W+ the sum over the L layer vectors, all scored under the same μ, Σ.
    """
    if w.ndim not in (2, 3) or w.shape[-1] != prior.mean.shape[-1]:
        raise ValueError(
            f"w must be [N, {prior.mean.shape[-1]}] or [N, L, {prior.mean.shape[-1]}], "
            f"got {w.shape}"
        )
    centred = gaussianize(w, prior.negative_slope) - prior.mean
    flat = centred.reshape(-1, centred.shape[-1])
    # ||L⁻¹ d||² = dᵀ (L Lᵀ)⁻¹ d; the solve takes the D x M right-hand sides column-wise.
    white = jax.scipy.linalg.solve_triangular(prior.scale_tril, flat.T, lower=True)
    energy = jnp.sum(jnp.square(white), axis=0).reshape(centred.shape[:-1])
    return energy.sum(axis=1) if w.ndim == 3 else energy


def energy_per_dimension(prior: GaussianPrior, w: jax.Array) -> jax.Array:
    """`prior_energy` of W+ latents [N, K, D] divided by K D: [N], ~1 for codes the prior
    describes, whatever K and D."""
    return prior_energy(prior, w) / (w.shape[1] * w.shape[2])


def loss_energy(prior: GaussianPrior, rows: jax.Array, scale: str) -> jax.Array:
    """The prior term of one image's loss from the K W rows [K, D] it is scored on: the energy
    summed over rows ("sum", the paper's) or per latent dimension and row ("mean":
    `energy_per_dimension`, so a weight λ means the same on every generator)."""
    if scale == "mean":
        return energy_per_dimension(prior, rows[None])[0]
    return prior_energy(prior, rows[None])[0]


def covariance_id(cov) -> str:
    """16 hex digits naming a prior by its covariance [D, D] (recorded in the runs using it)."""
    return hashlib.sha256(np.asarray(cov, np.float64).tobytes()).hexdigest()[:16]


def make_prior(mean, cov, negative_slope: float, ridge: float = 1e-6) -> GaussianPrior:
    """Builds a GaussianPrior from μ and Σ, factorising Σ + ridge · (tr Σ / D) · I in float64.

    The covariance of a real mapping network can be near-singular: w lives close to a
    lower-dimensional set, so the smallest eigenvalues of Σ are tiny or, after rounding, slightly
    negative, and a plain Cholesky fails or amplifies noise. The ridge is relative to the mean
    variance tr Σ / D, so the same value works whatever the scale of the latents.

    Args:
      mean: [D] μ.
      cov: [D, D] Σ (symmetric positive semi-definite).
      negative_slope: the mapping network's last activation slope (stored in the prior).
      ridge: added variance, as a fraction of the mean variance.

    Returns:
      The prior with float32 μ and L.

    Raises:
      ValueError: bad shapes, a non-finite or zero covariance, or Σ + ridge not positive definite.
    """
    mean, cov = np.asarray(mean, np.float64), np.asarray(cov, np.float64)
    dim = mean.shape[0] if mean.ndim == 1 else -1
    if mean.ndim != 1 or cov.shape != (dim, dim):
        raise ValueError(f"mean must be [D] and cov [D, D], got {mean.shape} and {cov.shape}")
    mean_var = np.trace(cov) / dim
    if not (np.all(np.isfinite(cov)) and np.all(np.isfinite(mean)) and mean_var > 0):
        raise ValueError("the prior's mean/covariance is non-finite or has zero variance")
    # Symmetrise: a Σ read back from a file or accumulated in float can be off by rounding.
    regularised = 0.5 * (cov + cov.T) + ridge * mean_var * np.eye(dim)
    try:
        scale_tril = np.linalg.cholesky(regularised)
    except np.linalg.LinAlgError as e:
        raise ValueError(
            f"the prior covariance is not positive definite even with ridge={ridge}: "
            f"increase the ridge (e.g. ridge={max(ridge * 100, 1e-6):g})"
        ) from e
    return GaussianPrior(
        jnp.asarray(mean, jnp.float32), jnp.asarray(scale_tril, jnp.float32), float(negative_slope)
    )


class _Moments(NamedTuple):
    """Centred moment sums of n samples: mean [D], Σ (x−mean)(x−mean)ᵀ [D, D], Σ (x−mean)^3, ^4 [D]."""

    count: float
    mean: np.ndarray
    cross: np.ndarray
    m3: np.ndarray
    m4: np.ndarray


def _batch_moments(x: np.ndarray) -> _Moments:
    """Moments of one batch x [B, D], centred on the batch's own mean (exact for large offsets)."""
    mean = x.mean(axis=0)
    y = x - mean
    y2 = y * y
    return _Moments(float(len(x)), mean, y.T @ y, (y2 * y).sum(axis=0), (y2 * y2).sum(axis=0))


def _merge_moments(a: _Moments, b: _Moments) -> _Moments:
    """Moments of the union of two sample sets (Chan et al. 1979; Pébay 2008 for orders 3 and 4)."""
    n = a.count + b.count
    delta = b.mean - a.mean
    d_n = delta / n
    ab = a.count * b.count
    var_a, var_b = np.diag(a.cross), np.diag(b.cross)
    cross = a.cross + b.cross + np.outer(delta, delta) * (ab / n)
    m3 = (
        a.m3
        + b.m3
        + delta * d_n * d_n * ab * (a.count - b.count)
        + 3 * d_n * (a.count * var_b - b.count * var_a)
    )
    m4 = (
        a.m4
        + b.m4
        + delta * d_n**3 * ab * (a.count**2 - ab + b.count**2)
        + 6 * d_n * d_n * (a.count**2 * var_b + b.count**2 * var_a)
        + 4 * d_n * (a.count * b.m3 - b.count * a.m3)
    )
    return _Moments(n, a.mean + delta * (b.count / n), cross, m3, m4)


class MomentAccumulator:
    """Streaming mean, covariance, skewness and kurtosis of [B, D] batches, in float64.

    Memory is O(D²) whatever the number of samples. Each batch is centred on its own mean and
    merged with the pairwise update of Chan et al., so a large common offset (e.g. float32 data
    with mean 1e3 and unit variance) costs no precision, unlike raw power sums.
    """

    def __init__(self):
        self._moments: _Moments | None = None

    def update(self, x: np.ndarray) -> None:
        """Adds the samples x [B, D] (any float dtype; computed in float64)."""
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or (self._moments is not None and x.shape[1] != len(self._moments.mean)):
            raise ValueError(f"expected a [B, D] batch with a fixed D, got shape {x.shape}")
        if len(x) == 0:
            return
        batch = _batch_moments(x)
        self._moments = batch if self._moments is None else _merge_moments(self._moments, batch)

    @property
    def count(self) -> int:
        return 0 if self._moments is None else int(self._moments.count)

    def _require(self, n: int) -> _Moments:
        if self.count < n:
            raise ValueError(f"need at least {n} samples, have {self.count}")
        return self._moments

    @property
    def mean(self) -> np.ndarray:
        """[D] sample mean."""
        return self._require(1).mean.copy()

    @property
    def cov(self) -> np.ndarray:
        """[D, D] unbiased sample covariance (divides by N − 1, like np.cov)."""
        m = self._require(2)
        return m.cross / (m.count - 1)

    @property
    def skewness(self) -> np.ndarray:
        """[D] sample skewness m3 / m2^1.5 (population moments; NaN for a constant dimension)."""
        m = self._require(2)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (m.m3 / m.count) / (np.diag(m.cross) / m.count) ** 1.5

    @property
    def excess_kurtosis(self) -> np.ndarray:
        """[D] sample excess kurtosis m4 / m2² − 3 (0 for a Gaussian; NaN for a constant dimension)."""
        m = self._require(2)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (m.m4 / m.count) / (np.diag(m.cross) / m.count) ** 2 - 3.0


def _class_labels(keys: jax.Array, cfg: GeneratorConfig, class_idx: int | None) -> jax.Array | None:
    """One-hot labels [N, c_dim] (class_idx, or uniform per-sample draws when None); None if c_dim = 0."""
    if cfg.c_dim == 0:
        return None
    if class_idx is not None:
        return jnp.asarray(cfg.class_labels(class_idx, len(keys)))
    c_dim = cfg.c_dim
    classes = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 1), (), 0, c_dim))(keys)
    return jax.nn.one_hot(classes, c_dim, dtype=jnp.float32)


@functools.partial(jax.jit, static_argnames=("fns", "cfg", "chunk_size", "class_idx"))
def _sample_chunk(params, key, start, *, fns, cfg: GeneratorConfig, chunk_size: int, class_idx):
    """(w, v) [chunk_size, w_dim] for samples start, start+1, ... (start is traced: one compile)."""
    # One key per sample index, so sample i is the same whatever the chunking.
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(start + jnp.arange(chunk_size))
    z = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 0), (cfg.z_dim,)))(keys)
    w = fns.mapping(params, z, _class_labels(keys, cfg, class_idx))[:, 0]
    return w, gaussianize(w, cfg.mapping_negative_slope)


def _host_chunks(sample: Callable, num_samples: int, chunk_size: int):
    """Yields (w, v) numpy chunks, padding dropped. Chunk i+1 is dispatched before chunk i is
    copied to the host, so the device maps while the host accumulates."""
    pending = None
    for start in range(0, num_samples, chunk_size):
        ahead = (min(chunk_size, num_samples - start), sample(start))
        if pending is not None:
            yield tuple(np.asarray(a)[: pending[0]] for a in pending[1])
        pending = ahead
    yield tuple(np.asarray(a)[: pending[0]] for a in pending[1])


def _check_fit_args(cfg: GeneratorConfig, num_samples: int, chunk_size: int, class_idx) -> None:
    if num_samples < 2 or chunk_size < 1:
        raise ValueError(
            f"need num_samples >= 2 and chunk_size >= 1, got {num_samples} and {chunk_size}"
        )
    if not cfg.mapping_negative_slope > 0:
        raise ValueError(
            f"the mapping network ends with {cfg.mapping_activation!r}, which the "
            "Gaussianizing transform cannot undo"
        )
    if class_idx is not None and cfg.c_dim == 0:
        raise ValueError("class_idx given, but the generator is unconditional")
    if class_idx is not None and not 0 <= class_idx < cfg.c_dim:
        raise ValueError(f"class_idx must be in [0, {cfg.c_dim}), got {class_idx}")


def fit_generator_prior(
    fns,
    params,
    cfg: GeneratorConfig,
    *,
    num_samples: int,
    seed: int,
    chunk_size: int = 4096,
    class_idx: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PriorStats:
    """Fits μ, Σ of v = gaussianize(w) over mapping samples w = mapping(z)[:, 0], z ~ N(0, I).

    Sample i uses the key fold_in(key(seed), i), so w (and hence μ, Σ) does not depend on
    chunk_size up to float32 matmul and float64 summation rounding; same seed, num_samples and
    chunk_size give bit-identical results. The last chunk is padded to chunk_size (one compile)
    and the padding dropped.

    Args:
      fns, params: `PureGenerator.split(G)`.
      cfg: the generator's config.
      num_samples: number of mapping samples (>= 2).
      seed: random seed for z (and the classes).
      chunk_size: samples per jitted mapping call.
      class_idx: conditional generators only: fit class K (one-hot K for every sample); None fits
        the marginal over classes, each sample's class drawn uniformly at random.
      progress: called as progress(done, total) after each chunk.

    Returns:
      PriorStats with every field but generator_fingerprint (`save_prior` stamps it).
    """
    _check_fit_args(cfg, num_samples, chunk_size, class_idx)
    sample = functools.partial(
        _sample_chunk,
        params,
        jax.random.key(seed),
        fns=fns,
        cfg=cfg,
        chunk_size=chunk_size,
        class_idx=class_idx,
    )
    acc_w, acc_v = MomentAccumulator(), MomentAccumulator()
    for w, v in _host_chunks(sample, num_samples, chunk_size):
        acc_w.update(w)
        acc_v.update(v)
        if progress is not None:
            progress(acc_w.count, num_samples)
    return PriorStats(
        mean=acc_v.mean,
        cov=acc_v.cov,
        negative_slope=cfg.mapping_negative_slope,
        # The official projector's starting point and latent-noise scale: mean of w and the
        # RMS distance of w from it.
        mean_w=acc_w.mean,
        w_std=float(np.sqrt(np.trace(acc_w.cov) * (num_samples - 1) / num_samples)),
        num_samples=num_samples,
        seed=seed,
        class_idx=-1 if class_idx is None else class_idx,
        skew_w=acc_w.skewness,
        kurt_w=acc_w.excess_kurtosis,
        skew_v=acc_v.skewness,
        kurt_v=acc_v.excess_kurtosis,
    )


def gaussianity_summary(stats: PriorStats) -> str:
    """Human-readable lines comparing the per-dimension non-Gaussianity of w and v (0 = Gaussian).

    Args:
      stats: a fitted PriorStats (its skew_w, kurt_w, skew_v, kurt_v [D] and num_samples).

    Returns:
      A few lines of text, without a trailing newline.
    """
    rows = (
        ("median |skewness|", "skew", 50),
        ("median |excess kurtosis|", "kurt", 50),
        ("90th pct |excess kurtosis|", "kurt", 90),
    )
    dim = len(stats.skew_w)
    lines = [
        f"Gaussianity over {stats.num_samples} samples, D={dim} (0 = Gaussian):",
        f"  {'':28s}{'w':>9s}{'v':>9s}",
    ]
    for label, name, pct in rows:
        w_val, v_val = (np.nanpercentile(np.abs(getattr(stats, f"{name}_{s}")), pct) for s in "wv")
        lines.append(f"  {label:28s}{w_val:9.3f}{v_val:9.3f}")
    return "\n".join(lines)


def save_prior(path, stats: PriorStats, generator_fingerprint: str) -> None:
    """Writes a fitted prior (and the fingerprint of its generator) to an npz file, atomically.

    Args:
      path: destination file (written as given; no '.npz' is appended).
      stats: the PriorStats of `fit_generator_prior` (every field given).
      generator_fingerprint: `config.json`'s fingerprint of the generator the prior was fitted on.
    """
    stamped = dataclasses.replace(stats, generator_fingerprint=str(generator_fingerprint))
    buffer = io.BytesIO()
    np.savez(buffer, **stamped.arrays())
    write_bytes_atomic(path, buffer.getvalue())


# What a prior file must hold; the rest is filled in (`_complete_prior`), so a prior made
# elsewhere (only μ and Σ of v) loads too.
REQUIRED_KEYS = ("mean", "cov")
DEFAULT_NEGATIVE_SLOPE = 0.2  # StyleGAN2's mapping network


def _read_prior_file(path: pathlib.Path) -> PriorStats:
    """The PriorStats of a prior npz, or a one-line ValueError."""
    if not path.is_file():
        raise ValueError(f"{path}: no such prior file (make one with experiments.fit_prior)")
    stats = read_npz(path)
    missing = [k for k in REQUIRED_KEYS if k not in stats]
    if missing:
        raise ValueError(
            f"{path}: not a prior file, missing {missing} (a prior needs at least 'mean' [D] and "
            "'cov' [D, D] of v = LeakyReLU_5(w))"
        )
    dim = stats["mean"].shape[0] if stats["mean"].ndim == 1 else -1
    vectors = [k for k in _VECTOR_KEYS if k in stats]
    if stats["cov"].shape != (dim, dim) or any(stats[k].shape != (dim,) for k in vectors):
        raise ValueError(
            f"{path}: corrupt prior file (mean {stats['mean'].shape}, cov {stats['cov'].shape})"
        )
    for key, kind in _SCALAR_TYPES.items():
        if key in stats:
            stats[key] = kind(stats[key])
    return _complete_prior(stats)


def _complete_prior(stats: dict) -> PriorStats:
    """Fills what a bring-your-own prior may lack: negative_slope (0.2), mean_w and w_std (in
    closed form from μ, Σ), and None for the fit's provenance (num_samples, seed, class_idx,
    generator_fingerprint: a prior without one is not checked against the generator). The
    diagnostics (skew_*, kurt_*) stay None; other keys in the file are ignored."""
    stats = {"negative_slope": DEFAULT_NEGATIVE_SLOPE, **stats}
    if "mean_w" not in stats or "w_std" not in stats:
        mean_w, w_std = degaussianized_moments(stats["mean"], stats["cov"], stats["negative_slope"])
        stats = {"mean_w": mean_w, "w_std": w_std, **stats}
    known = {f.name for f in dataclasses.fields(PriorStats)}
    return PriorStats(**{k: v for k, v in stats.items() if k in known})


def degaussianized_moments(mean, cov, negative_slope: float) -> tuple[np.ndarray, float]:
    """Mean [D] and RMS spread sqrt(Σ_i Var w_i) (as `w_std`) of w = degaussianize(v) when
    v ~ N(mean, cov), coordinate by coordinate in closed form.

    With α = μ/σ, Φ, φ the normal cdf and pdf: E[v·1(v≥0)] = μΦ(α) + σφ(α) and
    E[v²·1(v≥0)] = (μ² + σ²)Φ(α) + μσφ(α); the negative half is the rest, scaled by the slope.
    """
    mu = np.asarray(mean, np.float64)
    sigma = np.sqrt(np.maximum(np.diag(np.asarray(cov, np.float64)), 1e-30))
    alpha = mu / sigma
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(alpha / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * alpha**2) / math.sqrt(2.0 * math.pi)
    pos1 = mu * cdf + sigma * pdf
    pos2 = (mu**2 + sigma**2) * cdf + mu * sigma * pdf
    mean_w = pos1 + negative_slope * (mu - pos1)
    second_w = pos2 + negative_slope**2 * (mu**2 + sigma**2 - pos2)
    return mean_w, float(np.sqrt(np.sum(np.maximum(second_w - mean_w**2, 0.0))))


def load_prior(
    path, expected_fingerprint: str | None = None, ridge: float = 1e-6
) -> tuple[GaussianPrior, PriorStats]:
    """Reads a prior written by `save_prior`.

    Args:
      path: the npz file.
      expected_fingerprint: if given, the fingerprint of the generator in use; a prior fitted on
        another generator is refused (a prior without a fingerprint is not checked).
      ridge: relative ridge for `make_prior`.

    Returns:
      (prior, stats): the GaussianPrior and the stored PriorStats (for a file holding only mean
      and cov, the rest as `_complete_prior` fills it in).

    Raises:
      ValueError: missing or unreadable file, no mean/cov, a fingerprint mismatch, or a covariance
        that cannot be factorised.
    """
    path = pathlib.Path(path)
    stats = _read_prior_file(path)
    stored = stats.generator_fingerprint
    if None not in (expected_fingerprint, stored) and stored != expected_fingerprint:
        raise ValueError(
            f"{path} was fitted for generator {stored}, but this generator is "
            f"{expected_fingerprint}: refit with experiments.fit_prior"
        )
    return make_prior(stats.mean, stats.cov, stats.negative_slope, ridge), stats
