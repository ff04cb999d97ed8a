"""The paper-experiment launchers end to end on tiny settings: each writes a report whose numbers
are those of its results.json, with every embedded image present; bad flags exit with one line."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from gaussjax.reports.markdown import Report, format_number
from gaussjax.studies import inversions, metrics

LATENT_STATS = ["--num_samples=200"]
LAUNCHERS = {
    "artifacts": ["--num_samples=12", "--num_extremes=3", "--psis=0.7", "--taus=2"],
    # The inversion launchers share two configs (W, 2 steps, λ 0 or the default 1e-4, batch of
    # 2), so with the session's compilation cache each is compiled once: both by reconstruction
    # (it adds the default λ), none by interpolation and prior_sweep.
    "reconstruction": [
        "--target_codes=w",  # the default --spaces=matched: W targets in W
        "--prior_weights=0",
        "--target_seeds=0,1",
        "--num_generated=1",
        "--steps=2",
        "--curve_every=50",
    ],
    "interpolation": [
        "--num_pairs=1",
        "--frames=3",
        "--steps=2",
        "--spaces=w",
        "--prior_weight=1e-4",
    ],
    "prior_sweep": ["--space=w", "--prior_weights=0,1e-4", "--num_generated=1", "--steps=2"],
    "inverse_problems": [
        "--tasks=inpaint,compressed_sensing",
        "--spaces=w",
        "--sets=in",
        "--steps=2",
        "--num_targets=2",
    ],
}


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    """latent_stats run first: it fits the tiny demo prior every other launcher then reads
    (--prior). All of them share the session's compilation cache (conftest). (prior file, the
    latent_stats outdir and output)."""
    outdir = tmp_path_factory.mktemp("study") / "latent_stats"
    proc = run_launcher("latent_stats", f"--outdir={outdir}", "--prior_samples=300", *LATENT_STATS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return outdir / "prior.npz", (outdir, proc.stdout)


def run_launcher(name, *flags):
    return subprocess.run(
        [sys.executable, "-m", f"experiments.{name}", *flags],
        capture_output=True,
        text=True,
        timeout=300,
    )


def table_cells(row: dict) -> list[str]:
    """Every number of a results.json table row as the report prints it."""
    return [format_number(v) for v in row.values() if isinstance(v, int | float) or v is None]


def check_report(outdir, stdout) -> None:
    """A progress line was printed; every number of results.json's tables is in report.md as the
    report formats it; every embedded image exists."""
    assert re.search(r"^\[#+ *\] \d+/\d+ ", stdout, re.M), "expected a progress line"
    report = (outdir / "report.md").read_text()
    data = json.loads((outdir / "results.json").read_text())
    assert data["tables"], "the report has no tables"
    for rows in data["tables"].values():
        assert rows
        for row in rows:
            for cell in table_cells(row):
                assert cell in report, f"{cell} of {row} is not in report.md"
    embedded = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert embedded and all((outdir / f).stat().st_size > 0 for f in embedded)


@pytest.mark.slow
def test_latent_stats_report_matches_its_json(shared):
    check_report(*shared[1])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LAUNCHERS))
def test_launcher_report_matches_its_json(name, tmp_path, shared):
    prior, _ = shared
    proc = run_launcher(name, f"--outdir={tmp_path}", f"--prior={prior}", *LAUNCHERS[name])
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_report(tmp_path, proc.stdout)


@pytest.mark.slow
def test_library_imports_without_matplotlib_and_launchers_say_how_to_get_it(tmp_path):
    # The library modules import (else the traceback would be the last line), then the launcher
    # stops with one line before doing any work.
    block = "import sys; sys.modules['matplotlib'] = None; "
    library = (
        "import gaussjax, gaussjax.analysis.pca, gaussjax.studies.paths, gaussjax.reports.plots; "
    )
    launcher = (
        f"import runpy; sys.argv = ['artifacts', '--outdir={tmp_path}']; "
        "runpy.run_module('experiments.artifacts', run_name='__main__')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", block + library + launcher], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: plots need matplotlib")
    assert not (tmp_path / "report.md").exists()


def test_report_tables_print_json_numbers(tmp_path):
    report = Report("t")
    report.table(
        "a",
        [{"x": 1.23456789, "m": 2.0, "s": float("nan"), "n": np.int64(3)}],
        [("x", "x"), (("m", "s"), "m ± s"), ("n", "n")],
    )
    report.write(tmp_path, {"extra": np.arange(2)})
    text = (tmp_path / "report.md").read_text()
    assert "| 1.235 | 2 ± - | 3 |" in text
    data = json.loads((tmp_path / "results.json").read_text())
    assert data == {
        "tables": {"a": [{"x": 1.23456789, "m": 2.0, "s": None, "n": 3}]},
        "extra": [0, 1],
    }


def test_diversity_metrics_against_brute_force():
    x = np.random.RandomState(0).randn(5, 4, 4, 3)
    pairs = [np.mean(np.square(x[i] - x[j])) for i in range(5) for j in range(i + 1, 5)]
    assert metrics.mean_pairwise_distance(x) == pytest.approx(np.sqrt(np.mean(pairs)))
    assert metrics.per_pixel_std(x) == pytest.approx(np.mean(x.std(axis=0)))
    np.testing.assert_allclose(
        metrics.path_steps(x), np.sqrt(np.mean(np.square(np.diff(x, axis=0)), axis=(1, 2, 3)))
    )


def test_normality_accepts_gaussian_and_rejects_exponential():
    rs = np.random.RandomState(0)
    gaussian = metrics.normality_summary(metrics.normality(rs.randn(4000, 8)))
    skewed = metrics.normality_summary(metrics.normality(rs.exponential(size=(4000, 8))))
    assert gaussian["median_abs_skewness"] < 0.1 and gaussian["fraction_rejected"] <= 0.25
    assert skewed["median_abs_skewness"] == pytest.approx(2.0, abs=0.4)  # exponential: skew 2
    assert skewed["fraction_rejected"] == 1.0


def test_chosen_prior_weight_is_lowest_latent_error_within_half_a_db():
    rows = [
        {"space": "w", "prior_weight": 0.0, "psnr_mean": 30.0, "latent_mse_mean": 1.0},
        {"space": "w", "prior_weight": 1e-6, "psnr_mean": 29.6, "latent_mse_mean": 0.5},
        {"space": "w", "prior_weight": 1e-5, "psnr_mean": 29.0, "latent_mse_mean": 0.1},
    ]
    (chosen,) = inversions.chosen_prior_weights(rows, 0.5)
    assert chosen["prior_weight"] == 1e-6
    assert chosen["latent_mse_ratio"] == pytest.approx(2.0)
    assert chosen["psnr_change_db"] == pytest.approx(-0.4)
