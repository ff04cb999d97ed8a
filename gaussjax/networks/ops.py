"""Stateless StyleGAN2 numerics in NHWC (see shared/notes/reference-stylegan2.md §1.2-1.6).

Every function here is pure and works under jit, vmap and grad. Image tensors are [N, H, W, C]; conv
kernels are [kh, kw, in, out] in cross-correlation orientation.
"""

import functools
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
        x = add_bias(x, bias)
    x = fn(x)
    total_gain = default_gain * gain
    if total_gain != 1:
        x = x * jnp.asarray(total_gain, x.dtype)
    if clamp is not None:
        x = jnp.clip(x, -clamp, clamp)
    return x


def _sum_rows(t):
    """t [..., P, C] summed over P as a product with a vector of ones: [..., C] float32.

    As sums over pixels (or batch and pixels), XLA:CPU reduces these in windows or strided loops
    at a fraction of memory speed; as a product they ran 4x (the c128ch64 modulation's 128x128x64
    per image) to 13x (the discriminator's bias gradient at 32x32x32, batch 32) as fast.
    """
    ones = jnp.ones((t.shape[-2],), t.dtype)
    return jnp.einsum("p,...pc->...c", ones, t, preferred_element_type=jnp.float32)


@jax.custom_vjp
def add_bias(x, bias):
    """x [..., C] + bias [C] (cast to x's dtype)."""
    return x + bias.astype(x.dtype)


def _add_bias_fwd(x, bias):
    return add_bias(x, bias), bias


def _add_bias_bwd(bias, g):
    return g, _sum_rows(g.reshape(-1, g.shape[-1])).astype(bias.dtype)


add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


@jax.custom_vjp
def scale_channels(x, scales):
    """x [N, H, W, C] times per-image channel scales [N, C] (cast to x's dtype)."""
    return x * scales[:, None, None, :].astype(x.dtype)


def _scale_channels_fwd(x, scales):
    return scale_channels(x, scales), (x, scales)


def _scale_channels_bwd(residuals, g):
    """The scales' gradient sums g * x over each image's pixels (`_sum_rows`)."""
    x, scales = residuals
    n, h, w, c = x.shape
    sums = _sum_rows((g * x).reshape(n, h * w, c))
    return scale_channels(g, scales), sums.astype(scales.dtype)


scale_channels.defvjp(_scale_channels_fwd, _scale_channels_bwd)


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
    # Correlation with the flipped filter == true convolution.
    kernel = np.asarray(f, np.float64)[::-1, ::-1] * gain
    taps = separable_taps(kernel)
    if taps is None:
        return _depthwise_correlation(x, kernel)
    # A rank-1 filter runs as two 1-D passes of shifted adds: on CPU many times faster than a
    # depthwise convolution, forward and backward.
    return _correlate_1d(_correlate_1d(x, taps[0], 1), taps[1], 2)


