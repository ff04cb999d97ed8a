"""Forward operators (tasks.py) against closed forms, and inverse problems solved through the engine
on images the generator made: denoising beats its noisy input, inpainting fills the hidden block
better than the diffusion fill, super-resolution fits its measurement and beats bicubic,
compressed sensing recovers the image; experiments.invert --task=inpaint end to end."""

import dataclasses

import jax
import numpy as np
import pytest
from conftest import run_invert, w_statistics
from PIL import Image

from gaussjax.files import checkpoints, images, results
from gaussjax.inversion import InversionConfig, Inverter, psnr, tasks
from gaussjax.networks.config import GeneratorConfig
from gaussjax.networks.stylegan2 import PureGenerator
from gaussjax.studies import baselines, task_eval

CFG16 = GeneratorConfig(z_dim=8, w_dim=8, img_resolution=16, img_channels=3)


def _task(**settings):
    return tasks.make_task(InversionConfig.from_flat(**settings).problem, CFG16)


def test_box_downsampling_and_the_seeded_block_mask():
    x = np.random.RandomState(0).randn(16, 16, 3).astype(np.float32)
    y = np.asarray(_task(task="super_resolution", sr_factor=4).forward(x))
    np.testing.assert_allclose(y[1, 2], x[4:8, 8:12].mean(axis=(0, 1)), rtol=1e-5)
    mask = _task(task="inpaint", task_seed=3).arrays["mask"][..., 0]
    assert mask.sum() == 256 - round(0.4 * 16) * round(0.2 * 16)  # the public 0.4 x 0.2 block
    rows, cols = np.nonzero(mask == 0)
    assert (np.ptp(rows) + 1, np.ptp(cols) + 1) == (6, 3)
    np.testing.assert_array_equal(mask, _task(task="inpaint", task_seed=3).arrays["mask"][..., 0])


def test_inpainting_mask_file(tmp_path):
    from PIL import Image

    known = np.full((32, 32), 255, np.uint8)
    known[:, :16] = 0
    Image.fromarray(known).save(tmp_path / "mask.png")
    mask = _task(task="inpaint", inpaint_mask=str(tmp_path / "mask.png")).arrays["mask"][..., 0]
    np.testing.assert_array_equal(mask[:, :8], 0.0)
    np.testing.assert_array_equal(mask[:, 8:], 1.0)


def test_inpainting_noise_falls_on_the_known_pixels_only():
    """y = mask (x + e): a hidden pixel is not measured, so no noise of it reaches the loss (the
    render's A(G(s)) is 0 there; the noise would be a constant in the MSE and a false LPIPS target)."""
    task = _task(task="inpaint", measurement_std=0.1)
    x = np.random.RandomState(2).uniform(-1, 1, (16, 16, 3)).astype(np.float32)
    y = np.asarray(task.measure(x, jax.random.key(0)))
    hole = np.broadcast_to(task.arrays["mask"] == 0, x.shape)
    np.testing.assert_array_equal(y[hole], 0.0)
    noise = (y - x)[~hole]  # 714 draws: the std of their std is 0.003
    assert abs(np.std(noise) - 0.1) < 0.01 and abs(np.mean(noise)) < 0.015


def test_partial_circulant_equals_its_dense_matrix():
    """Rows `indices` of C diag(signs), C the circulant matrix of the filter: C[i, j] = f[i - j]."""
    task = _task(task="compressed_sensing", cs_operator="partial_circulant", cs_ratio=0.25)
    a = task.arrays
    n = 16 * 16 * 3
    f = np.fft.ifft(a["filter_fft_re"] + 1j * a["filter_fft_im"]).real
    circulant = f[(np.arange(n)[:, None] - np.arange(n)[None, :]) % n]
    dense = (circulant * a["signs"][None, :])[a["indices"]]
    x = np.random.RandomState(1).randn(16, 16, 3).astype(np.float32)
    assert len(a["indices"]) == round(0.25 * n)
    np.testing.assert_allclose(task.forward(x), dense @ x.reshape(-1), atol=1e-4)


def test_gaussian_operator_is_seeded_and_bounded():
    task = _task(task="compressed_sensing", cs_ratio=0.1)
    assert task.arrays["matrix"].shape == (round(0.1 * 768), 768)
    np.testing.assert_allclose(np.std(task.arrays["matrix"]) * np.sqrt(768), 1.0, atol=0.02)
    again = _task(task="compressed_sensing", cs_ratio=0.1, task_seed=0).arrays["matrix"]
    np.testing.assert_array_equal(task.arrays["matrix"], again)
    with pytest.raises(ValueError, match="partial_circulant"):
        tasks.make_task(
            InversionConfig.from_flat(
                task="compressed_sensing", cs_ratio=1.0, cs_operator="gaussian"
            ).problem,
            dataclasses.replace(CFG16, img_resolution=128),
        )


