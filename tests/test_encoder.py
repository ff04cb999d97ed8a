"""The encoder (gaussjax/encoding): training lowers its loss and beats the mean latent, a resumed
run equals an uninterrupted one, sharded training equals one device, encoder directories check
their generator, and inversion starts from an encoder's code (down to zero steps)."""

import dataclasses
import functools
import json
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import interruptible_popen, run_invert, tiny_generator, tiny_module
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gaussjax.analysis import prior as prior_lib
from gaussjax.analysis.gaussianize import degaussianize
from gaussjax.encoding import loop, saved, training
from gaussjax.encoding.network import EncoderConfig
from gaussjax.files import checkpoints, results
from gaussjax.inversion import InversionConfig, Inverter, sharding
from gaussjax.networks.stylegan2 import Buffer
from gaussjax.studies.setup import load_study

CFG = training.EncoderTrainConfig(batch_size=8, real_batch_size=4, steps_per_dispatch=4)


@pytest.fixture(scope="module")
def tiny():
    """(cfg, fns, params, PriorStats, fingerprint) of the tiny test generator."""
    gen_cfg, fns, params, _, _ = tiny_generator()
    stats = prior_lib.fit_generator_prior(fns, params, gen_cfg, num_samples=2000, seed=0)
    return gen_cfg, fns, params, stats, checkpoints.generator_fingerprint(tiny_module())


def train(tiny, outdir, kimg, cfg=CFG, snapshot_kimg=0.064):
    gen_cfg, fns, params, stats, fingerprint = tiny
    run = loop.EncoderRun(outdir, kimg, stats, snapshot_kimg=snapshot_kimg, log=lambda _: None)
    return loop.train_encoder(run, fns, params, gen_cfg, fingerprint, cfg)


def code_psnr(fns, params, codes, targets):
    """Mean PSNR of synthesis(codes) [B, num_ws, w_dim] against targets [B, R, R, C]."""
    images = np.asarray(jax.jit(fns.synthesis)(params, codes))
    mse = np.mean(np.square(images - targets), axis=(1, 2, 3))
    return float(np.mean(10 * np.log10(4.0 / mse)))


@pytest.mark.slow
def test_training_lowers_the_loss_and_beats_the_mean_latent(tiny, tmp_path):
    gen_cfg, fns, params, stats, _ = tiny
    train(tiny, tmp_path, 1.6, dataclasses.replace(CFG, batch_size=16), snapshot_kimg=1.6)
    log = [json.loads(line) for line in (tmp_path / loop.LOG_FILE).read_text().splitlines()]
    # The image term halves; the whitened latent term stays near 1 this early (0.1 of the loss).
    assert np.mean([r["image"] for r in log[-5:]]) < 0.6 * np.mean([r["image"] for r in log[:5]])
    assert log[-1]["loss"] < log[0]["loss"]
    encoder = saved.load_encoder(tmp_path)
    z = jax.random.normal(jax.random.key(123), (16, gen_cfg.z_dim))  # seeds unseen in training
    true_ws = jax.jit(fns.mapping)(params, z)
    targets = np.asarray(jax.jit(fns.synthesis)(params, true_ws))
    mean_codes = jnp.broadcast_to(jnp.asarray(stats.mean_w), true_ws.shape)
    encoded = code_psnr(fns, params, encoder.encode(jnp.asarray(targets)), targets)
    assert encoded > code_psnr(fns, params, mean_codes, targets) + 1.0


@pytest.mark.slow
def test_resumed_training_equals_uninterrupted(tiny, tmp_path):
    train(tiny, tmp_path / "straight", 0.128)
    train(tiny, tmp_path / "resumed", 0.064)
    with open(tmp_path / "resumed" / loop.LOG_FILE, "a") as f:
        f.write('{"kimg": 0.096, "iteration": 12, "loss": 1.0}\n{"kim')  # a killed run's tail
    train(tiny, tmp_path / "resumed", 0.128)
    logs = [(tmp_path / name / loop.LOG_FILE).read_text() for name in ("straight", "resumed")]
    assert logs[0] == logs[1] and len(logs[0].splitlines()) == 4
    weights = [saved.load_encoder(tmp_path / name).state for name in ("straight", "resumed")]
    for a, b in zip(jax.tree.leaves(weights[0]), jax.tree.leaves(weights[1])):
        np.testing.assert_array_equal(a, b)
    run_json = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert run_json["generator"] == tiny[4]


