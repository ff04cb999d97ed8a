r"""Artifacts: PC-coefficient outliers, truncation versus log compression (paper Figs. 4-5).

    python -m experiments.artifacts --outdir=out/artifacts [--generator=DIR] [--prior=prior.npz] \
        [--num_samples=256] [--psis=0.5,0.7,0.9] [--taus=1.5,2,3] [--num_components=K] \
        [--num_extremes=8] [--judge=DIR|builtin|none] [--seed=0]

Draws --num_samples mapping samples w, expresses v = LeakyReLU_5(w) in the whitened principal
components of the prior (gaussjax.analysis.pca), and compares the raw samples with truncation
(w̄ + ψ (w − w̄)) and with our log compression of coefficients beyond τ (the paper's formula is
unknown; see the pca module). For each method: diversity (per-pixel std across samples, mean
pairwise distance), change of each sample from its raw self, and the largest coefficient left.
The samples with the largest raw coefficient are the outliers: their mean |coefficient| profile
is plotted against all samples', and they are shown before and after each method. Realism of
each method's samples: the realism judge's and (built-in generator) the digit classifier's pass
fractions (gaussjax/studies/realism.py). Writes
report.md, results.json and PNGs into --outdir.
"""

import jax.numpy as jnp
import numpy as np
from absl import flags

from experiments import study_flags
from gaussjax import cli
from gaussjax.analysis import pca as pca_lib
from gaussjax.files import images as image_files
from gaussjax.networks.builtin import BUILTIN_LABEL
from gaussjax.reports import plots
from gaussjax.reports.markdown import Report
from gaussjax.reports.progress import Progress
from gaussjax.studies import metrics, realism
from gaussjax.studies.setup import sample_z

_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 256, "Mapping samples to analyse (>= 2).")
_PSIS = flags.DEFINE_list("psis", ["0.5", "0.7", "0.9"], "Truncation ψ values.")
_TAUS = flags.DEFINE_list(
    "taus", ["1.5", "2", "3"], "Log-compression thresholds τ (whitened units)."
)
_NUM_COMPONENTS = flags.DEFINE_integer("num_components", None, "Compress only the first K PCs.")
_JUDGE = study_flags.define_judge_flag()
_NUM_EXTREMES = flags.DEFINE_integer("num_extremes", 8, "Outlier samples to profile and show.")
COLUMNS = [
    ("method", "method"),
    ("per_pixel_std", "per-pixel std"),
    ("mean_pairwise_distance", "mean pairwise distance"),
    ("change_from_raw", "change from raw (all)"),
    ("change_from_raw_outliers", "change from raw (outliers)"),
    ("max_coefficient_outliers", "largest abs c, outliers"),
    ("max_coefficient_all", "largest abs c, all"),
    *realism.COLUMNS,
    *[(f"{key}_outliers", f"{title}, outliers") for key, title in realism.COLUMNS],
]


def methods(pca) -> dict:
    """{name: function w [N, D] -> w [N, D]} for raw, each ψ and each τ."""
    table = {"raw": lambda w: w}
    for psi in map(float, _PSIS.value):
        table[f"truncation ψ={psi:g}"] = lambda w, p=psi: pca_lib.truncate(w, pca.mean_w, p)
    for tau in map(float, _TAUS.value):
        table[f"log compression τ={tau:g}"] = lambda w, t=tau: pca_lib.compress_latents(
            pca, w, t, _NUM_COMPONENTS.value
        )
    return table


def method_row(name, w, imgs, raw_imgs, pca, extremes, judges) -> dict:
    coefficients = np.asarray(pca_lib.to_coefficients(pca, jnp.asarray(w)))
    scores = np.asarray(pca_lib.outlier_scores(coefficients, _NUM_COMPONENTS.value))
    return {
        "method": name,
        "per_pixel_std": metrics.per_pixel_std(imgs),
        "mean_pairwise_distance": metrics.mean_pairwise_distance(imgs),
        "change_from_raw": float(np.mean(metrics.rms_change(imgs, raw_imgs))),
        "change_from_raw_outliers": float(np.mean(metrics.rms_change(imgs, raw_imgs)[extremes])),
        "max_coefficient_outliers": float(np.mean(scores[extremes])),
        "max_coefficient_all": float(np.mean(scores)),
        **realism.judge_images(judges, imgs),
        **{f"{k}_outliers": v for k, v in realism.judge_images(judges, imgs[extremes]).items()},
    }


