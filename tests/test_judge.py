"""The realism judge: deterministic under a seed, its pass mark set on held-out real images, saved
and read back exactly, tied to its generator; the built-in one judges the built-in generator."""

import dataclasses
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_module

from gaussjax.files import checkpoints, images
from gaussjax.networks.builtin import BUILTIN_DIR
from gaussjax.networks.stylegan2 import PureGenerator
from gaussjax.studies import realism
from gaussjax.training import digits
from gaussjax.training import judge as judge_lib

TINY_JUDGE = judge_lib.JudgeConfig(steps=6, batch_size=4, steps_per_dispatch=3)


def tiny_reals(count=40):
    return digits.training_images(16)[:count]


@pytest.fixture(scope="module")
def tiny_judge():
    return judge_lib.train_judge(
        tiny_module(), tiny_reals(), TINY_JUDGE, seed=0, log=lambda _: None
    )


def test_judge_is_deterministic_under_a_seed(tiny_judge):
    probe = np.concatenate([tiny_reals(), -tiny_reals()[:8]])
    again = judge_lib.train_judge(tiny_module(), tiny_reals(), TINY_JUDGE, 0, log=lambda _: None)
    other = judge_lib.train_judge(tiny_module(), tiny_reals(), TINY_JUDGE, 1, log=lambda _: None)
    np.testing.assert_array_equal(again.scores(probe), tiny_judge.scores(probe))
    assert again.threshold == tiny_judge.threshold
    assert not np.allclose(other.scores(probe), tiny_judge.scores(probe))
    # Scores are per image: judging a subset gives the same numbers (minibatch-std group 1).
    np.testing.assert_allclose(tiny_judge.scores(probe[3:5]), tiny_judge.scores(probe)[3:5], 1e-5)


def test_bad_judge_settings_are_refused():
    for bad in (
        {"steps": 0},
        {"held_out_fraction": 1.0},
        {"real_pass_rate": 0.0},
        {"negative_fraction": 2.0},
    ):
        with pytest.raises(ValueError, match="must be|needs"):
            judge_lib.JudgeConfig(**bad)


def test_pass_mark_lets_the_set_share_of_held_out_reals_through(tiny_judge):
    _, held_out = judge_lib.split_reals(tiny_reals(), TINY_JUDGE, seed=0)
    assert len(held_out) == 20
    passed = tiny_judge.realistic(held_out).mean()
    assert TINY_JUDGE.real_pass_rate <= passed <= TINY_JUDGE.real_pass_rate + 1 / len(held_out)


def test_judge_directory_round_trip_and_generator_check(tiny_judge, tmp_path):
    judge_lib.save_judge(tmp_path / "judge", tiny_judge, tiny_module().cfg)
    loaded = judge_lib.load_judge(tmp_path / "judge")
    probe = tiny_reals(12)
    np.testing.assert_array_equal(loaded.scores(probe), tiny_judge.scores(probe))
    assert loaded.threshold == tiny_judge.threshold
    loaded.check_generator(checkpoints.generator_fingerprint(tiny_module()))
    with pytest.raises(ValueError, match="trained against generator"):
        loaded.check_generator("0123456789abcdef")
    with pytest.raises(FileNotFoundError, match="not a realism judge"):
        judge_lib.load_judge(tmp_path)


def test_negatives_are_noise_cross_fades_and_blanks():
    # Real images: black and a +-1 checkerboard; a fade of the two is c * checkerboard with
    # c = (1 - t) or t in [0.3, 0.7], or c in {0, 1} when both picks are the same image.
    checker = np.indices((16, 16)).sum(0) % 2 * 2.0 - 1.0
    reals = jnp.asarray(np.stack([np.zeros((16, 16)), checker])[..., None].repeat(3, -1))
    made = np.asarray(judge_lib.negatives(jax.random.key(0), reals, 30))
    assert made.shape == (30, 16, 16, 3) and np.all(np.abs(made) <= 1)
    noise, fades, blanks = made[0::3], made[1::3], made[2::3]
    assert np.all(np.std(noise, axis=(1, 2, 3)) > 0.5)  # uniform on [-1, 1]: std 0.577
    assert np.all(np.ptp(blanks, axis=(1, 2, 3)) == 0)
    amplitude = (fades[..., 0] * checker).mean(axis=(1, 2))
    np.testing.assert_allclose(fades[..., 0], amplitude[:, None, None] * checker, atol=1e-6)
    assert all(a in (0.0, 1.0) or 0.3 <= a <= 0.7 for a in np.round(amplitude, 6))
    assert any(0.3 <= a <= 0.7 for a in amplitude)