def _dispatch(tiny, batch_sharding, mesh=None):
    gen_cfg, fns, params, stats, _ = tiny
    encoder = saved.new_encoder(EncoderConfig.for_generator(gen_cfg), stats, seed=0)
    graph, enc_params, buffers = nnx.split(encoder, nnx.Param, Buffer)
    trainer = training.Trainer(fns, graph, None, CFG, batch_sharding)
    prior = prior_lib.make_prior(stats.mean, stats.cov, stats.negative_slope)
    inputs = (training.init_state(enc_params, CFG), buffers, params, prior, None, None)
    if mesh is not None:
        inputs = sharding.replicate(mesh, inputs)
    state, terms = training.train_dispatch(trainer, *inputs, jax.random.key(0), 3)
    return jax.device_get(state.params), jax.device_get(terms)


@pytest.mark.slow
def test_sharded_training_equals_one_device(tiny):
    mesh = sharding.data_mesh()
    assert mesh.size == 4
    single, single_terms = _dispatch(tiny, None)
    sharded, sharded_terms = _dispatch(tiny, NamedSharding(mesh, P(sharding.DATA_AXIS)), mesh)
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(sharded)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(single_terms["loss"], sharded_terms["loss"], rtol=1e-5)


def test_encoder_directory_round_trips_and_refuses_another_generator(tiny, tmp_path):
    gen_cfg, fns, params, stats, fingerprint = tiny
    encoder = saved.new_encoder(EncoderConfig.for_generator(gen_cfg), stats, seed=0)
    saved.save_encoder(tmp_path / "enc", encoder, fingerprint, {"kimg": 0})
    loaded = saved.load_encoder(tmp_path / "enc")
    loaded.check_generator(fingerprint)
    images = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3), minval=-1, maxval=1)
    # Untrained heads are zero: every row of every code is the prior's mean, degaussianized.
    np.testing.assert_allclose(loaded.encode(images), encoder(images), atol=1e-5)
    np.testing.assert_allclose(
        loaded.encode(images)[0, 0],
        degaussianize(jnp.asarray(stats.mean), stats.negative_slope),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="was trained for generator .* not this one"):
        loaded.check_generator("another")
    with pytest.raises(FileNotFoundError, match="not an encoder directory"):
        saved.load_encoder(tmp_path)


def _zero_step_inverter(tiny, space):
    gen_cfg, fns, params, stats, _ = tiny
    cfg = InversionConfig.for_space(space, num_steps=0, prior_weight=0.0, lpips_weight=0.0)
    z = jax.random.normal(jax.random.key(5), (2, gen_cfg.z_dim))
    codes = fns.mapping(params, z)  # identical rows, so W's mean of rows is the code too
    return Inverter(fns, gen_cfg, cfg, stats.mean_w, stats.w_std), codes


@pytest.mark.parametrize("space", ["w", "wplus"])
def test_zero_step_inversion_renders_the_encoder_code(tiny, space):
    _, fns, params, _, _ = tiny
    inverter, codes = _zero_step_inverter(tiny, space)
    targets = fns.synthesis(params, codes)
    result = inverter.invert(params, targets, jnp.arange(2), encode=lambda _: codes)
    np.testing.assert_allclose(result.images, targets, atol=2e-5)
    np.testing.assert_allclose(result.ws, codes, atol=1e-5)
    assert np.all(np.asarray(result.terms["psnr"]) > 80)


@pytest.mark.parametrize("space", ["f_wplus", "f_zplus"])
def test_feature_spaces_take_f0_from_the_encoder_code(tiny, space):
    _, fns, params, _, _ = tiny
    inverter, codes = _zero_step_inverter(tiny, space)
    targets = fns.synthesis(params, codes)
    state = inverter.init(params, jnp.arange(2), targets, codes)["images"]
    expected = fns.synthesis(params, codes, stop_layer=inverter.space.feature_layer).x
    np.testing.assert_allclose(state["constants"]["f0"]["f"], expected, atol=1e-5)
    np.testing.assert_allclose(state["variables"]["latent"]["f"], expected, atol=1e-5)
    if space == "f_wplus":  # the latent starts at the code too; F/Z+'s z is fitted to it
        np.testing.assert_allclose(state["variables"]["latent"]["wplus"], codes, atol=1e-5)


