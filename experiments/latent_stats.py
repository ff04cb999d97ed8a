r"""Statistics of w versus v = LeakyReLU_5(w): is the Gaussianized latent Gaussian? (paper Fig. 1)

    python -m experiments.latent_stats --outdir=out/latent_stats [--generator=DIR] [--prior=prior.npz] \
        [--num_samples=5000] [--dims=0,1,2,3] [--pairs=0:1,2:3,4:5] [--seed=0]

Draws --num_samples mapping samples and writes marginal histograms and pairwise scatter plots of w
and of v for the chosen dimensions (each panel centred, the same range per row), per-dimension
skewness, excess kurtosis and the D'Agostino-Pearson normality test, summarised for w and v, and
the eigenvalue spectrum of the prior's Σ, into --outdir.
"""

import numpy as np
from absl import flags

from experiments import study_flags
from gaussjax import cli
from gaussjax.analysis.gaussianize import gaussianize
from gaussjax.reports import plots
from gaussjax.reports.markdown import Report
from gaussjax.reports.progress import Progress
from gaussjax.studies import metrics
from gaussjax.studies.setup import sample_z

_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 5000, "Mapping samples (>= 20).")
_DIMS = flags.DEFINE_list("dims", ["0", "1", "2", "3"], "Dimensions for the histograms.")
_PAIRS = flags.DEFINE_list("pairs", ["0:1", "2:3", "4:5"], "Dimension pairs a:b for scatter plots.")
ALPHA = 0.01


def parse_pairs(pairs, dim: int) -> list[tuple[int, int]]:
    try:
        parsed = [tuple(int(x) for x in p.split(":")) for p in pairs]
    except ValueError as e:
        raise ValueError(f"--pairs must be a:b,..., got {pairs}") from e
    if any(len(p) != 2 or not all(0 <= x < dim for x in p) for p in parsed):
        raise ValueError(f"--pairs must be a:b with 0 <= a, b < {dim}, got {pairs}")
    return parsed


def parse_dims(dims, dim: int) -> list[int]:
    parsed = [int(d) for d in dims]
    if not parsed or not all(0 <= d < dim for d in parsed):
        raise ValueError(f"--dims must be in [0, {dim}), got {dims}")
    return parsed


def spectrum_row(eigenvalues: np.ndarray) -> dict:
    explained = np.cumsum(eigenvalues) / np.sum(eigenvalues)
    return {
        "largest": float(eigenvalues[0]),
        "smallest": float(eigenvalues[-1]),
        "condition_number": float(eigenvalues[0] / eigenvalues[-1]),
        "components_for_90pct": int(np.searchsorted(explained, 0.9) + 1),
        "components_for_99pct": int(np.searchsorted(explained, 0.99) + 1),
    }


def run() -> None:
    outdir = study_flags.outdir()
    if _NUM_SAMPLES.value < 20:
        raise ValueError("--num_samples must be >= 20")
    study = study_flags.study()
    dims = parse_dims(_DIMS.value, study.cfg.w_dim)
    pairs = parse_pairs(_PAIRS.value, study.cfg.w_dim)
    progress = Progress(4, "steps")
    w = study.map(sample_z(_NUM_SAMPLES.value, study.cfg.z_dim, study_flags.SEED.value))[:, 0]
    v = np.asarray(gaussianize(w, study.cfg.mapping_negative_slope))
    progress.tick(f"{len(w)} mapping samples")
    tests = {"w": metrics.normality(w), "v": metrics.normality(v)}
    rows = [{"latent": k, **metrics.normality_summary(t, ALPHA)} for k, t in tests.items()]
    progress.tick("normality tests")
    plots.histograms(outdir / "histograms.png", {"w": w, "v": v}, dims)
    plots.scatter_pairs(outdir / "scatter.png", {"w": w, "v": v}, pairs)
    eigenvalues = np.asarray(study.pca.eigenvalues, np.float64)
    plots.line_plot(
        outdir / "spectrum.png",
        {"eigenvalues of Σ": (np.arange(len(eigenvalues)), eigenvalues)},
        xlabel="component",
        ylabel="eigenvalue",
        logy=True,
    )
    progress.tick("plots")
    report = Report("Statistics of w and of the Gaussianized v")
    report.text(
        f"{len(w)} mapping samples (seed {study_flags.SEED.value}), D = {study.cfg.w_dim}; "
        f"0 skewness and 0 excess kurtosis for a Gaussian; 'rejected' is the fraction of "
        f"dimensions where the D'Agostino-Pearson test rejects normality at p < {ALPHA}."
    )
    report.table(
        "normality",
        rows,
        [
            ("latent", "latent"),
            ("median_abs_skewness", "median abs skewness"),
            ("median_abs_excess_kurtosis", "median abs excess kurtosis"),
            ("p90_abs_excess_kurtosis", "90th pct abs excess kurtosis"),
            ("fraction_rejected", "rejected"),
        ],
    )
    report.image("histograms.png", f"marginals of w (top) and v (bottom), dimensions {dims}")
    report.image("scatter.png", f"pairs {pairs} of w (top) and v (bottom)")
    report.heading("Eigenvalue spectrum of Σ (the prior's covariance of v)")
    report.table(
        "spectrum",
        [spectrum_row(eigenvalues)],
        [
            ("largest", "largest"),
            ("smallest", "smallest"),
            ("condition_number", "condition number"),
            ("components_for_90pct", "PCs for 90% variance"),
            ("components_for_99pct", "PCs for 99% variance"),
        ],
    )
    report.image("spectrum.png", "eigenvalues of Σ, descending (log scale)")
    data = {
        "settings": {"num_samples": len(w), "seed": study_flags.SEED.value, "dims": dims},
        "per_dimension": tests,
        "eigenvalues": eigenvalues,
        "prior_num_samples": study.stats.num_samples,
    }
    report.write(outdir, data)
    progress.tick("report")
    print(f"wrote {outdir / 'report.md'}, results.json and PNGs")


def main(argv):
    del argv
    study_flags.run_main(run)


if __name__ == "__main__":
    cli.run(main)
