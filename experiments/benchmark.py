r"""Inversion speed per generator and batch, against the hardware and the official PyTorch code.

    python -m experiments.benchmark --out=benchmark [--generators=fixtures,demo,c128ch64,ffhq256] \
        [--batch_sizes=1,8] [--steps=3] [--dtype=float32|bfloat16] [--remat=off|on|both] [--lpips] \
        [--microbatches=auto,0,1] [--official_code=PATH/TO/stylegan2-ada-pytorch] [--loader_images=32]

Times the W+ inversion dispatch the run pipeline uses (Adam, MSE [+ LPIPS]; random targets) and
writes OUT.json and OUT.md: per generator and batch the median step time, image-steps/s, the cold
compile time and the time of the same compile again from the persistent cache (a fresh one per
run), FLOPs per step from XLA's cost analysis, the FLOP/s achieved as a fraction of one large
matmul timed on the same device in the same run, XLA's temporary memory and the batch that fits in
the device's memory, with and without rematerialisation (`--remat=both` measures it at the
largest batch), and per --microbatches (images computed together in one pass of the step: auto is
invert's default, one image per device on CPU; 0 the whole batch). With --official_code (a
checkout of NVlabs/stylegan2-ada-pytorch you provide), the shape generators are built by the
official code with a fixed seed and converted, so both sides run the same weights, and the
official projector step (batch 1, force_fp32) is timed in the same run: the speedup column is its
seconds per image-step over ours. The loader table gives images/s
of decoding and resizing camera-sized JPEGs alone, one at a time and read ahead in threads.

Shapes (random weights; speed does not depend on the weights): c128ch64 is a 128 px skip generator
with 64 channels everywhere; ffhq256 the official FFHQ-256 config (channel_base 16384, clamp 256);
ffhq1024 config-f (GPU-sized). On 2 CPU cores ffhq256 takes most of the time (about 5 minutes with
the official step); --generators=fixtures,demo gives a quick look.
"""

import dataclasses
import json
import os
import pathlib
import sys
import tempfile

import jax
import numpy as np
from absl import flags
from flax import nnx

from converters import pytorch_keys
from gaussjax import cli
from gaussjax.files.safe_io import write_bytes_atomic
from gaussjax.inversion import pass_count, resolve_microbatch
from gaussjax.networks.config import GeneratorConfig
from gaussjax.networks.demo import demo_generator
from gaussjax.networks.stylegan2 import Generator
from gaussjax.perf import inversion_step, loader, official_projector

SHAPES = {
    "c128ch64": GeneratorConfig(
        img_resolution=128, channel_base=128 * 64, channel_max=64, mapping_layers=8
    ),
    "ffhq256": GeneratorConfig(
        img_resolution=256, channel_base=16384, channel_max=512, mapping_layers=8, conv_clamp=256
    ),
    "ffhq1024": GeneratorConfig(
        img_resolution=1024, channel_base=32768, channel_max=512, mapping_layers=8
    ),
}
FIXTURES = ("skip32", "cond64_resnet", "orig16_gray")

_OUT = flags.DEFINE_string("out", "benchmark", "Writes OUT.json and OUT.md.")
_GENERATORS = flags.DEFINE_list(
    "generators",
    ["fixtures", "demo", "c128ch64", "ffhq256"],
    f"Any of fixtures, demo, {', '.join(SHAPES)}.",
)
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "8"], "Batch sizes to time.")
_STEPS = flags.DEFINE_integer("steps", 3, "Optimisation steps per timed dispatch.")
_DISPATCHES = flags.DEFINE_integer("dispatches", 2, "Timed dispatches (median) after a warm-up.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Synthesis dtype.")
_REMAT = flags.DEFINE_enum("remat", "both", ["off", "on", "both"], "Rematerialisation.")
_MICROBATCHES = flags.DEFINE_list(
    "microbatches",
    ["auto"],
    "Images per pass of a step to time: auto (invert's default), 0 (the whole batch), n.",
)
_LPIPS = flags.DEFINE_bool("lpips", False, "Add LPIPS-VGG16 at 256 px (random weights).")
_OFFICIAL = flags.DEFINE_string(
    "official_code", None, "Checkout of NVlabs/stylegan2-ada-pytorch to time side by side."
)
_OFFICIAL_STEPS = flags.DEFINE_integer("official_steps", 3, "Timed official steps (median).")
_LOADER_IMAGES = flags.DEFINE_integer(
    "loader_images", 32, "JPEGs (2048x1536) for the loader table; 0 skips it."
)
_FIXTURES = flags.DEFINE_string(
    "fixtures", "../shared/fixtures/stylegan2", "Fixture directory (for `fixtures`)."
)