def test_judge_images_fractions_and_ratio(tiny_judge):
    probe = tiny_reals(10)
    everything = realism.Judges(dataclasses.replace(tiny_judge, threshold=-np.inf))
    nothing = realism.Judges(dataclasses.replace(tiny_judge, threshold=np.inf))
    assert realism.judge_images(everything, probe)["realistic"] == 1.0
    assert realism.judge_images(nothing, probe)["realistic"] == 0.0
    assert np.isnan(realism.judge_images(realism.Judges(), probe)["confident_digit"])
    assert realism.ratio(0.6, 0.3) == 2.0 and realism.ratio(0.5, 0.0) == np.inf
    assert np.isnan(realism.ratio(0.0, 0.0))


def test_builtin_judge_judges_the_builtin_generator():
    generator = checkpoints.load_generator_module(BUILTIN_DIR)
    judges = realism.load_judges(None, checkpoints.generator_fingerprint(generator), 32, True)
    judge = judges.discriminator
    reals = digits.training_images(32)
    _, held_out = judge_lib.split_reals(reals, judge_lib.JudgeConfig(), judge.record["seed"])
    assert abs(judge.realistic(held_out).mean() - 0.9) < 0.01
    # What no generator should draw fails (noise, blank images, cross-fades of two real digits);
    # the generator's own samples sit between those and the real digits (D was trained to tell
    # them apart from the real digits).
    noise = np.random.default_rng(0).uniform(-1, 1, (16, 32, 32, 3)).astype(np.float32)
    blank = np.full((4, 32, 32, 3), -1.0, np.float32)
    fades = 0.5 * (held_out[:100] + held_out[100:200])
    assert judge.realistic(noise).mean() == 0.0 and judge.realistic(blank).mean() == 0.0
    assert judge.realistic(fades).mean() < 0.2
    fns, params = PureGenerator.split(generator)
    ws = jax.jit(fns.mapping)(params, np.random.RandomState(0).randn(64, 64).astype(np.float32))
    samples = np.asarray(jax.jit(fns.synthesis)(params, ws))  # noise_mode "const"
    assert 0.2 < judge.realistic(samples).mean() < 0.7
    with pytest.raises(ValueError, match="trained against generator"):
        realism.load_judges("builtin", "0123456789abcdef", 32, False)


@pytest.mark.slow
def test_train_judge_launcher(tmp_path):
    generator_dir = tmp_path / "gen"
    checkpoints.save_generator(generator_dir, tiny_module(), log=lambda _: None)
    (tmp_path / "reals").mkdir()
    for i, image in enumerate(images.to_uint8(tiny_reals(8))):
        images.save_png(tmp_path / "reals" / f"{i}.png", image)
    command = [sys.executable, "-m", "experiments.train_judge", f"--generator={generator_dir}"]
    refused = subprocess.run(
        [*command, f"--outdir={tmp_path / 'judge'}"], capture_output=True, text=True
    )
    assert refused.returncode == 1 and refused.stderr.strip().endswith(
        "--images is required for a generator other than the built-in one"
    )
    flags = [f"--images={tmp_path / 'reals'}", "--steps=2", "--batch_size=2"]
    proc = subprocess.run(
        [*command, *flags, f"--outdir={tmp_path / 'judge'}"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pass mark" in proc.stdout
    judge = judge_lib.load_judge(tmp_path / "judge")
    assert judge.record["training"]["steps"] == 2 and judge.record["real_images"] == 8
    again = subprocess.run(
        [*command, *flags, f"--outdir={tmp_path / 'judge'}"], capture_output=True, text=True
    )
    assert again.returncode == 1 and "already exists" in again.stderr
