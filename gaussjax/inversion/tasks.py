"""Forward operators for inverse problems: the loss compares A(G(s)) with the measurement y = A(x)
(+ noise), for every latent space (papers note §3.5).

The input images are the clean x; the measurement is simulated from them, so the clean render G(s)
is always compared with x too (the summary's `psnr`). Tasks (`TASKS`):

  invert              A = identity.
  denoise             y = clip(x + sigma e, -1, 1) (sigma on [-1, 1], default 0.25, SPHInX's
                      README). `expected` (default): A(G) = E[clip(G + sigma e)], the censored
                      Gaussian mean in closed form, so that E[y] = A(x) and the fit is unbiased;
                      `sampled`: every step the render gets a FRESH draw and is clipped, as SPHInX's
                      public code does (its expected loss adds Var[clip(G + sigma e)], which pulls
                      dark and bright pixels past the clipping range: measured 12-14 dB worse on
                      the built-in generator's digits, W+, 200 steps).
  inpaint             A = a 0/1 mask (1: known pixel): a mask file (white = known, resized), or a
                      block of the given fractions of the image at a seeded position (the public
                      code's random_occlusion is 0.4 x 0.2).
  super_resolution    A = box downsampling by an integer factor.
  compressed_sensing  y = A vec(x), M = round(ratio N) measurements of the N pixel values: a seeded
                      dense Gaussian A (entries N(0, 1/N)) or a partial-circulant one (random signs,
                      circular convolution with a N(0, 1/N) filter by FFT, M seeded indices), as
                      the public SPHInX utils. Measurement ratios are not given there ([NF]).
                      `auto` (the default) takes the dense one while it is small (M N <=
                      AUTO_DENSE_ENTRIES, 16 MB) and the partial-circulant one beyond: O(N log N)
                      time and 12 N bytes, so any resolution runs (1024 px: 38 MB).

Inpainting, super-resolution and compressed sensing may add N(0, measurement_std^2) to y (drawn
once per image; inpainting: on the known pixels only, a hidden pixel is not measured). Operators
are built once per run from the config (`make_task`): their arrays are host constants, and
`forward` / `measure` are pure and jit-able, per image [H, W, C]; compressed sensing also has
its exact adjoint `adjoint` (A^T) for the classical minimum-norm solution.
"""

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

TASKS = ("invert", "denoise", "inpaint", "super_resolution", "compressed_sensing")
DENOISE_FORWARDS = ("expected", "sampled")
CS_OPERATORS = ("auto", "gaussian", "partial_circulant")
MAX_DENSE_ENTRIES = 2**27  # a dense Gaussian operator beyond this (512 MB) is refused
# `auto` keeps the dense operator to 16 MB: its matrix is a constant of every compiled step.
AUTO_DENSE_ENTRIES = 2**22


@dataclasses.dataclass(frozen=True)
class Task:
    """A forward operator. `forward(image, key)`: A applied to a render (key: the step's PRNG key,
    None for the deterministic evaluation); `measure(x, key)`: the measurement y of a clean x."""

    name: str
    arrays: dict  # host constants of the operator (mask, matrix, signs, ...)
    noise_std: float = 0.0  # denoise: sigma of the noise; others: noise on y
    factor: int = 1
    sampled: bool = False  # denoise: a fresh draw per step instead of the expectation

    @property
    def image_shaped(self) -> bool:
        """Whether measurements are images (LPIPS can compare them)."""
        return self.name != "compressed_sensing"

    @property
    def needs_key(self) -> bool:
        """Whether `forward` draws noise at every step."""
        return self.name == "denoise" and self.sampled

    def forward(self, image, key=None):
        if self.name == "denoise":
            if not self.sampled:
                return expected_clipped(image, self.noise_std)
            return noisy_clipped(image, self.noise_std, key)
        if self.name == "inpaint":
            return image * self.arrays["mask"]
        if self.name == "super_resolution":
            return box_downsample(image, self.factor)
        if self.name == "compressed_sensing":
            return sense(self.arrays, image.reshape(-1))
        return image

    def adjoint(self, y):
        """A^T y of compressed-sensing measurements [M] -> a flat image [N] (exact: <A x, y> =
        <x, A^T y>)."""
        if self.name != "compressed_sensing":
            raise ValueError(f"adjoint is defined for compressed_sensing, not {self.name}")
        return sense_adjoint(self.arrays, y)

    def measure(self, x, key):
        if self.name == "denoise":
            return noisy_clipped(x, self.noise_std, key)
        y = self.forward(x)
        if self.noise_std > 0:
            y = y + self.noise_std * jax.random.normal(key, y.shape)
        if self.name == "inpaint":
            # A hidden pixel is not measured, so it has no noise either: A(G(s)) is 0 there.
            y = self.forward(y)
        return y


