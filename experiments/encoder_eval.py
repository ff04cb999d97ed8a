r"""Encoder initialisation against the mean latent, measured (issue: amortised inversion).

    python -m experiments.encoder_eval --outdir=out/encoder_eval [--generator=DIR --encoder=DIR] \
        [--spaces=wplus,f_zplus] [--steps=1000] [--short_steps=200] [--curve_every=50] \
        [--num_targets=8] [--seed=0]

For each space, inverts --num_targets generated images (style-mixed, from seeds the encoder never
trained on) and, for the built-in generator, as many real digits, twice: from the mean latent and
from the encoder's code, with the same seeds and each start's defaults (from a code the
latent-noise ramp is off), over --steps and in a short run of --short_steps. Writes report.md (PSNR
after 0 steps, PSNR-vs-steps curves, the step at which the encoder start reaches the mean start's
final PSNR, both starts after the short run, encoder-only vs optimisation images per second),
results.json and the curve PNGs into --outdir.
"""

from absl import flags

from experiments import study_flags
from gaussjax import cli
from gaussjax.encoding import saved
from gaussjax.networks.builtin import BUILTIN_LABEL
from gaussjax.reports import plots
from gaussjax.reports.markdown import Report
from gaussjax.studies import encoder_eval, inversions
from gaussjax.training import digits

_ENCODER = flags.DEFINE_string(
    "encoder", "builtin", "Encoder directory (or a train_encoder run); default: the built-in one."
)
_SPACES = flags.DEFINE_list("spaces", ["wplus", "f_zplus"], "Spaces (any but sphinx).")
_STEPS = flags.DEFINE_integer("steps", 1000, "Optimisation steps of both starts.")
_SHORT_STEPS = flags.DEFINE_integer(
    "short_steps", 200, "Steps of the short runs (their own schedule) of both starts."
)
_EVERY = flags.DEFINE_integer("curve_every", 50, "Steps between points of the curves.")
_NUM_TARGETS = flags.DEFINE_integer("num_targets", 8, "Targets per set.")
TARGET_SEED_OFFSET = 10_000  # generated targets come from seeds far from the training draws
COLUMNS = [
    ("space", "space"),
    ("targets", "targets"),
    ("mean_start_psnr", "mean init, 0 steps dB"),
    ("encoder_start_psnr", "encoder, 0 steps dB"),
    ("mean_final_psnr", "mean init, final dB"),
    ("encoder_final_psnr", "encoder init, final dB"),
    ("encoder_steps_to_mean_final", "encoder steps to mean final"),
    ("mean_short_psnr", "mean init, short run dB"),
    ("encoder_short_psnr", "encoder init, short run dB"),
]
RATE_COLUMNS = [
    ("space", "space"),
    ("encoder_images_per_s", "encoder images/s"),
    ("optimisation_images_per_s", "optimisation images/s"),
    ("speedup", "×"),
]


def target_sets(study, space: str) -> dict:
    sets = {
        "generated": inversions.generated_targets(
            study, space, _NUM_TARGETS.value, [study_flags.SEED.value + TARGET_SEED_OFFSET]
        )
    }
    if not study_flags.GENERATOR.value:  # the built-in generator: real digits too
        real = digits.training_images(study.cfg.img_resolution, study.cfg.img_channels)
        sets["real digits"] = encoder_eval.image_targets(
            real[-_NUM_TARGETS.value :], "digit", study.cfg
        )
    return sets


def run() -> None:
    outdir = study_flags.outdir()
    if min(_STEPS.value, _SHORT_STEPS.value, _EVERY.value, _NUM_TARGETS.value) < 1:
        raise ValueError("need --steps, --short_steps, --curve_every and --num_targets >= 1")
    study = study_flags.study()
    encoder = saved.load_encoder(_ENCODER.value)
    encoder.check_generator(study.fingerprint)
    rows, rates, curves = [], [], {}
    for space in _SPACES.value:
        configs = encoder_eval.run_configs(space, _STEPS.value, _SHORT_STEPS.value, _EVERY.value)
        for set_name, targets in target_sets(study, space).items():
            print(
                f"{space}, {set_name}: inverting {len(targets.names)} targets from both starts",
                flush=True,
            )
            traces = encoder_eval.init_curves(study, encoder, configs, targets)
            rows.append(encoder_eval.curve_row(space, set_name, traces))
            for init in encoder_eval.INITS:
                t = traces[init]
                curves[f"{space} {set_name} {init}"] = {"steps": t.steps, "psnr": t.psnr}
            if set_name == "generated":
                rates.append(
                    {
                        "space": space,
                        **encoder_eval.throughput(
                            study, encoder, configs["mean"], targets, _EVERY.value
                        ),
                    }
                )
    series = {k: (v["steps"], v["psnr"].mean(axis=1)) for k, v in curves.items()}
    dashed = [k for k in curves if k.endswith("mean")]
    plots.line_plot(
        outdir / "psnr_curves.png", series, xlabel="step", ylabel="PSNR (dB)", dashed=dashed
    )
    settings = {
        "generator": study_flags.GENERATOR.value or BUILTIN_LABEL,
        "encoder": encoder.source,
        "encoder_fingerprint": encoder.fingerprint,
        "encoder_kimg": encoder.metadata.get("kimg"),
        "steps": _STEPS.value,
        "short_steps": _SHORT_STEPS.value,
        "num_targets": _NUM_TARGETS.value,
        "seed": study_flags.SEED.value,
    }
    report = Report("Encoder initialisation against the mean latent")
    report.text(
        f"Generator: {settings['generator']}; encoder {settings['encoder']} "
        f"({settings['encoder_kimg']} kimg). {_NUM_TARGETS.value} targets per set, {_STEPS.value} "
        f"steps and short runs of {_SHORT_STEPS.value} (each with its own schedule), each space's "
        "defaults (from a code: latent-noise ramp off); both starts use the same seeds."
    )
    report.table("psnr", rows, COLUMNS)
    report.image("psnr_curves.png", "mean PSNR per step (dashed: mean-latent start)")
    report.heading("Throughput")
    report.table("throughput", rates, RATE_COLUMNS)
    report.write(
        outdir, {"settings": settings, "rows": rows, "throughput": rates, "curves": curves}
    )
    print(f"wrote {outdir / 'report.md'}, results.json and psnr_curves.png")


def main(argv):
    del argv
    study_flags.run_main(run)


if __name__ == "__main__":
    cli.run(main)
