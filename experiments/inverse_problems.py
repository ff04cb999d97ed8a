r"""Inverse problems through the generator against classical baselines, every task x space.

    python -m experiments.inverse_problems --outdir=out/inverse_problems [--generator=DIR] \
        [--tasks=denoise,inpaint,super_resolution,compressed_sensing] [--spaces=w,wplus,f_zplus] \
        [--steps=N] [--num_targets=8] [--sets=in,out] [--ood_images=DIR|GLOB] \
        [--encoder=DIR|builtin] [--seed=0]

Each task runs at its defaults (denoise σ = 0.25, a 0.4 x 0.2 inpainting block, x4 box
super-resolution, 10 % compressed-sensing measurements with the `auto` operator) on --num_targets
images of each set: in-domain, real digits (built-in generator) or generated images (any other),
and out-of-domain photos (scikit-learn's samples by default). Each space inverts the measurement
with its own defaults (its own number of steps too, unless --steps; e.g. --spaces=sphinx runs the
public code's 5000); the classical baseline (gaussjax/studies/baselines.py: best-σ blur, diffusion
fill, bicubic, minimum norm) solves the same measurement. With --encoder, denoising and inpainting
also run from the encoder's code of the measurement (rows SPACE+encoder), with the defaults
of a start from a code (no latent-noise ramp). Writes report.md
(PSNR against the clean targets, gain over the baseline), results.json (every image's PSNR) and
grid_TASK_SET.png (clean | measurement | baseline | each space).
"""

import numpy as np
from absl import flags

from experiments import study_flags
from gaussjax import cli
from gaussjax.encoding import saved
from gaussjax.files import images as image_files
from gaussjax.files import photos
from gaussjax.inversion import tasks as task_lib
from gaussjax.inversion.config import InversionConfig
from gaussjax.inversion.engine import ENCODABLE_TASKS
from gaussjax.networks.builtin import BUILTIN_LABEL
from gaussjax.reports.markdown import Report
from gaussjax.reports.progress import Progress
from gaussjax.studies import baselines, encoder_eval, inversions, task_eval
from gaussjax.training import digits

PROBLEMS = [t for t in task_lib.TASKS if t != "invert"]
_TASKS = flags.DEFINE_list("tasks", PROBLEMS, f"Tasks, from {PROBLEMS}.")
_SPACES = flags.DEFINE_list("spaces", ["w", "wplus", "f_zplus"], "Latent spaces.")
_STEPS = flags.DEFINE_integer("steps", None, "Optimisation steps; default: each space's own.")
_NUM_TARGETS = flags.DEFINE_integer("num_targets", 8, "Targets per set.")
_SETS = flags.DEFINE_list("sets", ["in", "out"], "Target sets: in (domain), out (photos).")
_OOD = flags.DEFINE_string(
    "ood_images", None, "Out-of-domain targets (DIR or GLOB); default: scikit-learn's photos."
)
_ENCODER = flags.DEFINE_string(
    "encoder", None, "Encoder (DIR or builtin): also start denoise/inpaint from its code."
)
COLUMNS = [
    ("task", "task"),
    ("targets", "targets"),
    ("method", "method"),
    (("psnr_mean", "psnr_std"), "PSNR dB"),
    (("gain_mean", "gain_std"), "gain over baseline dB"),
    ("beats_baseline", "images above baseline"),
]


def target_sets(study) -> dict:
    """{set name: Targets} of --sets: in-domain ("in": real digits for the built-in generator,
    else generated) and out-of-domain ("out": --ood_images, by default scikit-learn's photos)."""
    n, cfg, sets = _NUM_TARGETS.value, study.cfg, {}
    if "in" in _SETS.value and study_flags.GENERATOR.value:
        seeds = [study_flags.SEED.value]
        sets["generated"] = inversions.generated_targets(study, "wplus", n, seeds)
    elif "in" in _SETS.value:
        real = digits.training_images(cfg.img_resolution, cfg.img_channels)[-n:]
        sets["real digits"] = encoder_eval.image_targets(real, "digit", cfg)
    if "out" in _SETS.value:
        paths = image_files.image_files(_OOD.value or str(photos.sample_photos_dir()))[:n]
        pixels = np.stack(
            [
                image_files.to_float(
                    image_files.load_image(p, cfg.img_resolution, cfg.img_channels)
                )
                for p in paths
            ]
        )
        sets["photos"] = encoder_eval.image_targets(pixels, "photo", cfg)
    return sets


def methods(task: str, encoder) -> list[tuple[str, str, object]]:
    """(row name, space, encoder or None) for every generator row of a task."""
    rows = [(space, space, None) for space in _SPACES.value]
    if encoder is not None and task in ENCODABLE_TASKS:
        rows += [
            (f"{s}+encoder", s, encoder)
            for s in _SPACES.value
            if s in ("w", "wplus") or s.startswith("f_")
        ]
    return rows