def noisy_clipped(image, sigma: float, key=None):
    """clip(image + sigma e, -1, 1), e ~ N(0, I) drawn from `key` (None: no noise, only the clip)."""
    if key is not None:
        image = image + sigma * jax.random.normal(key, image.shape)
    return jnp.clip(image, -1.0, 1.0)


def expected_clipped(mean, sigma: float):
    """E[clip(mean + sigma e, -1, 1)] for e ~ N(0, 1), elementwise: the mean of a censored
    Gaussian, -Phi(a) + (1 - Phi(b)) + mean (Phi(b) - Phi(a)) + sigma (phi(a) - phi(b)) with
    a = (-1 - mean) / sigma, b = (1 - mean) / sigma; clip(mean) when sigma is 0."""
    if sigma == 0:
        return jnp.clip(mean, -1.0, 1.0)
    a, b = (-1.0 - mean) / sigma, (1.0 - mean) / sigma
    cdf_a, cdf_b = jax.scipy.stats.norm.cdf(a), jax.scipy.stats.norm.cdf(b)
    pdf_a, pdf_b = jax.scipy.stats.norm.pdf(a), jax.scipy.stats.norm.pdf(b)
    return -cdf_a + (1.0 - cdf_b) + mean * (cdf_b - cdf_a) + sigma * (pdf_a - pdf_b)


