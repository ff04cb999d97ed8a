"""The built-in generator is a trained one: a digit classifier recognises its samples as often as
held-out real digits, in every class, evenly (the issue's bar); the random-weight generator fails
the same check; every launcher uses it without --generator."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from gaussjax.files import checkpoints, images
from gaussjax.networks.builtin import BUILTIN_NOTICE
from gaussjax.networks.demo import demo_generator
from gaussjax.training import digits, loop

REPO = pathlib.Path(__file__).resolve().parents[1]
SAMPLES = 200


def builtin_generator():
    """The generator every launcher loads without --generator, through the same loader."""
    notices = []
    generator = checkpoints.generator_or_builtin(None, log=notices.append)
    assert notices == [BUILTIN_NOTICE]
    return generator


@pytest.fixture(scope="module")
def judge():
    return digits.DigitJudge.fit(32)


def test_judge_accepts_real_digits_and_rejects_noise(judge):
    real = digits.training_images(32)[:300]
    assert judge.judge(real)["passes"]
    noise = np.random.default_rng(0).uniform(-1, 1, (300, 32, 32, 3)).astype(np.float32)
    assert not judge.judge(noise)["passes"]


def test_builtin_generator_passes_the_digit_check(judge):
    """The issue's bar at README's sample size (200, seed 0). Measured on the shipped weights
    (300 kimg): ratio 0.93, every class within 0.70-1.45x of uniform; on 2,000 other samples
    (seed 7) ratio 0.92, classes within 0.73-1.24x."""
    verdict = judge.judge(loop.seeded_samples(builtin_generator(), 0, SAMPLES))
    assert verdict["passes"], verdict
    assert verdict["rate_ratio"] >= 0.91, verdict  # not by a hair: 0.933 measured


@pytest.mark.slow
def test_random_weight_generator_fails_the_check(judge):
    assert not judge.judge(loop.seeded_samples(demo_generator(), 0, SAMPLES))["passes"]


@pytest.mark.slow
def test_generate_renders_the_builtin_generator_by_default(tmp_path):
    cmd = [sys.executable, "-m", "experiments.generate", f"--outdir={tmp_path}", "--seeds=0,1"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert BUILTIN_NOTICE in done.stdout
    G = builtin_generator()
    written = sorted(tmp_path.glob("seed*.png"))
    assert len(written) == 2
    z = np.stack([np.random.RandomState(s).randn(G.cfg.z_dim) for s in (0, 1)])
    expected = images.to_uint8(G(z, noise_mode="const"))
    for path, image in zip(written, expected):
        assert np.abs(np.asarray(Image.open(path), int) - image).max() <= 1  # jit vs eager rounding
