r"""Interpolation between inversions with and without the prior (paper Fig. 3).

    python -m experiments.interpolation --outdir=out/interpolation [--generator=DIR] \
        [--prior=prior.npz] [--spaces=wplus] [--prior_weight=1e-4] [--num_pairs=8] [--frames=9] \
        [--steps=200] [--targets=digits|generated] [--judge=DIR|builtin|none] [--seed=0]

Inverts 2 x --num_pairs images without the prior and with --prior_weight: real digits (the default
for the built-in generator) or generated ones (a z per layer for multi-code spaces; the default
for any other generator). Then interpolates between the results of each pair: in the result's own
space (lerp for W/W+, per-row slerp for Z/Z+) and, for every space, on the straight line in V
between the two W+ codes. Smoothness along each path: the largest and mean RMS pixel step between
consecutive frames, their ratio, and the prior energy of the frames. Realism, as a stand-in for
the paper's user study: the in-between frames are scored by the realism judge (--judge; a
discriminator trained against the frozen generator, experiments.train_judge) and, for the built-in
generator, by the digit classifier (gaussjax/studies/realism.py). Writes frame strips, one
animated GIF per pair (left: no prior, right: prior), plots, report.md and results.json.
"""

import numpy as np
from absl import flags

from experiments import study_flags
from gaussjax import cli
from gaussjax.files import images as image_files
from gaussjax.inversion.config import InversionConfig
from gaussjax.reports import plots
from gaussjax.reports.markdown import Report, format_number
from gaussjax.reports.progress import Progress
from gaussjax.studies import encoder_eval, inversions, paths, realism
from gaussjax.training import digits

_SPACES = flags.DEFINE_list("spaces", ["wplus"], "Latent spaces (w, wplus, z, zplus).")
_WEIGHT = flags.DEFINE_float("prior_weight", 1e-4, "λ of the prior runs (the others use 0).")
_NUM_PAIRS = flags.DEFINE_integer("num_pairs", 8, "Pairs of inverted images.")
_FRAMES = flags.DEFINE_integer("frames", 9, "Frames per path, ends included (>= 3).")
_STEPS = flags.DEFINE_integer("steps", 200, "Optimisation steps.")
_TARGETS = flags.DEFINE_enum(
    "targets",
    None,
    ["digits", "generated"],
    "Images to invert; default: digits for the built-in generator, generated for any other.",
)
_JUDGE = study_flags.define_judge_flag()
SINGLE_CODE = ("w", "z")
PATH_SPACES = ("w", "wplus", "z", "zplus")  # F spaces render from F too, which paths do not carry
COLUMNS = [
    ("space", "space"),
    ("path", "path"),
    ("prior_weight", "λ"),
    ("max_step", "largest step"),
    ("mean_step", "mean step"),
    ("max_over_mean", "largest / mean"),
    ("energy_mean", "prior energy mean"),
    ("energy_max", "prior energy max"),
    ("psnr_ends", "PSNR of the ends dB"),
    *realism.COLUMNS,
]
REALISM_COLUMNS = [
    ("space", "space"),
    ("path", "path"),
    ("realistic_without", "realistic (D), λ=0"),
    ("realistic_with", "realistic (D), prior"),
    ("realistic_ratio", "ratio (D)"),
    ("confident_without", "confident digit, λ=0"),
    ("confident_with", "confident digit, prior"),
    ("confident_ratio", "ratio (digit)"),
]
TARGET_TEXT = {"digits": "real digits", "generated": "generated images"}
TARGET_RATIO = 1.5  # prior paths judged realistic at least this much more often (issue target)


def invert(study, space, weight, targets):
    config = InversionConfig.for_space(space, num_steps=_STEPS.value, prior_weight=weight)
    inverter = study.inverter(config)
    result = inverter.invert(
        study.params, targets.pixels, targets.seeds, prior=study.prior if weight > 0 else None
    )
    return inverter.space, result


def pair_paths(study, space, result, pair, ts) -> dict:
    """{path kind: W+ codes [K, num_ws, w_dim]} between results 2·pair and 2·pair + 1."""
    a, b = 2 * pair, 2 * pair + 1
    variables = [{k: np.asarray(v[i]) for k, v in result.latents.items()} for i in (a, b)]
    ws = np.asarray(result.ws)
    kinds = {"V line": paths.v_path_ws(ws[a], ws[b], ts, study.cfg.mapping_negative_slope)}
    native = "slerp" if space.name in ("z", "zplus") else "lerp"
    kinds[native] = paths.native_path_ws(study, space, *variables, ts)
    return kinds