def box_downsample(image, factor: int):
    """[H, W, C] -> [H / factor, W / factor, C], the mean of each factor x factor block."""
    h, w, c = image.shape
    return image.reshape(h // factor, factor, w // factor, factor, c).mean(axis=(1, 3))


def sense(arrays: dict, x):
    """Compressed-sensing measurements [M] of a flat image x [N]."""
    if "matrix" in arrays:
        return arrays["matrix"] @ x
    spectrum = arrays["filter_fft_re"] + 1j * arrays["filter_fft_im"]
    conv = jnp.fft.ifft(jnp.fft.fft(arrays["signs"] * x) * spectrum).real
    return conv[arrays["indices"]]


def sense_adjoint(arrays: dict, y):
    """A^T y [N] of measurements y [M]: scatter to the indices, circular correlation with the
    filter (the transpose of convolution: the conjugate spectrum), the signs."""
    if "matrix" in arrays:
        return arrays["matrix"].T @ y
    n = arrays["signs"].shape[0]
    spectrum = arrays["filter_fft_re"] - 1j * arrays["filter_fft_im"]
    scattered = jnp.zeros(n, y.dtype).at[arrays["indices"]].set(y)
    return arrays["signs"] * jnp.fft.ifft(jnp.fft.fft(scattered) * spectrum).real


def cs_operator_choice(operator: str, n: int, ratio: float) -> tuple[str, int]:
    """(the operator `operator` resolves to, M) for N = n pixel values: `auto` is dense Gaussian
    while M N <= AUTO_DENSE_ENTRIES, partial circulant beyond."""
    m = max(1, round(ratio * n))
    if operator == "auto":
        operator = "gaussian" if m * n <= AUTO_DENSE_ENTRIES else "partial_circulant"
    return operator, m


def describe(cfg, gen_cfg) -> dict:
    """What the settings alone do not say about the task's operator, for run.json: for
    compressed sensing the operator `auto` resolved to and M (cheap: no arrays are made); {} for
    the other tasks."""
    if cfg.task != "compressed_sensing":
        return {}
    n = gen_cfg.img_resolution**2 * gen_cfg.img_channels
    operator, m = cs_operator_choice(cfg.cs_operator, n, cfg.cs_ratio)
    return {"cs_operator": operator, "cs_measurements": m}


def make_task(cfg, gen_cfg) -> Task:
    """The operator of a ProblemConfig's task for images of the generator's shape.

    `cfg` was checked by `check_task` when it was made (ProblemConfig.__post_init__).

    Raises:
      ValueError: a resolution the settings do not fit, or an unreadable mask.
    """
    res, ch = gen_cfg.img_resolution, gen_cfg.img_channels
    rs = np.random.RandomState(cfg.task_seed)
    if cfg.task == "denoise":
        return Task("denoise", {}, cfg.denoise_std, sampled=cfg.denoise_forward == "sampled")
    if cfg.task == "inpaint":
        mask = load_mask(cfg.inpaint_mask, res) if cfg.inpaint_mask else block_mask(cfg, res, rs)
        return Task("inpaint", {"mask": mask[..., None]}, cfg.measurement_std)
    if cfg.task == "super_resolution":
        if res % cfg.sr_factor:
            raise ValueError(f"sr_factor {cfg.sr_factor} does not divide the resolution {res}")
        return Task("super_resolution", {}, cfg.measurement_std, cfg.sr_factor)
    if cfg.task == "compressed_sensing":
        arrays = sensing_arrays(cfg.cs_operator, res * res * ch, cfg.cs_ratio, rs)
        return Task("compressed_sensing", arrays, cfg.measurement_std)
    return Task("invert", {})


def sensing_arrays(operator: str, n: int, ratio: float, rs: np.random.RandomState) -> dict:
    """The seeded arrays of a compressed-sensing operator with round(ratio n) measurements."""
    operator, m = cs_operator_choice(operator, n, ratio)
    if operator == "gaussian":
        if m * n > MAX_DENSE_ENTRIES:
            raise ValueError(
                f"a dense Gaussian operator of {m} x {n} is too large: use "
                "cs_operator=partial_circulant"
            )
        return {"matrix": (rs.randn(m, n) / math.sqrt(n)).astype(np.float32)}
    spectrum = np.fft.fft(rs.randn(n) / math.sqrt(n))
    return {
        "signs": rs.choice([-1.0, 1.0], n).astype(np.float32),
        "filter_fft_re": spectrum.real.astype(np.float32),
        "filter_fft_im": spectrum.imag.astype(np.float32),
        "indices": np.sort(rs.permutation(n)[:m]).astype(np.int32),
    }


def block_mask(cfg, res: int, rs: np.random.RandomState) -> np.ndarray:
    """[res, res] float32: 1 everywhere but a block of the config's fractions at a seeded place."""
    h = max(1, round(cfg.inpaint_block_height * res))
    w = max(1, round(cfg.inpaint_block_width * res))
    top, left = rs.randint(res - h + 1), rs.randint(res - w + 1)
    mask = np.ones((res, res), np.float32)
    mask[top : top + h, left : left + w] = 0.0
    return mask


def load_mask(path, res: int) -> np.ndarray:
    """[res, res] float32 0/1 from an image file (white = known), center-cropped and resized."""
    from gaussjax.files import images  # host-side file reading only

    return (images.load_image(path, res, 1)[..., 0] >= 128).astype(np.float32)


def check_task(cfg) -> None:
    """One clear ValueError for task settings that cannot work (cheap: no files read)."""
    if cfg.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {cfg.task!r}")
    if cfg.denoise_forward not in DENOISE_FORWARDS:
        raise ValueError(
            f"denoise_forward must be one of {DENOISE_FORWARDS}, got {cfg.denoise_forward!r}"
        )
    if cfg.cs_operator not in CS_OPERATORS:
        raise ValueError(f"cs_operator must be one of {CS_OPERATORS}, got {cfg.cs_operator!r}")
    if cfg.denoise_std < 0 or cfg.measurement_std < 0:
        raise ValueError("denoise_std and measurement_std must be >= 0")
    if not 0 < cfg.cs_ratio <= 1:
        raise ValueError(f"cs_ratio must be in (0, 1], got {cfg.cs_ratio}")
    if cfg.sr_factor < 1:
        raise ValueError(f"sr_factor must be >= 1, got {cfg.sr_factor}")
    for name in ("inpaint_block_height", "inpaint_block_width"):
        if not 0 < getattr(cfg, name) <= 1:
            raise ValueError(f"{name} must be in (0, 1], got {getattr(cfg, name)}")
    if cfg.inpaint_mask and not os.path.isfile(cfg.inpaint_mask):
        raise ValueError(f"inpaint_mask {cfg.inpaint_mask} is not a file")