def generators():
    """(name, Generator, official torch Generator or None) for each requested generator."""
    out = []
    for name in _GENERATORS.value:
        if name == "fixtures":
            out += [(n, G, None) for n, G in fixture_generators(pathlib.Path(_FIXTURES.value))]
        elif name == "demo":
            out.append(("demo", demo_generator(), None))
        elif name in SHAPES:
            out.append((name, *shape_generator(SHAPES[name])))
        else:
            raise ValueError(f"--generators: unknown {name!r}")
    return out


def fixture_generators(directory):
    for name in FIXTURES:
        if (directory / f"{name}.json").exists():
            kwargs = json.loads((directory / f"{name}.json").read_text())["G_kwargs"]
            with np.load(directory / f"{name}_G_ema_state.npz") as data:
                cfg = GeneratorConfig.from_official_kwargs(kwargs)
                yield name, pytorch_keys.generator_from_state_dict(dict(data), cfg)


def shape_generator(cfg):
    """Ours from seeded random weights, or (with --official_code) converted from the official one."""
    if not _OFFICIAL.value:
        return Generator(cfg, rngs=nnx.Rngs(0)), None
    torch_G, state = official_projector.official_generator(_OFFICIAL.value, cfg, seed=0)
    return pytorch_keys.generator_from_state_dict(state, cfg), torch_G


def measure(name, G, torch_G, matmul_rate, memory):
    """Rows of one generator: each batch size (remat as flagged), the official step once."""
    official_s = None
    if torch_G is not None:
        official_s = official_projector.time_official_step(torch_G, _OFFICIAL_STEPS.value)
        print(f"{name}: official step {official_s:.3f} s at batch 1")
    batches = sorted(map(int, _BATCH_SIZES.value))
    rows = []
    for batch in batches:
        remats = {"off": [False], "on": [True], "both": [False, True]}[_REMAT.value]
        for remat in remats if batch == batches[-1] else remats[:1]:
            for microbatch in microbatches(batch):
                timing, cached_s = timed_twice(G, batch, remat, microbatch)
                rows.append(row(name, G, timing, cached_s, matmul_rate, memory, official_s))
                print(markdown_rows(rows[-1:])[0])
    return rows