def _operator_bytes(arrays: dict) -> int:
    return sum(np.asarray(a).nbytes for a in arrays.values())


@pytest.mark.parametrize("resolution", [16, 128, 1024])
@pytest.mark.parametrize("ratio", [0.01, 0.1, 1.0])
def test_auto_operator_fits_the_memory_budget_and_its_adjoint_is_exact(resolution, ratio):
    """`auto` is dense only while it is at most 16 MB, and beyond needs 12 N bytes plus the indices
    (1024 px: 38 MB whatever the ratio); <A x, y> = <x, A^T y> for random x, y, at every shape."""
    gen_cfg = dataclasses.replace(CFG16, img_resolution=resolution)
    settings = InversionConfig.from_flat(task="compressed_sensing", cs_ratio=ratio).problem
    task = tasks.make_task(settings, gen_cfg)
    n, m = resolution * resolution * 3, max(1, round(ratio * resolution * resolution * 3))
    record = tasks.describe(settings, gen_cfg)
    assert record["cs_measurements"] == m
    assert record["cs_operator"] == ("gaussian" if "matrix" in task.arrays else "partial_circulant")
    assert _operator_bytes(task.arrays) <= max(tasks.AUTO_DENSE_ENTRIES * 4, 16 * n)
    rs = np.random.RandomState(resolution)
    x = rs.randn(resolution, resolution, 3).astype(np.float32)
    y = rs.randn(m).astype(np.float32)
    ax = np.asarray(jax.jit(task.forward)(x), np.float64)
    aty = np.asarray(jax.jit(task.adjoint)(y), np.float64)
    assert ax.shape == (m,) and aty.shape == (n,)
    left, right = ax @ y, x.reshape(-1).astype(np.float64) @ aty
    np.testing.assert_allclose(left, right, rtol=1e-4, atol=1e-4 * np.sqrt(m))


def test_adjoint_equals_the_dense_matrix_transpose():
    for operator in ("gaussian", "partial_circulant"):
        task = _task(task="compressed_sensing", cs_operator=operator, cs_ratio=0.25)
        dense = np.stack([np.asarray(task.forward(e.reshape(16, 16, 3))) for e in np.eye(768)], 1)
        y = np.random.RandomState(4).randn(dense.shape[0]).astype(np.float32)
        np.testing.assert_allclose(task.adjoint(y), dense.T @ y, atol=1e-4)


def test_bad_task_settings_fail_with_one_line():
    for settings, message in (
        ({"task": "deblur"}, "task must be one of"),
        ({"cs_ratio": 0.0}, "cs_ratio"),
        ({"inpaint_mask": "/nonexistent.png"}, "is not a file"),
    ):
        with pytest.raises(ValueError, match=message):
            InversionConfig.from_flat(**settings)
    with pytest.raises(ValueError, match="does not divide"):
        _task(task="super_resolution", sr_factor=3)
    with pytest.raises(ValueError, match="not images"):
        _task(task="compressed_sensing", lpips_weight=1.0)


def test_task_rows_from_a_code_drop_the_ramp_and_compressed_sensing_drops_lpips():
    """Every report row's config comes from task_eval.task_config: a "+encoder" row takes the
    defaults of a start from a code, as `invert --encoder` does."""
    mean_start = task_eval.task_config("denoise", "wplus", num_steps=7)
    code_start = task_eval.task_config("denoise", "wplus", from_encoder=True, num_steps=7)
    assert mean_start.optim.latent_noise_factor > 0
    assert code_start == mean_start.replace(latent_noise_factor=0.0)
    assert code_start.optim.num_steps == 7 and code_start.problem.task == "denoise"
    sensing = task_eval.task_config("compressed_sensing", "wplus", from_encoder=True)
    assert sensing.loss.lpips_weight == 0.0 and sensing.optim.latent_noise_factor == 0.0


@pytest.fixture(scope="module")
def generated():
    """The built-in (trained) generator and two digits it made from seeded z: the tiny random
    generator's images are so smooth that a blur denoises them as well as any inversion."""
    G = checkpoints.generator_or_builtin(None, log=lambda _: None)
    fns, params = PureGenerator.split(G)
    w_mean, w_std, _ = w_statistics(fns, params, G.cfg.z_dim)
    z = np.random.RandomState(5).randn(2, G.cfg.z_dim).astype(np.float32)
    targets = np.asarray(jax.jit(lambda p, z: fns.synthesis(p, fns.mapping(p, z)))(params, z))
    return G.cfg, fns, params, w_mean, w_std, targets


