"""Classical solutions of the inverse problems (inversion/tasks.py), the bar a generator prior must
clear: what a user gets without any network, from the same measurement y.

  denoise             Gaussian blur of y, its sigma the best of BLUR_SIGMAS for each image (chosen
                      against the clean image: an oracle, so the bar is if anything too high).
  inpaint             diffusion fill: hidden pixels start at the known pixels' mean and relax to the
                      mean of their 4 neighbours (a discrete Laplace equation), known pixels fixed.
  super_resolution    bicubic upsampling of the low-resolution y.
  compressed_sensing  the minimum-norm solution A^T (A A^T)^-1 y, by conjugate gradients on A A^T
                      (matrix-free, so it runs for the partial-circulant operator at any size).

Every function is per image, [H, W, C] in [-1, 1] (CS: the measurement vector [M]).
"""

import jax
import jax.numpy as jnp
import numpy as np

from gaussjax.inversion.tasks import Task

BLUR_SIGMAS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
NAMES = {
    "denoise": "best-σ Gaussian blur",
    "inpaint": "diffusion fill",
    "super_resolution": "bicubic",
    "compressed_sensing": "minimum norm Aᵀ(AAᵀ)⁻¹y",
}


def gaussian_blur(image, sigma: float):
    """[H, W, C] blurred by a separable Gaussian of std `sigma` px (edges reflected)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = jnp.asarray(taps / taps.sum(), image.dtype)
    padded = jnp.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    h, w, _ = image.shape
    rows = sum(taps[i] * padded[i : i + h] for i in range(2 * radius + 1))
    return sum(taps[i] * rows[:, i : i + w] for i in range(2 * radius + 1))


def best_blur(noisy, clean):
    """(the blur of `noisy` closest to `clean` over BLUR_SIGMAS, its sigma)."""
    blurs = [gaussian_blur(noisy, s) for s in BLUR_SIGMAS]
    errors = [float(jnp.mean(jnp.square(b - clean))) for b in blurs]
    best = int(np.argmin(errors))
    return blurs[best], BLUR_SIGMAS[best]


def diffusion_fill(measured, mask, iterations: int = 2000):
    """Hidden pixels (mask 0) of `measured` [H, W, C] filled by relaxing the Laplace equation;
    mask [H, W, 1] or [H, W, C], 1 = known."""
    known = jnp.broadcast_to(mask, measured.shape) > 0
    mean = jnp.sum(jnp.where(known, measured, 0), axis=(0, 1)) / jnp.maximum(
        jnp.sum(known, axis=(0, 1)), 1
    )
    start = jnp.where(known, measured, mean)

    def relax(_, x):
        p = jnp.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
        neighbours = (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]) / 4
        return jnp.where(known, measured, neighbours)

    return jax.lax.fori_loop(0, iterations, relax, start)


def bicubic_upsample(small, size: int):
    """[h, w, C] -> [size, size, C] by bicubic interpolation, clipped to [-1, 1]."""
    up = jax.image.resize(small, (size, size, small.shape[-1]), "bicubic")
    return jnp.clip(up, -1.0, 1.0)


def minimum_norm(task: Task, y, iterations: int = 300):
    """argmin |x| subject to A x = y: x = A^T u with (A A^T) u = y, by conjugate gradients."""
    u, _ = jax.scipy.sparse.linalg.cg(
        lambda v: task.forward(task.adjoint(v).reshape(-1)), y, maxiter=iterations, tol=1e-6
    )
    return task.adjoint(u)


def solve(task: Task, measured, clean):
    """(the classical estimate [H, W, C] of the clean image from `measured`, its settings)."""
    shape = clean.shape
    if task.name == "denoise":
        image, sigma = best_blur(measured, clean)
        return image, {"sigma": sigma}
    if task.name == "inpaint":
        return diffusion_fill(measured, task.arrays["mask"]), {}
    if task.name == "super_resolution":
        return bicubic_upsample(measured, shape[0]), {}
    if task.name == "compressed_sensing":
        return jnp.clip(minimum_norm(task, measured).reshape(shape), -1.0, 1.0), {}
    raise ValueError(f"no classical baseline for task {task.name}")
