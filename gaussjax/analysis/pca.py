"""PCA of the Gaussianized latent, log compression of large coefficients, and truncation.

Wulff & Torralba (papers note §1.6) express Gaussianized latents v = LeakyReLU_5(w) in the
principal-component basis of the prior's Σ, find that images with artifacts have very large
coefficients, and compress those logarithmically instead of truncating towards the mean. With
Σ = E diag(λ) Eᵀ (eigenvalues in descending order), the whitened coefficients of a latent are

    c = Eᵀ (v − μ) / sqrt(λ),   v = μ + E (sqrt(λ) · c),   w = degaussianize(v),

so c ~ N(0, I) under the prior. The paper's compression formula, its threshold, the components it
is applied to and whether it works in whitened units are all unknown ([NF]). **Our choice**, a
guess labelled as such: in whitened units, for the first K components (all by default),

    c ↦ sign(c) · (τ + log(1 + |c| − τ))   where |c| > τ,   c unchanged where |c| <= τ,

which is continuous and has slope 1 at |c| = τ, and is strictly increasing. Truncation
(w ↦ w̄ + ψ (w − w̄), rows < cutoff) is here for comparison. Everything works on W latents [N, D]
and on W+ latents [N, L, D] (row by row: the same μ, Σ serve every layer). Pure and jit-able.

    pca = load_pca("prior.npz")
    compressed = compress_latents(pca, ws, tau=2.0)          # [N, L, D] -> [N, L, D]
    truncated = truncate(ws, pca.mean_w, psi=0.7)
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from gaussjax.analysis.gaussianize import degaussianize, gaussianize
from gaussjax.analysis.prior import load_prior


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["mean", "components", "eigenvalues", "mean_w"],
    meta_fields=["negative_slope"],
)
@dataclasses.dataclass(frozen=True)
class LatentPCA:
    """The principal components of the Gaussianized latent. A pytree (arrays are leaves).

    Attributes:
      mean: [D] float32, μ of v.
      components: [D, D] float32, E: column k is the k-th principal direction.
      eigenvalues: [D] float32, λ in descending order (floored, see `make_pca`).
      mean_w: [D] float32, the mean of w itself: the centre truncation pulls towards.
      negative_slope: slope of the mapping network's last activation (static).
    """

    mean: jax.Array
    components: jax.Array
    eigenvalues: jax.Array
    mean_w: jax.Array
    negative_slope: float = 0.2


def make_pca(mean, cov, mean_w, negative_slope: float, floor: float = 1e-6) -> LatentPCA:
    """Eigendecomposes Σ in float64 (eigenvalues descending).

    A real mapping network's Σ is near-singular, so the smallest eigenvalues can round to ~0 or
    slightly below. They are floored at `floor` · (tr Σ / D), the same relative ridge as
    `prior.make_prior`, so whitening never divides by zero.

    Args:
      mean: [D] μ of v. cov: [D, D] Σ of v. mean_w: [D] mean of w.
      negative_slope: the mapping network's last activation slope.
      floor: smallest eigenvalue, as a fraction of the mean variance.
    """
    cov = np.asarray(cov, np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or not np.all(np.isfinite(cov)):
        raise ValueError(f"cov must be a finite [D, D] matrix, got shape {cov.shape}")
    eigenvalues, vectors = np.linalg.eigh(0.5 * (cov + cov.T))
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues = np.maximum(eigenvalues[order], floor * np.trace(cov) / len(cov))
    as32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    return LatentPCA(
        as32(mean), as32(vectors[:, order]), as32(eigenvalues), as32(mean_w), float(negative_slope)
    )


def load_pca(path, expected_fingerprint: str | None = None) -> LatentPCA:
    """The PCA of a prior file written by `prior.save_prior` (checked as `load_prior` checks it)."""
    _, stats = load_prior(path, expected_fingerprint)
    return make_pca(stats.mean, stats.cov, stats.mean_w, stats.negative_slope)


def to_coefficients(pca: LatentPCA, w: jax.Array) -> jax.Array:
    """Whitened PC coefficients c = Eᵀ(v − μ)/sqrt(λ) of latents w [..., D] -> [..., D]."""
    centred = gaussianize(w, pca.negative_slope) - pca.mean
    return (centred @ pca.components) / jnp.sqrt(pca.eigenvalues)


def from_coefficients(pca: LatentPCA, c: jax.Array) -> jax.Array:
    """The inverse of `to_coefficients`: c [..., D] -> w [..., D]."""
    v = pca.mean + (c * jnp.sqrt(pca.eigenvalues)) @ pca.components.T
    return degaussianize(v, pca.negative_slope)


def component_mask(dim: int, num_components: int | None) -> jax.Array:
    """[D] bool: the first `num_components` (leading) components, or all of them for None."""
    if num_components is None:
        return jnp.ones((dim,), bool)
    return jnp.arange(dim) < num_components


def log_compress(c: jax.Array, tau: float, num_components: int | None = None) -> jax.Array:
    """Our log compression of coefficients beyond τ (see the module docstring; [NF] in the paper).

    Args:
      c: [..., D] whitened coefficients.
      tau: threshold (> 0) in standard deviations; |c| <= τ is left unchanged.
      num_components: compress only the first K components (None: all).

    Returns:
      [..., D] compressed coefficients.
    """
    magnitude = jnp.abs(c)
    compressed = jnp.sign(c) * (tau + jnp.log1p(jnp.maximum(magnitude - tau, 0.0)))
    apply = (magnitude > tau) & component_mask(c.shape[-1], num_components)
    return jnp.where(apply, compressed, c)


def compress_latents(
    pca: LatentPCA, w: jax.Array, tau: float, num_components: int | None = None
) -> jax.Array:
    """Latents w [N, D] or [N, L, D] with their large PC coefficients log-compressed (row by row)."""
    return from_coefficients(pca, log_compress(to_coefficients(pca, w), tau, num_components))


def truncate(w: jax.Array, mean_w: jax.Array, psi: float, cutoff: int | None = None) -> jax.Array:
    """The truncation trick w̄ + ψ (w − w̄), as the official mapping network applies it.

    Args:
      w: [N, D] (W) or [N, L, D] (W+) latents.
      mean_w: [D] w̄.
      psi: 1 leaves w unchanged, 0 gives w̄.
      cutoff: W+ only: truncate rows < cutoff (None: every row).
    """
    # Written as w + (ψ − 1)(w − w̄) so that ψ = 1 returns w bit for bit, even under jit.
    truncated = w + (psi - 1.0) * (w - mean_w)
    if cutoff is None or w.ndim == 2:
        return truncated
    rows = (jnp.arange(w.shape[1]) < cutoff)[None, :, None]
    return jnp.where(rows, truncated, w)


def outlier_scores(c: jax.Array, num_components: int | None = None) -> jax.Array:
    """The largest |c_k| over the chosen components (and over the rows of W+): [N, (L,) D] -> [N]."""
    masked = jnp.where(component_mask(c.shape[-1], num_components), jnp.abs(c), 0.0)
    return masked.reshape(c.shape[0], -1).max(axis=1)
