"""Tests of the Gaussianized latent prior: transform, moments, energy, fitting, files and CLI."""

import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from converters.convert import convert
from gaussjax.analysis.gaussianize import degaussianize, gaussianize
from gaussjax.analysis.prior import (
    PRIOR_KEYS,
    GaussianPrior,
    MomentAccumulator,
    PriorStats,
    fit_generator_prior,
    gaussianity_summary,
    load_prior,
    make_prior,
    prior_energy,
    save_prior,
)
from gaussjax.files import checkpoints
from gaussjax.networks.stylegan2 import PureGenerator

REPO = pathlib.Path(__file__).resolve().parents[1]


def _accumulate(x, chunk_sizes):
    """Feeds x to a MomentAccumulator in chunks of the given (cycled) sizes."""
    acc, start, i = MomentAccumulator(), 0, 0
    while start < len(x):
        acc.update(x[start : start + chunk_sizes[i % len(chunk_sizes)]])
        start += chunk_sizes[i % len(chunk_sizes)]
        i += 1
    return acc


def _random_cov(rng, dim):
    a = rng.normal(size=(dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


# (a) Streaming moments.
def test_moments_of_gaussian_with_large_offset():
    rng = np.random.default_rng(0)
    dim, n = 8, 200_000
    mu, cov = 1000.0 + rng.normal(size=dim), _random_cov(rng, dim)
    x = (mu + rng.normal(size=(n, dim)) @ np.linalg.cholesky(cov).T).astype(np.float32)
    acc = _accumulate(x, [1, 999, 17_000, 4096, 3])
    assert acc.count == n
    x64 = x.astype(np.float64)
    # Same data: exact up to float64 rounding, despite the offset of 1000 standard deviations.
    np.testing.assert_allclose(acc.mean, x64.mean(0), rtol=1e-12)
    np.testing.assert_allclose(acc.cov, np.cov(x64, rowvar=False), rtol=1e-10, atol=1e-12)
    # Against the truth: sampling error only (float32 rounding of x at 1000 is ~6e-5).
    np.testing.assert_allclose(acc.mean, mu, atol=5 * np.sqrt(np.diag(cov).max() / n))
    np.testing.assert_allclose(acc.cov, cov, atol=0.03)
    np.testing.assert_allclose(acc.skewness, 0, atol=0.03)
    np.testing.assert_allclose(acc.excess_kurtosis, 0, atol=0.06)


def test_moments_of_exponential_match_closed_form():
    rng = np.random.default_rng(1)
    x = rng.exponential(size=(400_000, 2)) + 50.0
    acc = _accumulate(x, [30_000, 7])
    centred = x - x.mean(0)
    m2, m3, m4 = ((centred**k).mean(0) for k in (2, 3, 4))
    np.testing.assert_allclose(acc.skewness, m3 / m2**1.5, rtol=1e-9)
    np.testing.assert_allclose(acc.excess_kurtosis, m4 / m2**2 - 3, rtol=1e-9)
    # Exponential distribution: skewness 2, excess kurtosis 6 (sampling error ~0.02 and ~0.2).
    np.testing.assert_allclose(acc.skewness, 2.0, atol=0.1)
    np.testing.assert_allclose(acc.excess_kurtosis, 6.0, atol=0.8)


def test_moment_accumulator_needs_samples_and_fixed_dim():
    acc = MomentAccumulator()
    with pytest.raises(ValueError, match="at least 1"):
        _ = acc.mean
    acc.update(np.ones((1, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        _ = acc.cov
    with pytest.raises(ValueError, match="fixed D"):
        acc.update(np.ones((2, 4)))


# (b) Gaussianizing transform.
def test_gaussianize_known_values_and_round_trip():
    w = jnp.array([[-1.0, -0.2, 0.0, 0.5, 3.0]])
    np.testing.assert_allclose(gaussianize(w), [[-5.0, -1.0, 0.0, 0.5, 3.0]], rtol=1e-6)
    w = jax.random.normal(jax.random.key(0), (4, 3, 16))
    np.testing.assert_allclose(degaussianize(gaussianize(w)), w, rtol=1e-6)
    np.testing.assert_allclose(gaussianize(degaussianize(w, 0.5), 0.5), w, rtol=1e-6)
    np.testing.assert_array_equal(gaussianize(w, 1.0), w)
    with pytest.raises(ValueError, match="invertible"):
        gaussianize(w, 0.0)


# (c) Prior energy.
def _closed_form_energy(mean, cov, w, slope):
    v = np.where(w >= 0, w, w / slope).astype(np.float64)
    d = v - mean
    return np.einsum("...i,ij,...j->...", d, np.linalg.inv(cov), d)


@pytest.fixture
def prior_and_stats():
    rng = np.random.default_rng(2)
    dim = 16
    mean, cov = rng.normal(size=dim), _random_cov(rng, dim)
    return make_prior(mean, cov, 0.2, ridge=0.0), mean, cov


def test_prior_energy_matches_closed_form_w_and_w_plus(prior_and_stats):
    prior, mean, cov = prior_and_stats
    w = np.random.default_rng(3).normal(size=(5, 4, 16)).astype(np.float32)
    energy_fn = jax.jit(prior_energy)
    np.testing.assert_allclose(
        energy_fn(prior, w[:, 0]), _closed_form_energy(mean, cov, w[:, 0], 0.2), rtol=1e-4
    )
    plus = energy_fn(prior, w)
    assert plus.shape == (5,)
    np.testing.assert_allclose(plus, _closed_form_energy(mean, cov, w, 0.2).sum(1), rtol=1e-4)
    grad = jax.grad(lambda x: prior_energy(prior, x).sum())(jnp.asarray(w))
    assert grad.shape == w.shape and bool(jnp.all(jnp.isfinite(grad)))
    with pytest.raises(ValueError, match="must be"):
        prior_energy(prior, w[0, 0])


def test_gaussian_prior_is_a_pytree(prior_and_stats):
    prior = prior_and_stats[0]
    leaves, treedef = jax.tree.flatten(prior)
    assert [x.shape for x in leaves] == [(16,), (16, 16)] and all(
        x.dtype == jnp.float32 for x in leaves
    )
    assert jax.tree.unflatten(treedef, leaves).negative_slope == 0.2
    assert isinstance(jax.tree.map(lambda x: x * 2, prior), GaussianPrior)


def test_make_prior_ridge_and_failure():
    rng = np.random.default_rng(4)
    low_rank = rng.normal(size=(8, 3))
    singular = low_rank @ low_rank.T  # rank 3: the near-singular case of a real mapping net
    prior = make_prior(np.zeros(8), singular, 0.2)
    assert np.all(np.isfinite(prior.scale_tril))
    with pytest.raises(ValueError, match="increase the ridge"):
        make_prior(np.zeros(3), np.diag([1.0, 1.0, -1e-2]), 0.2)
    with pytest.raises(ValueError, match="zero variance"):
        make_prior(np.zeros(3), np.zeros((3, 3)), 0.2)


# (d) Fitting on a real (fixture) generator.
def test_fit_generator_prior_on_fixture(fixture_generator):
    generator = fixture_generator("skip32")
    fns, params = PureGenerator.split(generator)
    calls = []
    stats = fit_generator_prior(
        fns,
        params,
        generator.cfg,
        num_samples=3000,
        seed=7,
        chunk_size=1024,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert (
        all(getattr(stats, k) is not None for k in PRIOR_KEYS)
        and stats.generator_fingerprint is None
    )
    assert (
        stats.mean.shape == (64,) and stats.cov.shape == (64, 64) and stats.cov.dtype == np.float64
    )
    assert (stats.num_samples, stats.negative_slope, stats.seed, stats.class_idx) == (
        3000,
        0.2,
        7,
        -1,
    )
    assert calls == [(1024, 3000), (2048, 3000), (3000, 3000)]
    again = fit_generator_prior(
        fns, params, generator.cfg, num_samples=3000, seed=7, chunk_size=1024
    )
    for key in PRIOR_KEYS:
        np.testing.assert_array_equal(getattr(stats, key), getattr(again, key))
    # Sample i depends only on (seed, i): another chunking gives the same fit up to rounding.
    rechunked = fit_generator_prior(
        fns, params, generator.cfg, num_samples=3000, seed=7, chunk_size=700
    )
    np.testing.assert_allclose(rechunked.cov, stats.cov, rtol=1e-4, atol=1e-5)
    other = fit_generator_prior(
        fns, params, generator.cfg, num_samples=3000, seed=8, chunk_size=1024
    )
    assert not np.allclose(other.mean, stats.mean)
    # The point of the transform: v is much closer to Gaussian than w (fixture: ~3.0 -> ~0.6 and
    # ~1.2 -> ~0.4), and the mean of v matches the mean of the transformed mapping samples.
    assert np.abs(stats.kurt_v).mean() < 0.5 * np.abs(stats.kurt_w).mean()
    assert np.abs(stats.skew_v).mean() < 0.5 * np.abs(stats.skew_w).mean()
    assert "median |skewness|" in gaussianity_summary(stats)


def test_fit_generator_prior_conditional(fixture_generator):
    generator = fixture_generator("cond64_resnet")
    fns, params = PureGenerator.split(generator)
    fit = lambda class_idx: fit_generator_prior(
        fns, params, generator.cfg, num_samples=600, seed=0, chunk_size=256, class_idx=class_idx
    )
    marginal, class0, class1 = fit(None), fit(0), fit(1)
    assert (marginal.class_idx, class1.class_idx) == (-1, 1)
    assert not np.allclose(class0.mean, class1.mean)
    # The marginal mixes classes, so it is wider than a single class in total variance.
    assert np.trace(marginal.cov) > np.trace(class0.cov)
    with pytest.raises(ValueError, match="class_idx must be"):
        fit(5)
    skip = fixture_generator("skip32")
    with pytest.raises(ValueError, match="unconditional"):
        fit_generator_prior(
            *PureGenerator.split(skip), skip.cfg, num_samples=10, seed=0, class_idx=0
        )


# (e) Files.
def _small_stats(dim=4):
    rng = np.random.default_rng(5)
    diag = {k: rng.normal(size=dim) for k in ("mean_w", "skew_w", "kurt_w", "skew_v", "kurt_v")}
    return PriorStats(
        mean=rng.normal(size=dim),
        cov=_random_cov(rng, dim),
        num_samples=1000,
        negative_slope=0.2,
        seed=3,
        class_idx=-1,
        w_std=1.5,
        **diag,
    )


# prior.npz as the dict-based save_prior wrote it (dtype, shape per key; D = 4 here): a record-saved
# file must match exactly, so older code still reads it.
_PRIOR_FILE_FORMAT = {
    **{k: ("<f8", (4,)) for k in ("mean", "mean_w", "skew_w", "kurt_w", "skew_v", "kurt_v")},
    "cov": ("<f8", (4, 4)),
    **{k: ("<i8", ()) for k in ("num_samples", "seed", "class_idx")},
    **{k: ("<f8", ()) for k in ("negative_slope", "w_std")},
    "generator_fingerprint": ("<U8", ()),
}


def test_save_load_round_trip_and_fingerprint(tmp_path):
    stats = _small_stats()
    path = tmp_path / "prior.npz"
    save_prior(path, stats, "abcd1234")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prior.npz"]  # no temp file left behind
    with np.load(path) as stored:
        written = {k: (stored[k].dtype.str, stored[k].shape) for k in stored.files}
    assert written == _PRIOR_FILE_FORMAT
    prior, loaded = load_prior(path, expected_fingerprint="abcd1234")
    for key in PRIOR_KEYS:
        np.testing.assert_array_equal(getattr(loaded, key), getattr(stats, key))
    # A loaded record saves back to the same arrays, in the same key order.
    save_prior(tmp_path / "again.npz", loaded, "abcd1234")
    with np.load(path) as first, np.load(tmp_path / "again.npz") as second:
        assert first.files == second.files
        assert all(first[k].tobytes() == second[k].tobytes() for k in first.files)
    assert loaded.generator_fingerprint == "abcd1234" and isinstance(loaded.num_samples, int)
    ref = make_prior(stats.mean, stats.cov, 0.2)
    np.testing.assert_array_equal(prior.scale_tril, ref.scale_tril)
    with pytest.raises(
        ValueError, match="fitted for generator abcd1234, but this generator is ffff: refit"
    ):
        load_prior(path, expected_fingerprint="ffff")


def test_load_prior_refuses_bad_files(tmp_path):
    with pytest.raises(ValueError, match="no such prior file"):
        load_prior(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not an npz at all")
    with pytest.raises(ValueError, match="cannot read as .npz"):
        load_prior(tmp_path / "junk.npz")
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(ValueError, match="cannot read as .npz"):
        load_prior(tmp_path / "array.npy")
    np.savez(tmp_path / "partial.npz", mean=np.zeros(3))
    with pytest.raises(ValueError, match=r"not a prior file, missing \['cov'\]"):
        load_prior(tmp_path / "partial.npz")
    good = tmp_path / "good.npz"
    save_prior(good, _small_stats(), "abcd")
    (tmp_path / "truncated.npz").write_bytes(good.read_bytes()[:300])
    with pytest.raises(ValueError, match="cannot read as .npz"):
        load_prior(tmp_path / "truncated.npz")
    with pytest.raises(ValueError, match="lack keys"):
        save_prior(
            tmp_path / "x.npz", PriorStats(np.zeros(3), np.eye(3), 0.2, np.zeros(3), 1.0), "x"
        )


# (f) Command line.
def _run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "experiments.fit_prior", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.slow
def test_cli_fits_and_writes_prior(fixture_dir, tmp_path):
    convert(fixture_dir / "skip32.pkl", tmp_path / "gen")
    out = tmp_path / "prior.npz"
    result = _run_cli(
        f"--generator={tmp_path / 'gen'}",
        "--num_samples=1500",
        "--seed=1",
        f"--out={out}",
        "--chunk_size=512",
    )
    assert result.returncode == 0, result.stderr
    assert "samples/s" in result.stdout and "median |excess kurtosis|" in result.stdout
    with np.load(out) as data:
        assert set(data.files) == {*PRIOR_KEYS, "generator_fingerprint"}
    fingerprint = checkpoints.read_generator_config(tmp_path / "gen")[1]["fingerprint"]
    _, stats = load_prior(out, expected_fingerprint=fingerprint)
    assert (stats.num_samples, stats.seed) == (1500, 1)

    bad = _run_cli(f"--generator={tmp_path / 'nope'}", f"--out={tmp_path / 'x.npz'}")
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "x.npz").exists()