def microbatches(batch):
    """The --microbatches (None for auto), one per distinct pass size at `batch`."""
    by_size = {}
    for value in _MICROBATCHES.value:
        microbatch = None if value == "auto" else int(value)
        passes = pass_count(batch, resolve_microbatch(microbatch))
        by_size.setdefault(batch // passes, microbatch)
    return [by_size[size] for size in sorted(by_size, reverse=True)]


def timed_twice(G, batch, remat, microbatch):
    """The timing, and the compile time of the same program again (from the persistent cache)."""
    settings = dict(
        batch=batch,
        steps=_STEPS.value,
        dispatches=_DISPATCHES.value,
        dtype=_DTYPE.value,
        remat=remat,
        lpips=_LPIPS.value,
        microbatch=microbatch,
    )
    timing = inversion_step.time_inversion(G, **settings)
    inverter, args = inversion_step.prepare_timed_dispatch(G, **settings)
    return timing, inversion_step.compile_dispatch(inverter, args)[1]


def row(name, G, timing, cached_s, matmul_rate, memory, official_s):
    achieved = timing.achieved_flops
    per_image = timing.step_s / timing.batch
    return {
        "generator": name,
        "resolution": G.cfg.img_resolution,
        **dataclasses.asdict(timing),
        "cached_compile_s": cached_s,
        "achieved_flops": achieved,
        "matmul_fraction": None if achieved is None else achieved / matmul_rate,
        "fits_batch": inversion_step.batch_that_fits(timing, memory),
        "official_s_per_image_step": official_s,
        "speedup_vs_official": None if official_s is None else official_s / per_image,
    }


COLUMNS = (
    ("generator", "generator", "{}"),
    ("resolution", "px", "{}"),
    ("batch", "batch", "{}"),
    ("remat", "remat", "{}"),
    ("images_per_pass", "images/pass", "{}"),
    ("compile_s", "compile s", "{:.1f}"),
    ("cached_compile_s", "cached compile s", "{:.1f}"),
    ("step_s", "step ms", "{:.0f}", 1e3),
    ("image_steps_per_s", "image-steps/s", "{:.2f}"),
    ("flops_per_step", "GFLOP/step", "{:.1f}", 1e-9),
    ("achieved_flops", "GFLOP/s", "{:.1f}", 1e-9),
    ("matmul_fraction", "of matmul", "{:.0%}"),
    ("temp_bytes", "temp MiB", "{:.0f}", 2**-20),
    ("peak_bytes", "peak MiB", "{:.0f}", 2**-20),
    ("fits_batch", "batch that fits", "{}"),
    ("official_s_per_image_step", "official s/image-step", "{:.3f}"),
    ("speedup_vs_official", "vs official", "{:.2f}x"),
)


def markdown_rows(rows):
    def cell(r, key, fmt, scale=1):
        value = r.get(key)
        if value is None:
            return "-"
        return fmt.format(value * scale if scale != 1 else value)

    return ["| " + " | ".join(cell(r, *c[:1], *c[2:]) for c in COLUMNS) + " |" for r in rows]


def loader_rows(count, resolution=256):
    """Loader images/s for `count` JPEGs: one at a time, and read ahead with 2 and 8 threads."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = loader.write_test_jpegs(tmp, count)
        return {
            label: loader.images_per_second(paths, resolution, 3, workers)
            for label, workers in (("sequential", None), ("2 threads", 2), ("8 threads", 8))
        }


def report(header, rows, loader_rates, steps_per_image=1000):
    lines = [header, "", "| " + " | ".join(c[1] for c in COLUMNS) + " |"]
    lines += ["|" + "---|" * len(COLUMNS), *markdown_rows(rows)]
    if loader_rates:
        lines += ["", "| loader (2048x1536 JPEG -> 256 px) | images/s |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in loader_rates.items()]
        best = max(r["image_steps_per_s"] for r in rows) / steps_per_image
        lines += ["", f"Fastest inversion above: {best:.3f} images/s at {steps_per_image} steps."]
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    # A fresh persistent cache: the first compile is cold, the second one hits it.
    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="gaussjax-bench-"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    try:
        todo = generators()
    except ValueError as e:
        sys.exit(f"error: {e}")
    device = jax.devices()[0]
    matmul_rate = inversion_step.matmul_flops_per_s(_DTYPE.value)
    memory = inversion_step.device_memory_bytes()
    header = (
        f"W+ inversion step ({'MSE + LPIPS' if _LPIPS.value else 'MSE'}, Adam, {_DTYPE.value}), "
        f"{device.device_kind} ({device.platform}), jax {jax.__version__}; one {_DTYPE.value} "
        f"4096^2 matmul: {matmul_rate / 1e9:.1f} GFLOP/s; device memory {memory / 2**30:.0f} GiB; "
        f"XLA_FLAGS: {os.environ.get('XLA_FLAGS') or 'none'}."
    )
    print(header)
    rows = [r for name, G, torch_G in todo for r in measure(name, G, torch_G, matmul_rate, memory)]
    loader_rates = loader_rows(_LOADER_IMAGES.value) if _LOADER_IMAGES.value else {}
    out = pathlib.Path(_OUT.value)
    payload = {
        "header": header,
        "matmul_flops_per_s": matmul_rate,
        "rows": rows,
        "loader_images_per_s": loader_rates,
    }
    write_bytes_atomic(out.with_suffix(".json"), json.dumps(payload, indent=1).encode())
    markdown = report(header, rows, loader_rates)
    write_bytes_atomic(out.with_suffix(".md"), markdown.encode())
    print(markdown, flush=True)


if __name__ == "__main__":
    cli.run(main)
