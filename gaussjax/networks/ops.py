"""Stateless StyleGAN2 numerics in NHWC (see shared/notes/reference-stylegan2.md §1.2-1.6).

Every function here is pure and works under jit, vmap and grad. Image tensors are [N, H, W, C]; conv
kernels are [kh, kw, in, out] in cross-correlation orientation.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

SQRT2 = math.sqrt(2.0)

# name -> (function, default gain); the gains are the official `bias_act` defaults.
_ACTIVATIONS = {
    "linear": (lambda x: x, 1.0),
    "relu": (jax.nn.relu, SQRT2),
    "lrelu": (lambda x: jax.nn.leaky_relu(x, 0.2), SQRT2),
    "tanh": (jnp.tanh, 1.0),
    "sigmoid": (jax.nn.sigmoid, 1.0),
    "elu": (jax.nn.elu, 1.0),
    "selu": (jax.nn.selu, 1.0),
    "softplus": (jax.nn.softplus, 1.0),
    "swish": (jax.nn.silu, SQRT2),
}


def bias_act(x, bias=None, act="linear", gain=1.0, clamp=None):
    """Bias add (last axis), activation, multiplication by `act`'s default gain times `gain`, clamp.

    The clamp comes after the gain, as in the official `bias_act`.

    Args:
      x: [..., C].
      bias: [C] or None.
      act: one of `_ACTIVATIONS`.
      gain: extra gain on top of the activation's default gain.
      clamp: clamp the output to [-clamp, clamp] when not None.
    Returns:
      Array shaped like `x`.
    """
    fn, default_gain = _ACTIVATIONS[act]
    if bias is not None:
        x = x + bias.astype(x.dtype)
    x = fn(x)
    total_gain = default_gain * gain
    if total_gain != 1:
        x = x * jnp.asarray(total_gain, x.dtype)
    if clamp is not None:
        x = jnp.clip(x, -clamp, clamp)
    return x


def normalize_2nd_moment(x, eps=1e-8):
    """x / sqrt(mean(x^2) + eps) over the last axis. x: [N, D]."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def setup_filter(taps) -> np.ndarray:
    """The official 2-D FIR filter from 1-D taps: outer product, normalised to sum 1. Returns [k, k] float32."""
    f = np.asarray(taps, dtype=np.float64)
    if f.ndim == 1:
        f = np.outer(f, f)
    return (f / f.sum()).astype(np.float32)


def upfirdn2d(x, f, up=1, padding=(0, 0, 0, 0), gain=1.0):
    """Upsample by zero insertion, pad, and filter with a 2-D FIR (official `upfirdn2d`, down=1).

    Zeros are inserted AFTER each pixel (H -> H*up), the image is padded by
    (x0, x1, y0, y1) (negative crops), then convolved ("valid") with `f * gain`.

    Args:
      x: [N, H, W, C].
      f: [kh, kw] numpy filter (symmetric filters make convolution equal to correlation).
      up: integer upsampling factor.
      padding: (x0, x1, y0, y1).
      gain: filter gain.
    Returns:
      [N, H*up + y0 + y1 - kh + 1, W*up + x0 + x1 - kw + 1, C].
    """
    n, h, w, c = x.shape
    if up > 1:
        x = x.reshape(n, h, 1, w, 1, c)
        x = jnp.pad(x, ((0, 0), (0, 0), (0, up - 1), (0, 0), (0, up - 1), (0, 0)))
        x = x.reshape(n, h * up, w * up, c)
    x0, x1, y0, y1 = padding
    x = jax.lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (y0, y1, 0), (x0, x1, 0), (0, 0, 0)))
    # Depthwise correlation with the flipped filter == true convolution.
    kernel = np.asarray(f[::-1, ::-1] * gain, np.float32)[:, :, None, None]
    kernel = jnp.asarray(np.tile(kernel, (1, 1, 1, c)), x.dtype)
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(1, 1),
        padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
    )


def upsample2d(x, f, up=2):
    """Official `upsample2d`: output exactly [N, H*up, W*up, C]; gain up**2 keeps the mean."""
    fw = f.shape[-1]
    p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up**2)


def conv2d(x, kernel, padding):
    """Plain cross-correlation. x: [N, H, W, I], kernel: [kh, kw, I, O], padding: int."""
    return jax.lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        window_strides=(1, 1),
        padding=[(padding, padding)] * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


def conv2d_up2(x, kernel, f):
    """Official `conv2d_resample(up=2, padding=1)` for a 3x3 kernel: [N, H, W, I] -> [N, 2H, 2W, O].

    The official op is a stride-2 transposed convolution (a true convolution of the zero-dilated input;
    `kernel` here is already in correlation orientation) followed by the FIR filter with padding [1, 1]
    and gain 4.
    """
    kh, kw = kernel.shape[:2]
    y = jax.lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        window_strides=(1, 1),
        padding=[(kh - 1, kh - 1), (kw - 1, kw - 1)],
        lhs_dilation=(2, 2),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return upfirdn2d(y, f, padding=(1, 1, 1, 1), gain=4.0)


def modulated_conv2d(x, kernel, styles, *, demodulate=True, up=False, f=None):
    """StyleGAN2 modulated convolution, computed in the official non-fused form.

    Scaling the input by the styles, convolving with the shared kernel and scaling the output by the
    demodulation coefficients equals convolving with per-sample modulated kernels, and batches well.

    Args:
      x: [N, H, W, I].
      kernel: [k, k, I, O], correlation orientation.
      styles: [N, I] float32.
      demodulate: apply the weight demodulation (eps 1e-8 inside the rsqrt).
      up: upsample by 2 (3x3 kernels with the FIR filter `f`), as the official conv0 layers do.
      f: [4, 4] FIR filter, needed when `up`.
    Returns:
      [N, H', W', O] where H' = 2H when `up` else H.
    """
    x = x * styles[:, None, None, :].astype(x.dtype)
    if up:
        x = conv2d_up2(x, kernel, f)
    else:
        x = conv2d(x, kernel, padding=kernel.shape[0] // 2)
    if demodulate:
        kernel_sq = jnp.sum(jnp.square(kernel.astype(jnp.float32)), axis=(0, 1))  # [I, O]
        dcoefs = jax.lax.rsqrt(jnp.square(styles) @ kernel_sq + 1e-8)  # [N, O]
        x = x * dcoefs[:, None, None, :].astype(x.dtype)
    return x
