"""Shared test set-up: 4 CPU devices (sharding tests), fixture generators, strict numerics, and the
helpers several test modules use (fixture I/O, the tiny SPHInX generator, the invert launcher)."""

import importlib.util
import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

# Must run before any JAX backend starts: sharding tests use 4 CPU devices.
jax.config.update("jax_num_cpu_devices", 4)
# Most of the suite's time is XLA compiling many small programs, and LLVM's optimisation passes are
# a large part of that: without them the suite took 15.4 instead of 22 minutes on 2 cores (-n 2).
# Launchers started by the tests inherit it; users' runs keep XLA's default. The numerics tests
# hold either way.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]
).strip()

from fixtures_path import stylegan2_fixture_dir  # noqa: E402

from converters import pytorch_keys  # noqa: E402
from gaussjax.networks.config import GeneratorConfig  # noqa: E402
from gaussjax.networks.demo import demo_generator  # noqa: E402
from gaussjax.networks.stylegan2 import PureGenerator  # noqa: E402

OFFICIAL_FIXTURES = ("skip32", "cond64_resnet", "orig16_gray")


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    """Launchers (and their subprocesses) share one persistent compilation cache per test session,
    never the user's ~/.cache; under xdist one for all workers, so a program compiled by one
    worker's launcher is loaded by the other's. A size limit turns on JAX's file lock, so that no
    process reads an entry another is still writing."""
    root = tmp_path_factory.getbasetemp()
    path = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "xla_cache"
    path.mkdir(exist_ok=True)
    os.environ["GAUSSJAX_CACHE_DIR"] = str(path)
    if importlib.util.find_spec("filelock"):  # JAX's lock needs it (torch, of [test], brings it)
        os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(8 << 30)
    return path


@pytest.fixture(scope="session")
def fixture_dir():
    return stylegan2_fixture_dir()


def fixture_config(directory, name) -> GeneratorConfig:
    kwargs = json.loads((directory / f"{name}.json").read_text())["G_kwargs"]
    return GeneratorConfig.from_official_kwargs(kwargs)


_GENERATORS = {}


@pytest.fixture
def fixture_generator(fixture_dir):
    """name -> Generator built from the fixture's official G_ema state dict (cached per session)."""

    def build(name):
        if name not in _GENERATORS:
            with np.load(fixture_dir / f"{name}_G_ema_state.npz") as data:
                state_dict = dict(data)
            _GENERATORS[name] = pytorch_keys.generator_from_state_dict(
                state_dict, fixture_config(fixture_dir, name)
            )
        return _GENERATORS[name]

    return build


TOL = 1e-4


def nhwc(images_nchw):
    return np.transpose(images_nchw, (0, 2, 3, 1))


def load_io(fixture_dir, name):
    with np.load(fixture_dir / f"{name}_io.npz") as data:
        return dict(data)


def labels(io):
    return io["c"] if io["c"].shape[1] > 0 else None


def w_statistics(fns, params, z_dim, n=2000):
    """The official projector's w_avg and scalar w_std from seeded samples."""
    z = np.random.RandomState(123).randn(n, z_dim).astype(np.float32)
    w = np.asarray(jax.jit(fns.mapping)(params, z))[:, 0]
    mean = w.mean(0)
    return mean, float(np.sqrt(np.mean(np.sum(np.square(w - mean), axis=1)))), w


@pytest.fixture
def skip32(fixture_dir, fixture_generator):
    G = fixture_generator("skip32")
    fns, params = PureGenerator.split(G)
    io = load_io(fixture_dir, "skip32")
    targets = np.asarray(jax.jit(fns.synthesis)(params, io["ws"]))
    w_mean, w_std, _ = w_statistics(fns, params, G.cfg.z_dim)
    return G, fns, params, io, targets, w_mean, w_std


# A 16 px generator (5 layers, 32 channels): a third of the compile time of the 32 px fixtures.
# Its RGB layers are scaled so that its images, like a trained generator's, lie in about [-1, 1].
TINY = GeneratorConfig(
    z_dim=32,
    w_dim=32,
    img_resolution=16,
    img_channels=3,
    mapping_layers=2,
    channel_base=256,
    channel_max=32,
    architecture="skip",
)
RGB_SCALE = 0.15


def tiny_module():
    """The seeded tiny Generator, its RGB layers scaled by RGB_SCALE."""
    graphdef, state = nnx.split(demo_generator(0, TINY))
    flat = [
        (path, var.replace(var[...] * RGB_SCALE) if path[-2] == "torgb" else var)
        for path, var in nnx.to_flat_state(state)
    ]  # torgb weight and bias (not its affine): the skip output is linear in them
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def tiny_generator():
    """(config, fns, params, w_mean, w_std) of the seeded tiny generator."""
    G = tiny_module()
    fns, params = PureGenerator.split(G)
    z = np.random.RandomState(0).randn(1000, TINY.z_dim).astype(np.float32)
    w = np.asarray(jax.jit(fns.mapping)(params, z))[:, 0]
    w_mean = w.mean(0)
    return G.cfg, fns, params, w_mean, float(np.sqrt(np.mean(np.sum((w - w_mean) ** 2, axis=1))))


FAST = ["--steps=20", "--steps_per_dispatch=10", "--prior_samples=2000", "--batch_size=2"]


def interruptible_popen(cmd) -> subprocess.Popen:
    """Starts `cmd` (text pipes) with SIGINT at its default, so that Python in the child turns it
    into KeyboardInterrupt: a suite started as a background job (`cmd &` in a shell without job
    control) inherits SIGINT ignored, and the Ctrl-C tests would wait for nothing."""
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def run_invert(outdir, *flags, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "experiments.invert", f"--outdir={outdir}", *FAST, *flags],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