def separable_taps(kernel: np.ndarray):
    """(column taps [kh], row taps [kw]) whose outer product is `kernel`, or None if it is not rank 1.

    For a rank-1 kernel, the row sums times the column sums over the total sum give it back exactly
    (no SVD rounding for the usual dyadic taps such as [1, 3, 3, 1]).
    """
    total = kernel.sum()
    if total == 0:
        return None
    col, row = kernel.sum(axis=1), kernel.sum(axis=0) / total
    if not np.allclose(np.outer(col, row), kernel, rtol=1e-6, atol=1e-9 * np.abs(kernel).max()):
        return None
    # Tuples of floats: the 1-D correlation takes its taps as static (hashable) arguments.
    return tuple(map(float, col.astype(np.float32))), tuple(map(float, row.astype(np.float32)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _correlate_1d(x, taps, axis):
    """'valid' correlation of x with 1-D `taps` (a tuple of floats) along `axis`, as a sum of
    shifted slices."""
    size = x.shape[axis] - len(taps) + 1
    out = None
    for i, tap in enumerate(taps):
        if tap == 0:
            continue
        term = jax.lax.slice_in_dim(x, i, i + size, axis=axis) * jnp.asarray(tap, x.dtype)
        out = term if out is None else out + term
    return out


def _correlate_1d_fwd(x, taps, axis):
    return _correlate_1d(x, taps, axis), None


def _correlate_1d_bwd(taps, axis, _, g):
    """The input gradient as one 'full' correlation with the reversed taps.

    JAX's rule pads the gradient back to full size once per tap and adds the copies: four
    full-size tensors per FIR pass, which XLA:CPU materialises (upsample2d forward and backward
    took 2.6x as long that way at 128 px, 64 channels, batch 4).
    """
    pad = [(0, 0)] * g.ndim
    pad[axis] = (len(taps) - 1, len(taps) - 1)
    return (_correlate_1d(jnp.pad(g, pad), taps[::-1], axis),)


_correlate_1d.defvjp(_correlate_1d_fwd, _correlate_1d_bwd)


def _depthwise_correlation(x, kernel):
    """'valid' correlation of every channel of x [N, H, W, C] with a 2-D kernel (any rank)."""
    c = x.shape[-1]
    weights = jnp.asarray(
        np.tile(kernel.astype(np.float32)[:, :, None, None], (1, 1, 1, c)), x.dtype
    )
    return jax.lax.conv_general_dilated(
        x,
        weights,
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
    """Plain cross-correlation. x: [N, H, W, I], kernel: [k, k, I, O] (any square size), padding: int."""
    return _conv2d(x, kernel.astype(x.dtype), (padding, padding))


def _correlate(x, kernel, padding):
    """x [N, H, W, I] with kernel [kh, kw, I, O], zero padding (py, px) on both sides."""
    py, px = padding
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(1, 1),
        padding=[(py, py), (px, px)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv2d(x, kernel, padding):
    return _correlate(x, kernel, padding)


def _conv2d_fwd(x, kernel, padding):
    # _conv2d, not _correlate: differentiating this forward pass again (reverse over reverse, as
    # the R1 penalty does) then takes the rules below too, not JAX's slow kernel-gradient conv.
    return _conv2d(x, kernel, padding), (x, kernel)


def _conv2d_bwd(padding, residuals, g):
    """The input gradient as an ordinary correlation with the flipped, transposed kernel.

    XLA's own transpose rule emits a convolution with an [kh, kw, O, I] kernel layout that XLA:CPU
    leaves to its slow generic path inside the optimisation loop (measured 4x slower than the
    forward conv); an explicit HWIO kernel takes the fast path.
    """
    x, kernel = residuals
    kh, kw = kernel.shape[:2]
    back = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    dx = _conv2d(g, back, (kh - 1 - padding[0], kw - 1 - padding[1]))
    return dx, _kernel_gradient(x, g, (kh, kw), padding).astype(kernel.dtype)


def _kernel_gradient(x, g, size, padding):
    """d(loss)/d(kernel) [kh, kw, I, O] = sum over pixels of input patches times output
    gradients, as one matrix product per kernel tap.

    JAX's own rule is a convolution over the batch dimension that XLA:CPU runs about 17x slower
    inside loops (measured on the discriminator's parameter gradient in a fori_loop).
    """
    n, h, w, _ = g.shape
    (kh, kw), (py, px) = size, padding
    padded = jnp.pad(x, ((0, 0), (py, py), (px, px), (0, 0)))
    flat_g = g.reshape(n * h * w, -1)
    rows = []
    for a in range(kh):
        for b in range(kw):
            patch = padded[:, a : a + h, b : b + w].reshape(n * h * w, -1)
            rows.append(patch.T @ flat_g)
    return jnp.stack(rows).reshape(kh, kw, x.shape[-1], g.shape[-1])


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def conv2d_up2(x, kernel, f):
    """Official `conv2d_resample(up=2, padding=1)` for a 3x3 kernel: [N, H, W, I] -> [N, 2H, 2W, O].

    The official op is a stride-2 transposed convolution (a true convolution of the zero-dilated
    input; `kernel` here is already in correlation orientation), output 2H+1, then the 4x4 FIR with
    padding [1, 1] and gain 4. The transposed conv is computed polyphase (`_phases`): four small
    convolutions of the input, so no multiplications by inserted zeros are made.
    """
    if kernel.shape[:2] != (3, 3):
        raise ValueError(f"conv2d_up2 needs a 3x3 kernel, got {kernel.shape}")
    n, h, w, _ = x.shape
    phases = _phases(x, kernel.astype(x.dtype))  # [N, H+1, 2, W+1, 2, O]
    # Rows and columns 0 .. 2H of the transposed conv; the extra last one (2H+1) is zero.
    y = phases.reshape(n, 2 * h + 2, 2 * w + 2, kernel.shape[-1])
    return upfirdn2d(y, f, padding=(1, 0, 1, 0), gain=4.0)


# phase -> its (tap, kernel row) pairs: an even output row 2m reads input rows m-1 and m through
# kernel rows 0 and 2; an odd row 2m+1 reads row m through kernel row 1 (likewise along x). On the
# input padded by one, tap a of a phase reads padded row m + a.
_PHASE_TAPS = {0: ((0, 0), (1, 2)), 1: ((1, 1),)}


def _phase_span(phase):
    """(first padded row read, number of taps) of an output phase along one axis."""
    return _PHASE_TAPS[phase][0][0], len(_PHASE_TAPS[phase])


def _phase_kernel(kernel, py, px):
    """The [taps y, taps x, I, O] kernel of output phase (py, px)."""
    return jnp.stack(
        [jnp.stack([kernel[ry, rx] for _, rx in _PHASE_TAPS[px]]) for _, ry in _PHASE_TAPS[py]]
    )


def _phases(x, kernel):
    """The four output phases of the stride-2 transposed conv: [N, H+1, 2, W+1, 2, O].

    Phase (py, px) holds output pixels (2m + py, 2t + px): a 'valid' correlation of the input
    padded by one with its 2x2, 2x1, 1x2 or 1x1 part of the kernel. As XLA convolutions the
    c128ch64 W+ step ran 1.1x as fast as with the same phases written as matrix products of
    stacked slices (the stacking copies the input up to four times).
    """
    n, h, w, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    phases = []
    for py in (0, 1):
        for px in (0, 1):
            (y0, ny), (x0, nx) = _phase_span(py), _phase_span(px)
            window = padded[:, y0 : y0 + h + ny, x0 : x0 + w + nx]
            phases.append(_conv2d(window, _phase_kernel(kernel, py, px), (0, 0)))
    stacked = jnp.stack(phases, axis=3).reshape(n, h + 1, w + 1, 2, 2, -1)
    return stacked.transpose(0, 1, 3, 2, 4, 5)


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
    x = scale_channels(x, styles)
    if up:
        x = conv2d_up2(x, kernel, f)
    else:
        x = conv2d(x, kernel, padding=kernel.shape[0] // 2)
    if demodulate:
        kernel_sq = jnp.sum(jnp.square(kernel.astype(jnp.float32)), axis=(0, 1))  # [I, O]
        dcoefs = jax.lax.rsqrt(jnp.square(styles) @ kernel_sq + 1e-8)  # [N, O]
        x = scale_channels(x, dcoefs)
    return x
