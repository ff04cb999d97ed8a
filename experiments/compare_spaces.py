r"""Compares latent spaces and tasks at equal steps over several seeds: PSNR (and LPIPS with --vgg),
in-domain and out-of-domain.

    python -m experiments.compare_spaces --outdir=out/spaces --steps=300 \
        [--generator=DIR] [--ood_images=DIR|GLOB] [--spaces=w,wplus,...,sphinx] \
        [--tasks=invert,denoise,inpaint,super_resolution,compressed_sensing] [--seeds=0,1,2] \
        [--num_generated=4] [--vgg=FILE] [--override=f_zplus:feature_reg_weight=0,learning_rate=0.05]

In-domain targets are images the generator makes from seeded latents (other images for every
seed); out-of-domain targets are --ood_images, by default the natural photos that ship with
scikit-learn (files/photos.py), center-cropped and resized. Every space runs with its own defaults
except the number of steps, through the same resumable pipeline as experiments.invert (one
subfolder per row, task, target set and seed). PSNR is against the clean targets. Writes
report.md (mean ± std over seeds of each run's mean), report.json (every run) and, per task and
target set, grid_TASK_SET.png: one row per target, its clean image then each space's result
(seed of the first --seeds).
"""

import json
import pathlib
import sys

import numpy as np
from absl import flags
from PIL import Image

from gaussjax import cli
from gaussjax.files import images, photos, results
from gaussjax.inversion import pipeline
from gaussjax.inversion.run_outputs import TARGETS_DIR
from gaussjax.inversion.spaces import SPACES
from gaussjax.inversion.tasks import TASKS
from gaussjax.networks.builtin import BUILTIN_LABEL
from gaussjax.studies import task_eval

_OUTDIR = flags.DEFINE_string("outdir", None, "Output directory (resumable).")
_GENERATOR = flags.DEFINE_string(
    "generator", None, "Generator directory; default: the built-in one."
)
_OOD = flags.DEFINE_string(
    "ood_images",
    None,
    "Out-of-domain targets (directory, glob or file); default: scikit-learn's sample photos; "
    "'none': in-domain only.",
)
_SPACES = flags.DEFINE_list("spaces", list(SPACES), "Spaces to compare.")
_TASKS = flags.DEFINE_list("tasks", ["invert"], f"Tasks, from {list(TASKS)}.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (targets and optimisation).")
_STEPS = flags.DEFINE_integer("steps", 300, "Steps, equal for every space.")
_NUM_GENERATED = flags.DEFINE_integer("num_generated", 4, "In-domain targets.")
_BATCH = flags.DEFINE_integer("batch_size", 4, "Batch size.")
_PRIOR_SAMPLES = flags.DEFINE_integer(
    "prior_samples", 10000, "Samples when a prior has to be fitted."
)
_VGG = flags.DEFINE_string(
    "vgg", None, "LPIPS weights (see experiments.invert); without: MSE only."
)
_LPIPS_LIN = flags.DEFINE_string("lpips_lin", None, "LPIPS lin weights (with a torchvision --vgg).")
_OVERRIDES = flags.DEFINE_multi_string(
    "override",
    [],
    "SPACE:field=value,... extra settings for one space (an extra row named SPACE*).",
)


def parse_override(spec: str) -> tuple[str, dict]:
    """'f_zplus:feature_reg_weight=0,learning_rate=0.05' -> ('f_zplus', {...: float})."""
    space, _, settings = spec.partition(":")
    try:
        return space, {k: float(v) for k, v in (s.split("=") for s in settings.split(","))}
    except ValueError as e:
        raise ValueError(f"--override must be SPACE:field=value,..., got {spec!r}") from e


def runs():
    """(row label, space, overrides) for every row of the table."""
    rows = [(space, space, {}) for space in _SPACES.value]
    for spec in _OVERRIDES.value:
        space, overrides = parse_override(spec)
        label = space + "*" + ",".join(f"{k}={v:g}" for k, v in overrides.items())
        rows.append((label, space, overrides))
    return rows


def target_sets():
    """{set name: --images spec or None (generated)}."""
    sets = {"in-domain": None}
    if _OOD.value != "none":
        sets["out-of-domain"] = _OOD.value or str(photos.sample_photos_dir())
    return sets


def parsed_seeds() -> list[int]:
    try:
        return [int(s) for s in _SEEDS.value]
    except ValueError as e:
        raise ValueError(f"--seeds must be integers, got {_SEEDS.value}") from e


def run_dir(label, task, set_name, seed) -> pathlib.Path:
    name = f"{label.replace('*', '_').replace(',', '_')}_{task}_{set_name}_seed{seed}"
    return pathlib.Path(_OUTDIR.value) / name


