"""Shared test set-up: 4 CPU devices (sharding tests), fixture generators, strict numerics."""

import json
import os

import jax
import numpy as np
import pytest

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

OFFICIAL_FIXTURES = ("skip32", "cond64_resnet", "orig16_gray")


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    """Launchers (and their subprocesses) share one persistent compilation cache per test session,
    never the user's ~/.cache."""
    path = tmp_path_factory.mktemp("xla_cache")
    os.environ["GAUSSJAX_CACHE_DIR"] = str(path)
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