def config_for(task: str, space: str, from_encoder: bool = False) -> InversionConfig:
    return task_eval.task_config(task, space, from_encoder, _STEPS.value)


def operator_line(task: str, record: dict) -> str:
    """'compressed_sensing: 307 gaussian measurements, task_seed 0' (record: tasks.describe)."""
    what = f"{record['cs_measurements']} {record['cs_operator']} measurements, " if record else ""
    return f"{task}: {what}task_seed {config_for(task, 'wplus').problem.task_seed}"


def write_grid(path, clean, baseline, generated: dict) -> None:
    """One row per target: clean | measurement (if an image) | baseline | each generator row."""
    columns = [clean]
    if baseline["measurement"] is not None:
        columns.append(baseline["measurement"])
    columns += [baseline["images"]] + [run["images"] for run in generated.values()]
    tiles = np.stack(columns, axis=1).reshape(-1, *clean.shape[1:])
    image_files.save_png(
        path, image_files.make_grid(image_files.to_uint8(tiles), columns=len(columns))
    )


def run() -> None:
    outdir = study_flags.outdir()
    if (_STEPS.value is not None and _STEPS.value < 1) or _NUM_TARGETS.value < 1:
        raise ValueError("need --steps and --num_targets >= 1")
    if not _SETS.value or set(_SETS.value) - {"in", "out"}:
        raise ValueError(f"--sets must be in and/or out, got {_SETS.value}")
    unknown = sorted(set(_TASKS.value) - set(PROBLEMS))
    if unknown:
        raise ValueError(f"unknown --tasks {unknown}; choose from {PROBLEMS}")
    study = study_flags.study()
    encoder = None
    if _ENCODER.value:
        encoder = saved.load_encoder(_ENCODER.value)
        encoder.check_generator(study.fingerprint)
    sets = target_sets(study)
    rows, per_image, operators = [], {}, {}
    progress = Progress(len(_TASKS.value) * len(sets), "task x target set")
    for task in _TASKS.value:
        operators[task] = task_lib.describe(config_for(task, "wplus").problem, study.cfg)
        for set_name, targets in sets.items():
            baseline = task_eval.baseline_run(study, config_for(task, "wplus"), targets)
            rows.append(
                task_eval.summary_row(
                    task, set_name, baselines.NAMES[task], baseline, baseline["psnr"]
                )
            )
            if "input_psnr" in baseline:
                noisy = {"psnr": baseline["input_psnr"]}
                rows.append(
                    task_eval.summary_row(task, set_name, "noisy input", noisy, baseline["psnr"])
                )
            generated = {}
            for name, space, enc in methods(task, encoder):
                config = config_for(task, space, from_encoder=enc is not None)
                generated[name] = task_eval.generator_run(study, config, targets, enc)
                rows.append(
                    task_eval.summary_row(task, set_name, name, generated[name], baseline["psnr"])
                )
            per_image[f"{task} {set_name}"] = {
                "names": targets.names,
                "baseline": baseline["psnr"],
                "baseline_settings": baseline["settings"],
                **{name: r["psnr"] for name, r in generated.items()},
            }
            write_grid(
                outdir / f"grid_{task}_{set_name.replace(' ', '_')}.png",
                targets.pixels,
                baseline,
                generated,
            )
            progress.tick(f"{task}, {set_name}")
    settings = {
        "generator": study_flags.GENERATOR.value or BUILTIN_LABEL,
        "steps": {s: config_for(_TASKS.value[0], s).optim.num_steps for s in _SPACES.value},
        "num_targets": _NUM_TARGETS.value,
        "spaces": _SPACES.value,
        "encoder": None if encoder is None else encoder.source,
        "operators": operators,
        "seed": study_flags.SEED.value,
    }
    report = Report("Inverse problems: the generator against classical baselines")
    report.text(
        f"Generator: {settings['generator']}; each task's and space's defaults"
        + (f" but {_STEPS.value} steps" if _STEPS.value else "")
        + f"; {_NUM_TARGETS.value} targets per set. PSNR against the clean targets; the gain "
        "is over the classical baseline on the same measurement, image by image. Operators: "
        + "; ".join(operator_line(t, d) for t, d in operators.items())
        + "."
    )
    report.table("tasks", rows, COLUMNS)
    for task in _TASKS.value:
        for set_name in sets:
            name = f"grid_{task}_{set_name.replace(' ', '_')}.png"
            report.image(
                name,
                f"{task}, {set_name}: clean | measurement | baseline | "
                + " | ".join(n for n, _, _ in methods(task, encoder)),
            )
    report.write(outdir, {"settings": settings, "per_image": per_image})
    print(report.markdown(), flush=True)
    print(f"wrote {outdir / 'report.md'}, results.json and grid_*.png")


def main(argv):
    del argv
    study_flags.run_main(run)


if __name__ == "__main__":
    cli.run(main)