@pytest.mark.parametrize("space", ["z", "zplus"])
def test_z_spaces_start_from_z_fitted_to_the_encoder_code(tiny, space):
    """The code is one the space can reach (one z's rows; for Z+ a z per row), so the fitted z
    renders it closely, far better than the usual random start."""
    gen_cfg, fns, params, stats, _ = tiny
    cfg = InversionConfig.for_space(space, num_steps=0, prior_weight=0.0, lpips_weight=0.0)
    inverter = Inverter(fns, gen_cfg, cfg, stats.mean_w, stats.w_std)
    rows = 1 if space == "z" else gen_cfg.num_ws
    z = jax.random.normal(jax.random.key(6), (2, rows, gen_cfg.z_dim))
    mapped = jax.vmap(lambda zi: fns.mapping(params, zi))(z)  # [2, rows, num_ws, w_dim]
    codes = mapped[:, 0] if space == "z" else mapped[:, jnp.arange(rows), jnp.arange(rows)]
    targets = fns.synthesis(params, codes)
    fitted = inverter.invert(params, targets, jnp.arange(2), encode=lambda _: codes)
    random_start = inverter.invert(params, targets, jnp.arange(2))
    assert np.all(np.asarray(fitted.terms["psnr"]) > 35)
    assert np.all(np.asarray(fitted.terms["psnr"]) > np.asarray(random_start.terms["psnr"]) + 10)
    np.testing.assert_allclose(
        np.linalg.norm(fitted.latents[space], axis=-1), np.sqrt(gen_cfg.z_dim), rtol=1e-5
    )


def test_sphinx_from_a_code_renders_that_code_from_its_mean_input(tiny):
    gen_cfg, fns, params, stats, _ = tiny
    cfg = InversionConfig.for_space("sphinx", num_steps=0, lpips_weight=0.0)
    inverter = Inverter(fns, gen_cfg, cfg, stats.mean_w, stats.w_std)
    inverter.check_encodable()
    space = inverter.space
    code = jax.random.normal(jax.random.key(3), (gen_cfg.num_ws, gen_cfg.w_dim))
    plain, _ = space.init(params, jax.random.key(0), None)
    fitted, _ = space.init(params, jax.random.key(0), None, code=code)
    np.testing.assert_allclose(space.prior_rows(params, fitted), code, atol=1e-5)
    changed = [k for k in plain if not np.array_equal(plain[k], fitted[k])]
    assert changed == ["dec_b2"]  # only the last biases move: the head's response is kept


def test_tasks_an_encoder_cannot_read_are_refused(tiny):
    gen_cfg, fns, params, stats, _ = tiny
    cfg = InversionConfig.for_space("wplus", num_steps=0, task="super_resolution")
    inverter = Inverter(fns, gen_cfg, cfg, stats.mean_w, stats.w_std)
    with pytest.raises(ValueError, match="task super_resolution: its measurements"):
        inverter.check_encodable()


@pytest.mark.slow
def test_invert_with_an_encoder_and_zero_steps_writes_complete_results(tmp_path):
    study = load_study(tmp_path / "study", prior_samples=2000, log=lambda _: None)
    encoder = saved.new_encoder(EncoderConfig.for_generator(study.cfg), study.stats, seed=0)
    saved.save_encoder(tmp_path / "enc", encoder, study.fingerprint)
    result = run_invert(tmp_path / "out", f"--encoder={tmp_path / 'enc'}", "--steps=0")
    assert result.returncode == 0, result.stderr
    for name in ("generated0000.npz", "generated0000.png", "summary.jsonl", "run.json"):
        assert (tmp_path / "out" / name).exists(), name
    summary = results.read_summary(tmp_path / "out")
    assert len(summary) == 4 and all(np.isfinite(r["psnr"]) for r in summary)
    assert json.loads((tmp_path / "out" / "run.json").read_text())["encoder"] == encoder_fp(
        tmp_path
    )
    refused = run_invert(tmp_path / "no_encoder", "--encoder=none", "--steps=0")
    assert refused.returncode != 0 and "steps=0 needs an encoder" in refused.stderr
    other = run_invert(
        tmp_path / "other", f"--encoder={tmp_path / 'enc'}", "--task=super_resolution"
    )
    assert other.returncode != 0 and "its measurements are not full-size" in other.stderr
    saved.save_encoder(tmp_path / "enc_other", encoder, "a-different-generator")
    wrong = run_invert(tmp_path / "wrong", f"--encoder={tmp_path / 'enc_other'}")
    assert (
        wrong.returncode != 0 and "was trained for generator a-different-generator" in wrong.stderr
    )
    assert not (tmp_path / "wrong").exists()


@pytest.mark.slow
def test_the_builtin_generator_starts_from_its_encoder_unless_told_otherwise(tmp_path):
    runs = {
        "default": [],
        "none": ["--encoder=none"],
        "noise": ["--latent_noise_factor=0.05", "--encoder_refine=2"],
        "sr": ["--task=super_resolution"],
    }
    records = {}
    for name, flags in runs.items():
        result = run_invert(
            tmp_path / name, "--steps=0" if name == "default" else "--steps=2", *flags
        )
        assert result.returncode == 0, result.stderr
        assert ("starting from the built-in encoder" in result.stdout) == (
            name in ("default", "noise")
        )
        records[name] = json.loads((tmp_path / name / "run.json").read_text())
    builtin = saved.load_encoder(saved.BUILTIN).fingerprint
    assert [records[n]["encoder"] for n in runs] == [builtin, None, builtin, None]
    noise = {n: r["latent_noise_factor"] for n, r in records.items()}
    assert noise == {"default": 0.0, "none": 0.05, "noise": 0.05, "sr": 0.05}
    assert [records[n]["encoder_refine"] for n in runs] == [0, 0, 2, 0]