@pytest.mark.slow
def test_denoising_beats_the_noisy_input_and_the_best_blur(generated):
    """sigma = 0.25 (the public README's), 100 steps in W+ on the built-in generator's digits:
    the default expected forward (E[clip(G + sigma e)]) beats the noisy input by > 5 dB, the best
    Gaussian blur by > 3 dB and the public code's fresh draw per step by > 1 dB (measured: noisy
    19.5 / 19.5 dB, blur 24.0 / 24.5, sampled 18.0 / 18.8, expected 30.2 / 29.6)."""
    gen_cfg, fns, params, w_mean, w_std, targets = generated
    seeds = np.arange(2, dtype=np.int32)
    denoised = {}
    for forward in ("expected", "sampled"):
        cfg = InversionConfig.for_space(
            "wplus", num_steps=100, steps_per_dispatch=100, task="denoise", denoise_forward=forward
        )
        inverter = Inverter(fns, gen_cfg, cfg, w_mean, w_std)
        result = inverter.invert(params, targets, seeds)
        denoised[forward] = np.asarray(result.terms["psnr"])
    noisy = np.asarray(result.terms["input_psnr"])
    measured = inverter.measurements(seeds, targets)
    blur = image_psnr(
        np.stack([baselines.best_blur(y, x)[0] for y, x in zip(measured, targets)]), targets
    )
    print("denoise PSNR", denoised, blur, noisy)
    assert np.all(noisy < 10 * np.log10(4 / 0.25**2) + 1.5)  # clipping cuts the noise a bit
    assert np.all(denoised["expected"] > noisy + 5.0), (noisy, denoised)
    assert np.all(denoised["expected"] > blur + 3.0), (blur, denoised)
    assert np.all(denoised["expected"] > denoised["sampled"] + 1.0), denoised


def test_expected_clipped_value_equals_monte_carlo():
    mean = np.linspace(-1.5, 1.5, 13).astype(np.float32)
    draws = np.clip(mean + 0.25 * np.random.RandomState(0).randn(200_000, 1), -1, 1)
    np.testing.assert_allclose(tasks.expected_clipped(mean, 0.25), draws.mean(0), atol=2e-3)
    np.testing.assert_allclose(tasks.expected_clipped(mean, 0.0), np.clip(mean, -1, 1))


@pytest.mark.slow
def test_compressed_sensing_recovers_a_generated_image(generated):
    """10 % measurements (307 of 3072 pixel values, seeded Gaussian operator) in W (64 numbers):
    the built-in generator's digit comes back above 22 dB and > 5 dB above the minimum-norm
    solution (measured: 32.9 dB against 8.2 dB at 200 steps)."""
    gen_cfg, fns, params, w_mean, w_std, targets = generated
    cfg = InversionConfig.for_space(
        "w", num_steps=200, steps_per_dispatch=100, task="compressed_sensing", cs_ratio=0.1
    )
    inverter = Inverter(fns, gen_cfg, cfg, w_mean, w_std)
    result = inverter.invert(params, targets[:1], np.zeros(1, np.int32))
    measured = inverter.measurements(np.zeros(1, np.int32), targets[:1])
    least_norm = baselines.solve(inverter.task, measured[0], targets[0])[0]
    classical = float(image_psnr(np.asarray(least_norm)[None], targets[:1])[0])
    print("CS PSNR", result.terms["psnr"], classical)
    assert float(result.terms["psnr"][0]) > max(22.0, classical + 5.0), (result.terms, classical)


def image_psnr(images_a, images_b):
    """PSNR in dB [B] of each pair of images [B, H, W, C] in [-1, 1]."""
    return np.asarray(psnr(np.mean(np.square(images_a - images_b), axis=(1, 2, 3))))


def hole_psnr(image, clean, hole):
    """PSNR in dB of `image` against `clean` on the pixels where `hole` [H, W, C] is True."""
    return float(psnr(np.mean(np.square(image - clean)[hole])))