def run_one(label, space, overrides, task, set_name, images_spec, seed) -> dict:
    """Runs one space / task / target set / seed; the mean PSNR (and LPIPS) of its results."""
    config = task_eval.task_config(task, space, num_steps=_STEPS.value, **overrides)
    outdir = run_dir(label, task, set_name, seed)
    spec = pipeline.RunSpec(
        outdir=outdir,
        config=config,
        generator=_GENERATOR.value,
        images=images_spec,
        num_generated=_NUM_GENERATED.value,
        seed=seed,
        prior_samples=_PRIOR_SAMPLES.value,
        batch_size=_BATCH.value,
        vgg=_VGG.value,
        lpips_lin=_LPIPS_LIN.value,
        log=lambda _: None,
    )
    pipeline.run(spec)
    ok = [r for r in results.read_summary(outdir) if r["status"] == "ok"]
    row = {"space": label, "task": task, "targets": set_name, "seed": seed, "images": len(ok)}
    row["loss"] = ok[0]["loss_used"] if ok else None
    for metric in ("psnr", "lpips"):
        values = [r[metric] for r in ok if r.get(metric) is not None]
        if values:
            row[metric] = float(np.mean(values))
    return row


def aggregate(per_seed: list[dict]) -> list[dict]:
    """One row per (space, task, targets): mean and std over seeds of each metric."""
    groups = {}
    for r in per_seed:
        groups.setdefault((r["space"], r["task"], r["targets"]), []).append(r)
    rows = []
    for (space, task, targets), group in groups.items():
        row = {"space": space, "task": task, "targets": targets, "seeds": len(group)}
        row["images"], row["loss"] = group[0]["images"], group[0]["loss"]
        for metric in ("psnr", "lpips"):
            values = [r[metric] for r in group if metric in r]
            if values:
                row[f"{metric}_mean"], row[f"{metric}_std"] = np.mean(values), np.std(values)
        rows.append(row)
    return rows


def _mean_std(row, metric, digits) -> str:
    if f"{metric}_mean" not in row:
        return "-"
    return f"{row[f'{metric}_mean']:.{digits}f} ± {row[f'{metric}_std']:.{digits}f}"


def markdown(rows, seeds) -> str:
    lines = [
        f"Latent spaces at {_STEPS.value} steps, seeds {seeds} "
        f"(generator: {_GENERATOR.value or BUILTIN_LABEL}); PSNR against the clean targets",
        "",
        "| space | task | targets | images/seed | loss | PSNR dB | LPIPS |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['space']} | {r['task']} | {r['targets']} | {r['images']} | {r['loss']} | "
            f"{_mean_std(r, 'psnr', 2)} | {_mean_std(r, 'lpips', 4)} |"
        )
    return "\n".join(lines) + "\n"


def write_grid(path: pathlib.Path, labels, task, set_name, seed) -> None:
    """Targets x (clean target, each row label's result) of one task and target set."""
    first = run_dir(labels[0], task, set_name, seed)
    names = sorted(p.stem for p in (first / TARGETS_DIR).glob("*.png"))
    tiles = []
    for name in names:
        tiles.append(_load_png(first / TARGETS_DIR / f"{name}.png"))
        tiles += [_load_png(run_dir(lb, task, set_name, seed) / f"{name}.png") for lb in labels]
    if tiles:
        images.save_png(path, images.make_grid(np.stack(tiles), columns=len(labels) + 1))


def _load_png(path) -> np.ndarray:
    with Image.open(path) as pil:
        return np.asarray(pil.convert("RGB"))


def main(argv):
    del argv
    if not _OUTDIR.value:
        sys.exit("error: --outdir is required")
    per_seed = []
    try:
        unknown = sorted(set(_TASKS.value) - set(TASKS))
        if unknown:
            raise ValueError(f"unknown --tasks {unknown}; choose from {list(TASKS)}")
        seeds, sets = parsed_seeds(), target_sets()
        for label, space, overrides in runs():
            for task in _TASKS.value:
                for set_name, images_spec in sets.items():
                    for seed in seeds:
                        row = run_one(label, space, overrides, task, set_name, images_spec, seed)
                        per_seed.append(row)
                        print(json.dumps(row), flush=True)
    except (ValueError, FileNotFoundError, OSError) as e:
        sys.exit(f"error: {e}")
    outdir = pathlib.Path(_OUTDIR.value)
    rows = aggregate(per_seed)
    (outdir / "report.md").write_text(markdown(rows, seeds))
    (outdir / "report.json").write_text(json.dumps(per_seed, indent=2) + "\n")
    labels = [label for label, _, _ in runs()]
    for task in _TASKS.value:
        for set_name in sets:
            write_grid(outdir / f"grid_{task}_{set_name}.png", labels, task, set_name, seeds[0])
    print(f"\n{markdown(rows, seeds)}\nwrote {outdir / 'report.md'}, report.json and grid_*.png")


if __name__ == "__main__":
    cli.run(main)