def encoder_fp(tmp_path):
    return saved.load_encoder(tmp_path / "enc").fingerprint


@pytest.mark.slow
def test_encoder_eval_reports_both_starts(tmp_path):
    study = load_study(tmp_path / "out", prior_samples=2000, log=lambda _: None)
    encoder = saved.new_encoder(EncoderConfig.for_generator(study.cfg), study.stats, seed=0)
    saved.save_encoder(tmp_path / "enc", encoder, study.fingerprint)
    flags = ["--spaces=wplus", "--steps=4", "--short_steps=2", "--curve_every=2", "--num_targets=2"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.encoder_eval",
            f"--outdir={tmp_path / 'out'}",
            f"--encoder={tmp_path / 'enc'}",
            "--prior_samples=2000",
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["targets"] for r in data["rows"]] == ["generated", "real digits"]
    for row in data["rows"]:  # an untrained encoder's code is the prior mean: about w_avg's image
        assert abs(row["encoder_start_psnr"] - row["mean_start_psnr"]) < 3
        assert row["steps"] == 4 and row["short_steps"] == 2
        assert np.isfinite([row["mean_short_psnr"], row["encoder_short_psnr"]]).all()
    assert data["throughput"][0]["speedup"] > 1
    assert (tmp_path / "out" / "psnr_curves.png").exists() and (
        tmp_path / "out" / "report.md"
    ).exists()


def test_builtin_encoder_ships_for_the_builtin_generator():
    from gaussjax.files.checkpoints import generator_or_builtin

    encoder = saved.load_encoder(saved.BUILTIN)
    generator = generator_or_builtin(None, log=lambda _: None)
    encoder.check_generator(checkpoints.generator_fingerprint(generator))
    assert encoder.cfg.img_resolution == generator.cfg.img_resolution
    assert encoder.metadata["kimg"] >= 100


@pytest.mark.slow
def test_ctrl_c_names_the_snapshot_a_rerun_resumes_from(tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "experiments.train_encoder",
        f"--outdir={out}",
        "--kimg=50",
        "--snapshot_kimg=0.16",
        "--batch_size=16",
        "--steps_per_dispatch=5",
        "--prior_samples=2000",
    ]
    proc = interruptible_popen(cmd)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / saved.EXPORT_DIR / saved.ENCODER_FILE).exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in stderr
    assert (
        stderr.strip()
        .splitlines()[-1]
        .startswith("interrupted; the same command resumes from its snapshot at 0.")
    )


@pytest.mark.slow
def test_refinement_corrections_bring_the_builtin_encoders_code_closer():
    """0 corrections: the encoder's code itself; 3 corrections w += E(x) - E(G(w)) of the built-in
    encoder: >= 1.5 dB closer on generated digits it never saw (measured +3.0 dB on 8)."""
    from gaussjax.files.checkpoints import generator_or_builtin
    from gaussjax.inversion.engine import refined_codes
    from gaussjax.inversion.targets import generated_targets
    from gaussjax.networks.stylegan2 import PureGenerator, jit_synthesis

    generator = generator_or_builtin(None, log=lambda _: None)
    fns, params = PureGenerator.split(generator)
    encoder = saved.load_encoder(saved.BUILTIN)
    made = generated_targets(fns, params, generator.cfg, space="wplus", count=4, seed=901)
    targets = jnp.asarray(np.stack([t.pixels for t in made]))
    render = functools.partial(jit_synthesis, fns, params)
    once = refined_codes(encoder.encode, render, targets, 0)
    np.testing.assert_array_equal(once, encoder.encode(targets))
    refined = refined_codes(encoder.encode, render, targets, 3)
    assert code_psnr(fns, params, refined, targets) > code_psnr(fns, params, once, targets) + 1.5


def test_refinement_needs_an_encoder_and_the_invert_task(tmp_path):
    from gaussjax.inversion import pipeline

    with pytest.raises(ValueError, match="encoder_refine must be >= 0"):
        InversionConfig.from_flat(encoder_refine=-1)
    with pytest.raises(ValueError, match="encoder_refine works for task invert, not denoise"):
        InversionConfig.from_flat(encoder_refine=2, task="denoise")
    spec = pipeline.RunSpec(tmp_path, InversionConfig.from_flat(encoder_refine=2))
    with pytest.raises(ValueError, match="encoder_refine corrects an encoder's code"):
        pipeline.check_spec(spec)
