"""PCA of the Gaussianized latent, log compression and truncation against closed forms."""

import math

import jax
import numpy as np
import pytest

from gaussjax.analysis import pca as pca_lib
from gaussjax.analysis import prior as prior_lib

DIM = 6


def random_gaussian(seed=0, dim=DIM):
    """(μ [D], Σ [D, D] SPD with spread-out eigenvalues)."""
    rs = np.random.RandomState(seed)
    q, _ = np.linalg.qr(rs.randn(dim, dim))
    cov = q @ np.diag(np.geomspace(4.0, 0.01, dim)) @ q.T
    return rs.randn(dim) * 0.3, cov


def make(seed=0):
    mean, cov = random_gaussian(seed)
    return pca_lib.make_pca(mean, cov, mean_w=np.full(DIM, 0.1), negative_slope=0.2), mean, cov


def test_components_diagonalise_the_covariance():
    pca, _, cov = make()
    e, lam = np.asarray(pca.components, np.float64), np.asarray(pca.eigenvalues, np.float64)
    np.testing.assert_allclose(e @ np.diag(lam) @ e.T, cov, atol=1e-5)
    np.testing.assert_allclose(e.T @ e, np.eye(DIM), atol=1e-6)
    assert np.all(np.diff(lam) <= 0), "eigenvalues must be in descending order"


@pytest.mark.parametrize("shape", [(5, DIM), (3, 4, DIM)], ids=["W", "W+"])
def test_round_trip_latents_to_coefficients(shape):
    pca, _, _ = make()
    w = np.random.RandomState(1).randn(*shape).astype(np.float32)  # both signs: both lrelu branches
    c = pca_lib.to_coefficients(pca, w)
    assert c.shape == shape
    np.testing.assert_allclose(pca_lib.from_coefficients(pca, c), w, atol=1e-5)


def test_coefficients_of_prior_samples_are_white():
    pca, mean, cov = make()
    v = np.random.RandomState(2).multivariate_normal(mean, cov, size=20000)
    w = np.where(v >= 0, v, 0.2 * v).astype(np.float32)
    c = np.asarray(pca_lib.to_coefficients(pca, w), np.float64)
    np.testing.assert_allclose(c.mean(axis=0), 0.0, atol=0.05)
    np.testing.assert_allclose(np.cov(c.T), np.eye(DIM), atol=0.05)


def test_load_pca_reads_a_prior_file(tmp_path):
    mean, cov = random_gaussian(3)
    diagnostics = {k: np.zeros(DIM) for k in ("skew_w", "kurt_w", "skew_v", "kurt_v")}
    stats = prior_lib.PriorStats(
        mean,
        cov,
        0.2,
        np.arange(DIM) * 0.1,
        1.0,
        num_samples=10,
        seed=0,
        class_idx=-1,
        **diagnostics,
    )
    prior_lib.save_prior(tmp_path / "prior.npz", stats, "fp")
    pca = pca_lib.load_pca(tmp_path / "prior.npz", expected_fingerprint="fp")
    np.testing.assert_allclose(pca.mean_w, stats.mean_w, atol=1e-7)
    np.testing.assert_allclose(
        np.sort(np.asarray(pca.eigenvalues))[::-1], np.linalg.eigvalsh(cov)[::-1], rtol=1e-5
    )
    with pytest.raises(ValueError, match="fitted for generator fp"):
        pca_lib.load_pca(tmp_path / "prior.npz", expected_fingerprint="other")


def test_singular_covariance_is_floored():
    cov = np.diag([1.0, 1.0, 0.0, -1e-12])
    pca = pca_lib.make_pca(np.zeros(4), cov, np.zeros(4), 0.2)
    assert float(pca.eigenvalues.min()) == pytest.approx(1e-6 * 0.5, rel=1e-5)
    assert np.all(np.isfinite(pca_lib.to_coefficients(pca, np.ones((1, 4), np.float32))))


TAU = 2.0


def test_compression_is_identity_inside_tau():
    c = np.linspace(-TAU, TAU, 101, dtype=np.float32)
    np.testing.assert_array_equal(pca_lib.log_compress(c, TAU), c)


def test_compression_closed_form_outside_tau():
    c = np.asarray([TAU + math.e - 1, -(TAU + math.e**2 - 1)], np.float32)
    np.testing.assert_allclose(pca_lib.log_compress(c, TAU), [TAU + 1, -(TAU + 2)], rtol=1e-6)


def test_compression_is_monotone_and_continuous_at_tau():
    c = np.linspace(-50, 50, 20001, dtype=np.float32)
    out = np.asarray(pca_lib.log_compress(c, TAU))
    assert np.all(np.diff(out) > 0), "compression must be strictly increasing"
    eps = 1e-4
    edges = np.asarray(pca_lib.log_compress(np.asarray([TAU - eps, TAU + eps]), TAU))
    assert edges[1] - edges[0] == pytest.approx(2 * eps, rel=1e-3)  # value and slope 1 match
    assert np.all(np.abs(out) <= np.abs(c)), "compression never grows a coefficient"


def test_compression_only_touches_the_first_k_components():
    c = np.full((2, DIM), 10.0, np.float32)
    out = np.asarray(pca_lib.log_compress(c, TAU, num_components=2))
    np.testing.assert_allclose(out[:, :2], TAU + np.log(1 + 10 - TAU), rtol=1e-6)
    np.testing.assert_array_equal(out[:, 2:], 10.0)


def test_compress_latents_is_jittable_and_per_row():
    pca, _, _ = make()
    w = np.random.RandomState(4).randn(3, 4, DIM).astype(np.float32) * 3
    jitted = jax.jit(pca_lib.compress_latents, static_argnames=("tau", "num_components"))
    out = jitted(pca, w, tau=1.0, num_components=None)
    rows = [pca_lib.compress_latents(pca, w[:, i], 1.0) for i in range(4)]
    np.testing.assert_allclose(out, np.stack(rows, axis=1), atol=1e-5)
    assert (
        np.abs(pca_lib.to_coefficients(pca, out)).max()
        < np.abs(pca_lib.to_coefficients(pca, w)).max()
    )


def test_truncation_psi_one_is_identity_and_psi_zero_the_mean():
    w = np.random.RandomState(5).randn(3, 4, DIM).astype(np.float32)
    mean_w = np.full(DIM, 0.5, np.float32)
    np.testing.assert_array_equal(pca_lib.truncate(w, mean_w, 1.0), w)
    np.testing.assert_allclose(
        pca_lib.truncate(w, mean_w, 0.0), np.broadcast_to(mean_w, w.shape), atol=1e-6
    )
    cut = np.asarray(pca_lib.truncate(w, mean_w, 0.5, cutoff=2))
    np.testing.assert_allclose(cut[:, :2], 0.5 + 0.5 * (w[:, :2] - 0.5), atol=1e-7)
    np.testing.assert_array_equal(cut[:, 2:], w[:, 2:])
    np.testing.assert_array_equal(pca_lib.truncate(w[:, 0], mean_w, 1.0), w[:, 0])


def test_outlier_scores_take_the_largest_chosen_coefficient():
    c = np.zeros((2, 3, DIM), np.float32)
    c[0, 1, 4], c[1, 2, 0] = -7.0, 3.0
    np.testing.assert_array_equal(pca_lib.outlier_scores(c), [7.0, 3.0])
    np.testing.assert_array_equal(pca_lib.outlier_scores(c, num_components=2), [0.0, 3.0])