def mean_rows(records) -> list[dict]:
    """Per (space, path, λ): the numbers averaged over pairs."""
    keys = dict.fromkeys((r["space"], r["path"], r["prior_weight"]) for r in records)
    rows = []
    for space, path, weight in keys:
        mine = [
            r
            for r in records
            if (r["space"], r["path"], r["prior_weight"]) == (space, path, weight)
        ]
        numbers = {k: float(np.mean([r[k] for r in mine])) for k, _ in COLUMNS[3:]}
        rows.append({"space": space, "path": path, "prior_weight": weight, **numbers})
    return rows


def path_targets(study, space_name) -> inversions.Targets:
    """2 x --num_pairs images to invert: a seeded draw of real digits, or generated images."""
    count = 2 * _NUM_PAIRS.value
    if target_kind() == "generated":
        return inversions.generated_targets(study, space_name, count, [study_flags.SEED.value])
    real = digits.training_images(study.cfg.img_resolution, study.cfg.img_channels)
    pick = np.random.default_rng(study_flags.SEED.value).choice(len(real), count, replace=False)
    return encoder_eval.image_targets(real[pick], "digit", study.cfg)


def target_kind() -> str:
    return _TARGETS.value or ("generated" if study_flags.GENERATOR.value else "digits")


def run_space(study, judges, space_name, targets, ts, outdir, progress) -> list[dict]:
    records, strips = [], {}
    for weight in (0.0, _WEIGHT.value):
        space, result = invert(study, space_name, weight, targets)
        psnr = np.asarray(result.terms["psnr"])
        for pair in range(_NUM_PAIRS.value):
            for kind, ws_path in pair_paths(study, space, result, pair, ts).items():
                frames = study.render(ws_path)
                numbers = paths.path_numbers(study, ws_path, frames, space_name in SINGLE_CODE)
                records.append(
                    {
                        "space": space_name,
                        "path": kind,
                        "prior_weight": weight,
                        "pair": pair,
                        "psnr_ends": float(psnr[2 * pair : 2 * pair + 2].mean()),
                        **numbers,
                        **realism.judge_images(judges, frames[1:-1]),
                    }
                )
                strips[(pair, kind, weight)] = image_files.to_uint8(frames)
        progress.tick(f"{space_name} λ={weight:g}")
    write_images(outdir, space_name, strips, ts)
    return records


def write_images(outdir, space_name, strips, ts) -> None:
    """SPACE_strips.png (a row per pair, path and λ) and SPACE_pairN.gif (no prior | prior)."""
    pairs = sorted({k[0] for k in strips})
    native = next(k[1] for k in strips if k[1] != "V line")
    weights = sorted({k[2] for k in strips})
    rows = [strips[(p, kind, w)] for p in pairs for kind in (native, "V line") for w in weights]
    image_files.save_png(
        outdir / f"{space_name}_strips.png", image_files.make_grid(np.concatenate(rows), len(ts))
    )
    for pair in pairs:
        side_by_side = np.concatenate([strips[(pair, native, w)] for w in weights], axis=2)
        image_files.save_gif(outdir / f"{space_name}_pair{pair}.gif", side_by_side)


def realism_rows(records, weight) -> list[dict]:
    """Per (space, path): both judges' pass fractions of the in-between frames, λ=0 against
    `weight`, and their ratios."""
    rows = []
    for space, path in dict.fromkeys((r["space"], r["path"]) for r in records):
        mine = [r for r in records if (r["space"], r["path"]) == (space, path)]
        row = {"space": space, "path": path}
        for key, name in (("realistic", "realistic"), ("confident_digit", "confident")):
            without = float(np.mean([r[key] for r in mine if r["prior_weight"] == 0]))
            with_prior = float(np.mean([r[key] for r in mine if r["prior_weight"] == weight]))
            row |= {
                f"{name}_without": without,
                f"{name}_with": with_prior,
                f"{name}_ratio": realism.ratio(with_prior, without),
            }
        rows.append(row)
    return rows


