"""Inversion throughput (image-steps/s) for the fixture generators and an FFHQ-256-shaped generator.

    python -m experiments.benchmark [--batch_sizes=1,8] [--steps=20] [--ffhq256] \
        [--fixtures=../shared/fixtures/stylegan2] [--out=benchmark.md]

W+ inversion with the MSE loss and the prior (λ = 1e-5). Times exclude compilation (one warm-up
dispatch first). The FFHQ-256 generator has the official config shape (channel_base 16384,
channel_max 512, z = w = 512, 8 mapping layers) with random weights; speed does not depend on the
weights. Prints a markdown table and writes it to --out.
"""

import json
import pathlib
import time

import jax
import numpy as np
from absl import app, flags
from flax import nnx

from converters import official
from gaussjax.analysis.prior import make_prior
from gaussjax.inversion import InversionConfig, Inverter
from gaussjax.networks.config import GeneratorConfig
from gaussjax.networks.demo import demo_generator
from gaussjax.networks.stylegan2 import Generator, PureGenerator

_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "8"], "Batch sizes to time.")
_STEPS = flags.DEFINE_integer(
    "steps", 20, "Timed optimisation steps per measurement (one dispatch)."
)
_FFHQ = flags.DEFINE_bool("ffhq256", True, "Include the FFHQ-256-shaped generator (slow on CPU).")
_FIXTURES = flags.DEFINE_string(
    "fixtures", "../shared/fixtures/stylegan2", "Fixture directory (optional)."
)
_OUT = flags.DEFINE_string("out", None, "Also write the markdown table here.")

FFHQ256 = GeneratorConfig(
    z_dim=512,
    w_dim=512,
    img_resolution=256,
    channel_base=16384,
    channel_max=512,
    mapping_layers=8,
    conv_clamp=256,
)


def generators():
    """(name, Generator) pairs: fixtures if present, the demo generator, FFHQ-256 shape."""
    out = []
    directory = pathlib.Path(_FIXTURES.value)
    for name in ("skip32", "cond64_resnet", "orig16_gray"):
        if (directory / f"{name}.json").exists():
            cfg = GeneratorConfig.from_official_kwargs(
                json.loads((directory / f"{name}.json").read_text())["G_kwargs"]
            )
            with np.load(directory / f"{name}_G_ema_state.npz") as data:
                out.append((name, official.generator_from_state_dict(dict(data), cfg)))
    if not out:
        out.append(("demo", demo_generator()))
    if _FFHQ.value:
        out.append(("ffhq256-shape", Generator(FFHQ256, rngs=nnx.Rngs(0))))
    return out


def image_steps_per_second(G, batch: int, steps: int) -> float:
    """Times one dispatch of `steps` W+ MSE steps after a warm-up dispatch (compilation)."""
    fns, params = PureGenerator.split(G)
    cfg = InversionConfig(
        space="wplus", num_steps=10 * steps, steps_per_dispatch=steps, prior_weight=1e-5
    )
    prior = make_prior(np.zeros(G.cfg.w_dim), np.eye(G.cfg.w_dim), 0.2)
    inverter = Inverter(fns, G.cfg, cfg, np.zeros(G.cfg.w_dim, np.float32), 1.0)
    res, ch = G.cfg.img_resolution, G.cfg.img_channels
    targets = np.random.RandomState(0).uniform(-1, 1, (batch, res, res, ch)).astype(np.float32)
    feats = inverter.target_features(None, targets)
    state = inverter.init(params, np.arange(batch, dtype=np.int32), targets)
    state, loss = inverter.run(params, None, prior, state, targets, feats)
    jax.block_until_ready(loss)
    start = time.perf_counter()
    state, loss = inverter.run(params, None, prior, state, targets, feats)
    jax.block_until_ready(loss)
    return batch * steps / (time.perf_counter() - start)


def main(argv):
    del argv
    device = jax.devices()[0]
    lines = [
        f"Inversion throughput, W+ / MSE + prior, {jax.device_count()} x {device.device_kind} "
        f"({device.platform}), jax {jax.__version__}",
        "",
        "| generator | resolution | batch | image-steps/s |",
        "|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for name, G in generators():
        for batch in map(int, _BATCH_SIZES.value):
            rate = image_steps_per_second(G, batch, _STEPS.value)
            lines.append(f"| {name} | {G.cfg.img_resolution} | {batch} | {rate:.2f} |")
            print(lines[-1], flush=True)
    if _OUT.value:
        pathlib.Path(_OUT.value).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    app.run(main)
