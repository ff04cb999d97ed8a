"""The classical baselines (studies/baselines.py) against closed forms: the blur keeps constants and
averages noise by its kernel's energy, the diffusion fill recovers a harmonic (linear) image from
its border, bicubic keeps a linear ramp between the samples, the minimum-norm solution equals the
pseudo-inverse's and fits its measurements."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from gaussjax.inversion import InversionConfig, tasks
from gaussjax.networks.config import GeneratorConfig
from gaussjax.studies import baselines

CFG16 = GeneratorConfig(z_dim=8, w_dim=8, img_resolution=16, img_channels=3)


def test_blur_keeps_constants_and_shrinks_white_noise_by_its_kernel_energy():
    flat = np.full((16, 16, 3), 0.3, np.float32)
    np.testing.assert_allclose(baselines.gaussian_blur(jnp.asarray(flat), 1.5), flat, atol=1e-6)
    noise = np.random.RandomState(0).randn(256, 256, 1).astype(np.float32)
    blurred = np.asarray(baselines.gaussian_blur(jnp.asarray(noise), 1.0))[8:-8, 8:-8]
    # Separable unit-sum taps t: the variance falls to (sum t^2)^2, ~ 1 / (4 pi sigma^2).
    taps = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    expected = (np.sum((taps / taps.sum()) ** 2)) ** 2
    np.testing.assert_allclose(np.var(blurred), expected, rtol=0.1)


def test_best_blur_picks_the_sigma_closest_to_the_clean_image():
    rs = np.random.RandomState(1)
    clean = np.asarray(baselines.gaussian_blur(jnp.asarray(rs.randn(32, 32, 1)), 3.0))
    noisy = clean + 0.02 * rs.randn(32, 32, 1)
    _, sigma_smooth = baselines.best_blur(jnp.asarray(noisy), jnp.asarray(clean))
    _, sigma_sharp = baselines.best_blur(jnp.asarray(clean), jnp.asarray(clean))
    assert sigma_smooth > sigma_sharp == baselines.BLUR_SIGMAS[0]


def test_diffusion_fill_recovers_a_linear_image_from_the_known_pixels():
    """A linear image is harmonic, so the discrete Laplace fill of any hole inside is exact."""
    yy, xx = np.mgrid[0:16, 0:16].astype(np.float32)
    image = np.stack([0.05 * xx - 0.4, 0.03 * yy + 0.02 * xx, -0.04 * yy], -1) / 2
    mask = np.ones((16, 16, 1), np.float32)
    mask[4:11, 6:9] = 0
    filled = baselines.diffusion_fill(jnp.asarray(image * mask), jnp.asarray(mask), 3000)
    np.testing.assert_allclose(filled, image, atol=1e-4)


def test_bicubic_upsampling_keeps_a_ramp_between_samples():
    ramp = np.linspace(-0.5, 0.5, 8, dtype=np.float32)
    small = np.broadcast_to(ramp[None, :, None], (8, 8, 1))
    up = np.asarray(baselines.bicubic_upsample(jnp.asarray(small), 32))
    # Half-pixel centres: output column j sits at input (j + 0.5) / 4 - 0.5.
    expected = np.interp((np.arange(32) + 0.5) / 4 - 0.5, np.arange(8), ramp)
    np.testing.assert_allclose(up[16, 8:-8, 0], expected[8:-8], atol=1e-5)  # 2 samples in


def test_minimum_norm_equals_the_pseudo_inverse_and_fits_the_measurements():
    for operator in ("gaussian", "partial_circulant"):
        cfg = InversionConfig.from_flat(
            task="compressed_sensing", cs_operator=operator, cs_ratio=0.1
        )
        task = tasks.make_task(cfg.problem, CFG16)
        dense = np.stack(
            [np.asarray(task.forward(e.reshape(16, 16, 3))) for e in np.eye(768, dtype=np.float32)],
            1,
        )
        y = np.random.RandomState(2).randn(dense.shape[0]).astype(np.float32)
        solution = np.asarray(baselines.minimum_norm(task, jnp.asarray(y)))
        np.testing.assert_allclose(dense @ solution, y, atol=1e-3)
        np.testing.assert_allclose(solution, np.linalg.pinv(dense) @ y, atol=1e-3)


def test_every_task_has_a_baseline_of_the_image_shape():
    x = np.random.RandomState(3).uniform(-1, 1, (16, 16, 3)).astype(np.float32)
    for name in baselines.NAMES:
        cfg = InversionConfig.from_flat(task=name).problem
        task = tasks.make_task(cfg, dataclasses.replace(CFG16))
        y = task.measure(jnp.asarray(x), jax.random.key(0))
        image, settings = baselines.solve(task, y, jnp.asarray(x))
        assert image.shape == x.shape and np.all(np.abs(np.asarray(image)) <= 1.0 + 1e-6)
        assert ("sigma" in settings) == (name == "denoise")