def realism_text(judges, reference: dict, rows) -> str:
    lines = [
        f"Judges: {judges.describe()}. Fractions of the in-between frames (ends excluded) that "
        f"pass; the target images themselves: judged realistic "
        f"{format_number(reference['realistic'])}, confident digit "
        f"{format_number(reference['confident_digit'])}."
    ]
    for r in rows:
        if np.isfinite(r["realistic_ratio"]):
            verdict = "meets" if r["realistic_ratio"] >= TARGET_RATIO else "does NOT meet"
            lines.append(
                f"{r['space']} {r['path']}: prior paths judged realistic "
                f"{r['realistic_ratio']:.2f}x as often as paths without the prior: {verdict} "
                f"the target (>= {TARGET_RATIO}x; the paper's user study: 2-8x)."
            )
    return "\n\n".join(lines)


def step_plot(outdir, records) -> None:
    series = {}
    for space in dict.fromkeys(r["space"] for r in records):
        for r in (r for r in records if r["space"] == space and r["pair"] == 0):
            label = f"{space} {r['path']} λ={r['prior_weight']:g}"
            series[label] = (np.arange(1, len(r["steps"]) + 1), r["steps"])
    dashed = [k for k in series if not k.endswith("λ=0")]
    plots.line_plot(
        outdir / "steps.png", series, xlabel="frame", ylabel="RMS pixel step", dashed=dashed
    )


def run() -> None:
    outdir = study_flags.outdir()
    if _NUM_PAIRS.value < 1 or _FRAMES.value < 3 or _STEPS.value < 1 or _WEIGHT.value <= 0:
        raise ValueError("need --num_pairs >= 1, --frames >= 3, --steps >= 1, --prior_weight > 0")
    unsupported = set(_SPACES.value) - set(PATH_SPACES)
    if unsupported:
        raise ValueError(
            f"--spaces: interpolation supports {PATH_SPACES}, not {sorted(unsupported)}"
        )
    study = study_flags.study()
    judges = study_flags.judges(study, _JUDGE)
    ts = np.linspace(0.0, 1.0, _FRAMES.value)
    progress = Progress(2 * len(_SPACES.value), "inversions")
    records = []
    for space_name in _SPACES.value:
        targets = path_targets(study, space_name)
        records += run_space(study, judges, space_name, targets, ts, outdir, progress)
    reference = realism.judge_images(judges, targets.pixels)
    step_plot(outdir, records)
    report = Report("Interpolation between inversions, with and without the prior")
    report.text(
        f"{_NUM_PAIRS.value} pairs of {TARGET_TEXT[target_kind()]}, {_STEPS.value} steps, {_FRAMES.value} frames; "
        f"λ = 0 versus λ = {_WEIGHT.value:g}; numbers are means over pairs. Steps are RMS pixel "
        "differences between consecutive frames ([-1, 1] units); largest / mean is 1 when change "
        "is spread evenly along the path."
    )
    report.table("paths", mean_rows(records), COLUMNS)
    rows = realism_rows(records, _WEIGHT.value)
    report.text(realism_text(judges, reference, rows))
    report.table("realism", rows, REALISM_COLUMNS)
    report.image("steps.png", "pixel step per frame along the first pair's paths")
    for space_name in _SPACES.value:
        report.image(
            f"{space_name}_strips.png",
            f"{space_name}: per pair, rows lerp (slerp for Z/Z+) then V line, each λ=0 then λ={_WEIGHT.value:g}",
        )
    report.text("Animated: " + ", ".join(f"`{p.name}`" for p in sorted(outdir.glob("*.gif"))))
    settings = {
        "spaces": _SPACES.value,
        "prior_weight": _WEIGHT.value,
        "num_pairs": _NUM_PAIRS.value,
        "frames": _FRAMES.value,
        "steps": _STEPS.value,
        "targets": target_kind(),
        "judges": judges.describe(),
        "seed": study_flags.SEED.value,
    }
    report.write(
        outdir, {"settings": settings, "paths_per_pair": records, "inverted_images": reference}
    )
    print(f"wrote {outdir / 'report.md'}, results.json, strips, GIFs and plots")


def main(argv):
    del argv
    study_flags.run_main(run)


if __name__ == "__main__":
    cli.run(main)
