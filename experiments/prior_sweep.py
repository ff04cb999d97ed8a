r"""The prior weight λ swept on generated images: PSNR, latent error and prior energy per λ.

    python -m experiments.prior_sweep --outdir=out/prior_sweep [--generator=DIR] [--prior=prior.npz] \
        [--space=wplus] [--prior_weights=0,1e-5,3e-5,1e-4,3e-4,1e-3,1e-2] [--target_seeds=0,1] \
        [--num_generated=2] [--steps=200] [--seed=0]

The paper's λ is unknown ([NF]), so it has to be chosen per generator. This inverts the same
generated targets (their true codes known) at every λ with the space's defaults and writes the
table (mean ± std over target seeds), the λ with the lowest latent error at no more than 0.5 dB
PSNR loss against λ = 0, and PSNR / latent error against λ as plots, into --outdir. Pass the
chosen λ to experiments.invert as --prior_weight.
"""

import numpy as np
from absl import flags

from experiments import study_flags
from gaussjax import cli
from gaussjax.networks.builtin import BUILTIN_LABEL
from gaussjax.reports import plots
from gaussjax.reports.markdown import Report
from gaussjax.reports.progress import Progress
from gaussjax.studies import inversions

_SPACE = flags.DEFINE_string("space", "wplus", "Latent space (w, wplus, z, zplus).")
_WEIGHTS = flags.DEFINE_list(
    "prior_weights", ["0", "1e-5", "3e-5", "1e-4", "3e-4", "1e-3", "1e-2"], "λ values (include 0)."
)
_TARGET_SEEDS = flags.DEFINE_list("target_seeds", ["0", "1"], "Seeds of the target images.")
_NUM_GENERATED = flags.DEFINE_integer("num_generated", 2, "Targets per target seed.")
_STEPS = flags.DEFINE_integer("steps", 200, "Optimisation steps.")
MAX_PSNR_LOSS_DB = 0.5


def sweep_plots(outdir, rows) -> None:
    """psnr_vs_lambda.png, latent_vs_lambda.png: λ > 0 on a log axis, λ = 0 as a dashed level."""
    base = next((r for r in rows if r["prior_weight"] == 0), None)
    positive = [r for r in rows if r["prior_weight"] > 0]
    x = np.asarray([r["prior_weight"] for r in positive])
    for key, ylabel, name in (
        ("psnr_mean", "PSNR (dB)", "psnr"),
        ("latent_mse_mean", "latent MSE", "latent"),
    ):
        series = {"with prior": (x, np.asarray([r[key] for r in positive]))}
        if base is not None and len(x):
            series["λ=0"] = (x[[0, -1]], np.full(2, base[key]))
        plots.line_plot(
            outdir / f"{name}_vs_lambda.png",
            series,
            xlabel="λ",
            ylabel=ylabel,
            logx=True,
            dashed=["λ=0"],
        )


def run() -> None:
    outdir = study_flags.outdir()
    weights = [float(w) for w in _WEIGHTS.value]
    seeds = [int(s) for s in _TARGET_SEEDS.value]
    if _NUM_GENERATED.value < 1 or not seeds or _STEPS.value < 1 or any(w < 0 for w in weights):
        raise ValueError("need --num_generated, --steps >= 1, a target seed and λ >= 0")
    study = study_flags.study()
    targets = inversions.generated_targets(study, _SPACE.value, _NUM_GENERATED.value, seeds)
    groups = np.repeat(seeds, _NUM_GENERATED.value)
    progress = Progress(len(weights), "inversions")
    rows, _ = inversions.sweep(
        study, _SPACE.value, weights, targets, groups, progress.tick, num_steps=_STEPS.value
    )
    sweep_plots(outdir, rows)
    chosen = inversions.chosen_prior_weights(rows, MAX_PSNR_LOSS_DB)
    report = Report(f"Prior weight sweep in {_SPACE.value}")
    report.text(
        f"{len(groups)} generated targets ({_NUM_GENERATED.value} per target seed {seeds}), "
        f"{_STEPS.value} steps; mean ± std over target seeds. Generator: "
        f"{study_flags.GENERATOR.value or BUILTIN_LABEL}."
    )
    report.table("sweep", rows, inversions.SWEEP_COLUMNS)
    report.heading(f"Chosen λ (lowest latent MSE at ≤ {MAX_PSNR_LOSS_DB} dB PSNR loss)")
    report.table("chosen", chosen, inversions.CHOSEN_COLUMNS)
    report.image("psnr_vs_lambda.png", "final PSNR against λ (dashed: λ = 0)")
    report.image("latent_vs_lambda.png", "final latent MSE against λ (dashed: λ = 0)")
    settings = {
        "space": _SPACE.value,
        "prior_weights": weights,
        "target_seeds": seeds,
        "num_generated": _NUM_GENERATED.value,
        "steps": _STEPS.value,
        "seed": study_flags.SEED.value,
    }
    report.write(outdir, {"settings": settings})
    print(f"wrote {outdir / 'report.md'}, results.json and PNGs")


def main(argv):
    del argv
    study_flags.run_main(run)


if __name__ == "__main__":
    cli.run(main)