def write_plots(outdir, raw_c, extremes, grids) -> None:
    magnitude = np.abs(raw_c)
    profiles = {
        f"{len(extremes)} outliers": magnitude[extremes].mean(axis=0),
        "all samples": magnitude.mean(axis=0),
    }
    plots.profile_plot(
        outdir / "pc_profile.png",
        profiles,
        band=raw_c.std(axis=0),
        xlabel="principal component (by decreasing variance)",
        ylabel="mean |whitened coefficient|",
    )
    grid = np.concatenate([image_files.to_uint8(g) for g in grids.values()])
    image_files.save_png(outdir / "extremes.png", image_files.make_grid(grid, len(extremes)))


def report_text(rows, extremes_count, num_samples) -> str:
    raw = rows[0]
    best = {
        kind: max(
            (r for r in rows if r["method"].startswith(kind)), key=lambda r: r["per_pixel_std"]
        )
        for kind in ("truncation", "log compression")
    }
    lines = [
        f"{num_samples} samples; outliers: the {extremes_count} with the largest raw |coefficient| "
        f"(mean {raw['max_coefficient_outliers']:.4g} std, all samples {raw['max_coefficient_all']:.4g}).",
    ]
    for kind, r in best.items():
        lines.append(
            f"Most diverse {kind} ({r['method']}): per-pixel std {r['per_pixel_std']:.4g} "
            f"(raw {raw['per_pixel_std']:.4g}), largest outlier coefficient "
            f"{r['max_coefficient_outliers']:.4g}, change from raw {r['change_from_raw']:.4g}."
        )
    return "\n\n".join(lines)


def evaluate_methods(study, judges, pca, w, extremes):
    """Renders every method's samples: (table rows, {method: images of the outliers})."""
    table = methods(pca)
    progress = Progress(len(table), "methods")
    rows, grids, raw_imgs = [], {}, None
    for name, method in table.items():
        w_new = np.asarray(method(jnp.asarray(w)))
        imgs = study.render(np.repeat(w_new[:, None], study.cfg.num_ws, axis=1))
        raw_imgs = imgs if raw_imgs is None else raw_imgs
        rows.append(method_row(name, w_new, imgs, raw_imgs, pca, extremes, judges))
        grids[name] = imgs[extremes]
        progress.tick(name)
    return rows, grids


def build_report(rows, extremes, num_samples, judges) -> Report:
    report = Report("Artifacts: truncation versus log compression of PC coefficients")
    report.text(report_text(rows, len(extremes), num_samples))
    report.text(
        f"Realism of each method's samples, all and the outliers, by {judges.describe()}: the "
        "fraction each passes."
    )
    report.table("methods", rows, COLUMNS)
    report.image(
        "pc_profile.png", "mean |whitened PC coefficient| of the outliers and of all samples"
    )
    report.image("extremes.png", "the outliers; rows: " + ", ".join(r["method"] for r in rows))
    report.text(
        "The compression formula, its threshold and components are our choice (the paper's are "
        "unknown). Distances are RMS pixel differences in [-1, 1] units."
    )
    return report


def run() -> None:
    outdir = study_flags.outdir()
    if _NUM_SAMPLES.value < 2 or _NUM_EXTREMES.value < 1:
        raise ValueError("--num_samples must be >= 2 and --num_extremes >= 1")
    study = study_flags.study()
    pca = study.pca
    w = study.map(sample_z(_NUM_SAMPLES.value, study.cfg.z_dim, study_flags.SEED.value))[:, 0]
    raw_c = np.asarray(pca_lib.to_coefficients(pca, jnp.asarray(w)))
    order = np.argsort(-np.asarray(pca_lib.outlier_scores(raw_c, _NUM_COMPONENTS.value)))
    extremes = order[: min(_NUM_EXTREMES.value, len(w))]
    judges = study_flags.judges(study, _JUDGE)
    rows, grids = evaluate_methods(study, judges, pca, w, extremes)
    write_plots(outdir, raw_c, extremes, grids)
    settings = {
        "num_samples": len(w),
        "psis": _PSIS.value,
        "taus": _TAUS.value,
        "num_components": _NUM_COMPONENTS.value,
        "seed": study_flags.SEED.value,
        "judges": judges.describe(),
        "generator": study_flags.GENERATOR.value or BUILTIN_LABEL,
        "outlier_indices": extremes,
        "raw_coefficient_mean_abs": np.abs(raw_c).mean(axis=0),
        "outlier_coefficient_mean_abs": np.abs(raw_c[extremes]).mean(axis=0),
    }
    build_report(rows, extremes, len(w), judges).write(outdir, {"settings": settings})
    print(f"wrote {outdir / 'report.md'}, results.json and PNGs")


def main(argv):
    del argv
    study_flags.run_main(run)


if __name__ == "__main__":
    cli.run(main)