@pytest.mark.slow
def test_inpainting_fills_the_hidden_block_better_than_the_diffusion_fill(generated):
    """The public 0.4 x 0.2 block (13 x 6 px) in W+, 200 steps on the built-in generator's digits:
    inside the hole the result beats the classical diffusion fill (studies/baselines.py) by > 3 dB
    (measured: 21.9 / 21.0 dB against 15.3 / 14.0 dB)."""
    gen_cfg, fns, params, w_mean, w_std, targets = generated
    cfg = InversionConfig.for_space("wplus", num_steps=200, steps_per_dispatch=100, task="inpaint")
    inverter = Inverter(fns, gen_cfg, cfg, w_mean, w_std)
    result = inverter.invert(params, targets, np.arange(2, dtype=np.int32))
    mask = inverter.task.arrays["mask"]
    hole = np.broadcast_to(mask == 0, targets.shape[1:])
    for clean, image in zip(targets, np.asarray(result.images)):
        filled = np.asarray(baselines.diffusion_fill(clean * mask, mask))
        recovered, classical = hole_psnr(image, clean, hole), hole_psnr(filled, clean, hole)
        print("inpaint hole PSNR", recovered, classical)
        assert recovered > classical + 3.0, (recovered, classical)


@pytest.mark.slow
def test_super_resolution_fits_its_measurement_and_beats_bicubic(generated):
    """Box factor 4 (32 -> 8 px, the default) in W+, 200 steps on the built-in generator's digits:
    the result's box downsampling is above 40 dB against the measurement (measured on the tiny
    generator 51.9 / 58.1 dB; over three z seeds at least
    48.7) and its PSNR against the clean image beats bicubic upsampling of the measurement by
    > 2 dB (measured: 29.9 / 27.9 dB against 23.3 / 24.6 dB)."""
    gen_cfg, fns, params, w_mean, w_std, targets = generated
    cfg = InversionConfig.for_space(
        "wplus", num_steps=200, steps_per_dispatch=100, task="super_resolution", sr_factor=4
    )
    result = Inverter(fns, gen_cfg, cfg, w_mean, w_std).invert(
        params, targets, np.arange(2, dtype=np.int32)
    )
    downsample = jax.vmap(lambda image: tasks.box_downsample(image, 4))
    measured = np.asarray(downsample(targets))
    fit = image_psnr(np.asarray(downsample(result.images)), measured)
    bicubic = image_psnr(
        np.stack([baselines.bicubic_upsample(m, targets.shape[1]) for m in measured]), targets
    )
    recovered = np.asarray(result.terms["psnr"])
    np.testing.assert_allclose(recovered, image_psnr(np.asarray(result.images), targets), rtol=1e-4)
    assert np.all(fit > 40.0), fit
    print("SR PSNR", recovered, bicubic)
    assert np.all(recovered > bicubic + 2.0), (recovered, bicubic)


def read_png(path):
    return images.to_float(np.asarray(Image.open(path)))


@pytest.mark.slow
def test_invert_launcher_inpaints_and_refuses_other_task_settings(tmp_path):
    """experiments.invert --task=inpaint on the built-in generator's own digits in W, 100 steps: the
    summary's psnr is that of NAME.png against targets/NAME.png (the clean ones, to 8-bit rounding:
    measured 0.03 dB apart), NAME.png fills the hole > 2 dB better than the diffusion fill
    (measured 30.1 / 25.1 dB against 17.8 / 15.0 dB); a rerun with another mask seed is refused in one line."""
    flags = [
        "--prior_samples=2000",
        "--num_generated=2",
        "--space=w",
        "--task=inpaint",
        "--steps=100",
        "--steps_per_dispatch=50",
    ]
    out = tmp_path / "out"
    first = run_invert(out, *flags)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "(task inpaint)" in first.stdout
    builtin_cfg = dataclasses.replace(CFG16, img_resolution=32)
    mask = tasks.make_task(InversionConfig.from_flat(task="inpaint").problem, builtin_cfg).arrays[
        "mask"
    ]
    hole = np.broadcast_to(mask == 0, (32, 32, 3))  # the launcher's default block, task_seed 0
    records = results.read_summary(out)
    assert sorted(r["name"] for r in records) == ["generated0000", "generated0001"]
    for record in records:
        assert record["status"] == "ok" and record["task"] == "inpaint"
        clean = read_png(out / "targets" / f"{record['name']}.png")
        render = read_png(out / f"{record['name']}.png")
        assert float(image_psnr(render[None], clean[None])[0]) == pytest.approx(
            record["psnr"], abs=0.2
        )
        filled = np.asarray(baselines.diffusion_fill(clean * mask, mask))
        print(
            "launcher inpaint hole PSNR",
            hole_psnr(render, clean, hole),
            hole_psnr(filled, clean, hole),
        )
        assert hole_psnr(render, clean, hole) > hole_psnr(filled, clean, hole) + 2
        with np.load(out / f"{record['name']}.npz") as saved:
            assert saved["w"].shape == (1, builtin_cfg.num_ws, 64)
    refused = run_invert(out, *flags, "--task_seed=1")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "other settings (task_seed)" in last, refused.stderr
