r"""Compares latent spaces at equal steps: PSNR (and LPIPS with --vgg) per space, in-domain and out-of-domain.

    python -m experiments.compare_spaces --outdir=out/spaces --steps=300 \
        [--generator=DIR] [--ood_images=DIR|GLOB] [--spaces=w,wplus,z,zplus,f_w,f_wplus,f_z,f_zplus] \
        [--num_generated=4] [--vgg=FILE] [--override=f_zplus:feature_reg_weight=0,learning_rate=0.05]

In-domain targets are images the generator makes from seeded latents; out-of-domain targets are
--ood_images (images the generator did not make). Every space runs with its own defaults except the
number of steps, through the same resumable pipeline as experiments.invert (one subfolder per space
and target set). Writes report.md (a markdown table) and report.json in --outdir.
"""

import json
import pathlib
import sys

import numpy as np
from absl import flags

from gaussjax import cli
from gaussjax.files import results
from gaussjax.inversion import pipeline
from gaussjax.inversion.engine import InversionConfig
from gaussjax.inversion.spaces import SPACES

_OUTDIR = flags.DEFINE_string("outdir", None, "Output directory (resumable).")
_GENERATOR = flags.DEFINE_string(
    "generator", None, "Generator directory; default: the demo generator."
)
_OOD = flags.DEFINE_string("ood_images", None, "Out-of-domain targets (directory, glob or file).")
_SPACES = flags.DEFINE_list("spaces", list(SPACES), "Spaces to compare.")
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
    sets = {"in-domain": None}
    if _OOD.value:
        sets["out-of-domain"] = _OOD.value
    return sets


def run_one(label, space, overrides, set_name, images) -> dict:
    """Inverts one target set in one space; the mean/min PSNR (and LPIPS) of its results."""
    config = InversionConfig.for_space(space, num_steps=_STEPS.value, **overrides)
    outdir = pathlib.Path(_OUTDIR.value) / f"{label.replace('*', '_').replace(',', '_')}_{set_name}"
    spec = pipeline.RunSpec(
        outdir=outdir,
        config=config,
        generator=_GENERATOR.value,
        images=images,
        num_generated=_NUM_GENERATED.value,
        prior_samples=_PRIOR_SAMPLES.value,
        batch_size=_BATCH.value,
        vgg=_VGG.value,
        lpips_lin=_LPIPS_LIN.value,
    )
    pipeline.run(spec)
    ok = [r for r in results.read_summary(outdir) if r["status"] == "ok"]
    row = {
        "space": label,
        "targets": set_name,
        "images": len(ok),
        "loss": ok[0]["loss_used"] if ok else None,
    }
    for metric in ("psnr", "lpips"):
        values = [r[metric] for r in ok if r.get(metric) is not None]
        if values:
            row[f"{metric}_mean"], row[f"{metric}_worst"] = (
                float(np.mean(values)),
                float(min(values) if metric == "psnr" else max(values)),
            )
    return row


def markdown(rows) -> str:
    lines = [
        f"Latent spaces at {_STEPS.value} steps (generator: {_GENERATOR.value or 'built-in demo'})",
        "",
        "| space | targets | images | loss | PSNR mean dB | PSNR worst dB | LPIPS mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lpips = f"{r['lpips_mean']:.4f}" if "lpips_mean" in r else "-"
        lines.append(
            f"| {r['space']} | {r['targets']} | {r['images']} | {r['loss']} | "
            f"{r.get('psnr_mean', float('nan')):.2f} | {r.get('psnr_worst', float('nan')):.2f} | {lpips} |"
        )
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    if not _OUTDIR.value:
        sys.exit("error: --outdir is required")
    rows = []
    try:
        for label, space, overrides in runs():
            for set_name, images in target_sets().items():
                rows.append(run_one(label, space, overrides, set_name, images))
                print(markdown(rows).splitlines()[-1], flush=True)
    except (ValueError, FileNotFoundError, OSError) as e:
        sys.exit(f"error: {e}")
    outdir = pathlib.Path(_OUTDIR.value)
    (outdir / "report.md").write_text(markdown(rows))
    (outdir / "report.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\n{markdown(rows)}\nwrote {outdir / 'report.md'} and report.json")


if __name__ == "__main__":
    cli.run(main)
