"""The resampling ops against straightforward references: zero insertion plus a depthwise
convolution (FIR), and a zero-dilated convolution then that FIR (the transposed conv of
`conv2d_up2`). Forward values and gradients (w.r.t. the input and the conv kernel), under jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaussjax.networks import ops

SEPARABLE_4 = ops.setup_filter([1, 3, 3, 1])
SEPARABLE_3 = ops.setup_filter([1, 2, 1])
# Rank 2: not an outer product, so it takes the general path.
NON_SEPARABLE_4 = np.array(
    [[1, 2, 0, 1], [0, 3, 1, 2], [2, 1, 4, 0], [1, 0, 2, 3]], np.float32
) / np.float32(23)
FILTERS = {"sep4": SEPARABLE_4, "sep3": SEPARABLE_3, "nonsep4": NON_SEPARABLE_4}


def reference_upfirdn2d(x, f, up=1, padding=(0, 0, 0, 0), gain=1.0):
    """The official definition, literally: insert zeros, pad, depthwise-convolve with f * gain."""
    n, h, w, c = x.shape
    if up > 1:
        x = x.reshape(n, h, 1, w, 1, c)
        x = jnp.pad(x, ((0, 0), (0, 0), (0, up - 1), (0, 0), (0, up - 1), (0, 0)))
        x = x.reshape(n, h * up, w * up, c)
    x0, x1, y0, y1 = padding
    x = jax.lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (y0, y1, 0), (x0, x1, 0), (0, 0, 0)))
    kernel = np.asarray(f[::-1, ::-1] * gain, np.float32)[:, :, None, None]
    return jax.lax.conv_general_dilated(
        x,
        jnp.asarray(np.tile(kernel, (1, 1, 1, c)), x.dtype),
        window_strides=(1, 1),
        padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
    )


def reference_conv2d_up2(x, kernel, f):
    """Transposed stride-2 conv as a conv of the zero-dilated input, then the FIR (pad 1, gain 4)."""
    y = jax.lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        window_strides=(1, 1),
        padding=[(2, 2), (2, 2)],
        lhs_dilation=(2, 2),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return reference_upfirdn2d(y, f, padding=(1, 1, 1, 1), gain=4.0)


def assert_close(actual, expected, tol, what):
    """Max abs difference within `tol`, relative to the reference's scale when that exceeds 1."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, what
    scale = max(1.0, float(np.abs(expected).max()))
    err = float(np.abs(actual - expected).max()) / scale
    assert err <= tol, f"{what}: max abs difference {err:.3g} (scale {scale:.3g})"


def value_and_grads(fn, args, cotangent):
    """fn(*args) and the gradients of <fn(*args), cotangent> w.r.t. every arg, all under jit."""

    def loss(*a):
        return jnp.sum(fn(*a).astype(jnp.float32) * cotangent)

    out = jax.jit(fn)(*args)
    grads = jax.jit(jax.grad(loss, argnums=tuple(range(len(args)))))(*args)
    return out, grads


def check_against_reference(fn, ref, args, tol):
    rng = np.random.RandomState(1)
    expected = ref(*args)
    cotangent = jnp.asarray(rng.randn(*expected.shape), jnp.float32)
    out, grads = value_and_grads(fn, args, cotangent)
    ref_out, ref_grads = value_and_grads(ref, args, cotangent)
    assert out.dtype == expected.dtype
    assert_close(out, ref_out, tol, "forward")
    for i, (g, r) in enumerate(zip(grads, ref_grads)):
        assert g.dtype == r.dtype
        assert_close(g, r, tol, f"gradient w.r.t. argument {i}")


@pytest.mark.slow
@pytest.mark.parametrize("filter_name", sorted(FILTERS))
@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize(
    "padding, gain",
    [
        ((0, 0, 0, 0), 1.0),
        ((1, 1, 1, 1), 4.0),
        ((2, 1, 2, 1), 4.0),
        ((1, 0, 1, 0), 4.0),
        ((-1, 2, 0, 3), 2.5),
    ],
)
def test_upfirdn2d_matches_reference(filter_name, up, padding, gain):
    x = jnp.asarray(np.random.RandomState(0).randn(2, 7, 6, 3), jnp.float32)
    f = FILTERS[filter_name]

    def fn(x):
        return ops.upfirdn2d(x, f, up=up, padding=padding, gain=gain)

    def ref(x):
        return reference_upfirdn2d(x, f, up=up, padding=padding, gain=gain)

    check_against_reference(fn, ref, (x,), 1e-5)


@pytest.mark.parametrize("filter_name", sorted(FILTERS))
def test_upsample2d_is_exactly_twice_the_size(filter_name):
    x = jnp.asarray(np.random.RandomState(0).randn(2, 5, 4, 5), jnp.float32)
    f = FILTERS[filter_name]
    assert ops.upsample2d(x, f).shape == (2, 10, 8, 5)
    fw = f.shape[-1]
    p0, p1 = (fw + 1) // 2, (fw - 2) // 2

    def ref(x):
        return reference_upfirdn2d(x, f, up=2, padding=(p0, p1, p0, p1), gain=4)

    check_against_reference(lambda x: ops.upsample2d(x, f), ref, (x,), 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("filter_name", ["sep4", "nonsep4"])
@pytest.mark.parametrize("shape", [(2, 5, 7, 3, 5), (1, 8, 8, 6, 4)])
def test_conv2d_up2_matches_transposed_conv_then_filter(filter_name, shape):
    n, h, w, i, o = shape
    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.randn(n, h, w, i), jnp.float32)
    kernel = jnp.asarray(rng.randn(3, 3, i, o) / np.sqrt(9 * i), jnp.float32)
    f = FILTERS[filter_name]
    out = ops.conv2d_up2(x, kernel, f)
    assert out.shape == (n, 2 * h, 2 * w, o)

    def fn(x, kernel):
        return ops.conv2d_up2(x, kernel, f)

    def ref(x, kernel):
        return reference_conv2d_up2(x, kernel, f)

    check_against_reference(fn, ref, (x, kernel), 1e-5)


def test_modulated_conv2d_up_matches_reference():
    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.randn(2, 6, 6, 5), jnp.float32)
    kernel = jnp.asarray(rng.randn(3, 3, 5, 7), jnp.float32)
    styles = jnp.asarray(rng.randn(2, 5), jnp.float32)

    def fn(x, kernel, styles):
        return ops.modulated_conv2d(x, kernel, styles, up=True, f=SEPARABLE_4)

    def ref(x, kernel, styles):
        y = reference_conv2d_up2(x * styles[:, None, None, :], kernel, SEPARABLE_4)
        dcoefs = jax.lax.rsqrt(jnp.square(styles) @ jnp.sum(jnp.square(kernel), (0, 1)) + 1e-8)
        return y * dcoefs[:, None, None, :]

    check_against_reference(fn, ref, (x, kernel, styles), 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("f", [SEPARABLE_4, NON_SEPARABLE_4], ids=["sep4", "nonsep4"])
def test_bfloat16_inputs_stay_bfloat16_and_close_to_float32(f):
    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.randn(2, 6, 5, 3), jnp.float32)
    kernel = jnp.asarray(rng.randn(3, 3, 3, 5) / np.sqrt(27), jnp.float32)
    xb = x.astype(jnp.bfloat16)
    up = ops.upsample2d(xb, f)
    assert up.dtype == jnp.bfloat16
    assert_close(up, reference_upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1), gain=4), 3e-2, "up")
    y = ops.conv2d_up2(xb, kernel, f)
    assert y.dtype == jnp.bfloat16
    assert_close(y, reference_conv2d_up2(x, kernel, f), 3e-2, "conv2d_up2")
    grad = jax.jit(jax.grad(lambda k: jnp.sum(ops.conv2d_up2(xb, k, f).astype(jnp.float32))))
    ref_grad = jax.grad(lambda k: jnp.sum(reference_conv2d_up2(x, k, f)))
    assert_close(grad(kernel), ref_grad(kernel), 3e-2, "kernel gradient")


@pytest.mark.parametrize("size,padding", [(3, 1), (3, 0), (1, 0), (2, 0)])
def test_conv2d_gradients_equal_xlas_own(size, padding):
    """conv2d's hand-written input gradient (and the kernel gradient) against jax's rule."""
    rng = np.random.RandomState(1)
    x = jnp.asarray(rng.randn(2, 7, 6, 4), jnp.float32)
    kernel = jnp.asarray(rng.randn(size, size, 4, 5), jnp.float32)

    def ref(x, kernel):
        return jax.lax.conv_general_dilated(
            x, kernel, (1, 1), [(padding, padding)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    check_against_reference(lambda x, k: ops.conv2d(x, k, padding), ref, (x, kernel), 1e-5)


@pytest.mark.parametrize("size,padding", [(3, 1), (1, 0)])
def test_conv2d_second_derivatives_equal_xlas_own(size, padding):
    """Reverse over reverse (the discriminator's R1 penalty: d/dkernel |d/dx D(x)|^2) through the
    hand-written rules equals JAX's."""
    rng = np.random.RandomState(2)
    x = jnp.asarray(rng.randn(2, 7, 6, 4), jnp.float32)
    kernel = jnp.asarray(rng.randn(size, size, 4, 5) / 3, jnp.float32)

    def r1(conv):
        def penalty(x, kernel):
            dx = jax.grad(lambda x: jnp.sum(jnp.tanh(conv(x, kernel))))(x)
            return jnp.sum(jnp.square(dx))

        return jax.jit(jax.grad(penalty, argnums=(0, 1)))(x, kernel)

    def ref(x, kernel):
        return jax.lax.conv_general_dilated(
            x, kernel, (1, 1), [(padding, padding)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    ours, theirs = r1(lambda x, k: ops.conv2d(x, k, padding)), r1(ref)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("up", [1, 2])
def test_upfirdn2d_second_derivatives_equal_reference(up):
    """Reverse over reverse through the FIR's hand-written gradient (R1 differentiates the
    discriminator's downsampling twice) equals JAX's own rules on the reference."""
    x = jnp.asarray(np.random.RandomState(3).randn(2, 6, 5, 3), jnp.float32)
    f, padding = FILTERS["sep4"], (2, 1, 2, 1)

    def second(fir):
        def penalty(x):
            dx = jax.grad(lambda x: jnp.sum(jnp.tanh(fir(x)) * jnp.cos(fir(x))))(x)
            return jnp.sum(jnp.square(dx) * x)

        return jax.jit(jax.grad(penalty))(x)

    ours = second(lambda x: ops.upfirdn2d(x, f, up=up, padding=padding, gain=4.0))
    theirs = second(lambda x: reference_upfirdn2d(x, f, up=up, padding=padding, gain=4.0))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_conv2d_up2_second_derivatives_equal_reference():
    """Reverse over reverse through conv2d_up2's hand-written input gradient equals JAX's rules on
    the reference (transposed conv, then the FIR)."""
    rng = np.random.RandomState(4)
    x = jnp.asarray(rng.randn(2, 4, 5, 3), jnp.float32)
    kernel = jnp.asarray(rng.randn(3, 3, 3, 2) / 3, jnp.float32)

    def second(up):
        def penalty(x, kernel):
            dx = jax.grad(lambda x: jnp.sum(jnp.tanh(up(x, kernel))))(x)
            return jnp.sum(jnp.square(dx))

        return jax.jit(jax.grad(penalty, argnums=(0, 1)))(x, kernel)

    ours = second(lambda x, k: ops.conv2d_up2(x, k, SEPARABLE_4))
    theirs = second(lambda x, k: reference_conv2d_up2(x, k, SEPARABLE_4))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_separable_taps_detects_rank_one_filters():
    col, row = ops.separable_taps(SEPARABLE_4 * 4)
    np.testing.assert_allclose(np.outer(col, row), SEPARABLE_4 * 4, rtol=1e-6)
    assert ops.separable_taps(NON_SEPARABLE_4) is None


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
def test_bias_and_channel_scale_gradients_equal_plain_autodiff(dtype):
    """add_bias and scale_channels sum their parameter gradients as products with ones: equal to
    JAX's rules on the plain expressions, in the parameters' dtype, and twice differentiable (R1)."""
    rng = np.random.RandomState(5)
    x = jnp.asarray(rng.randn(2, 6, 5, 3), dtype)
    bias, scales = (jnp.asarray(rng.randn(*s), jnp.float32) for s in ((3,), (2, 3)))

    def ours(x, bias, scales):
        return ops.scale_channels(ops.bias_act(x, bias, "lrelu"), scales)

    def plain(x, bias, scales):
        y = jax.nn.leaky_relu(x + bias.astype(x.dtype), 0.2) * jnp.asarray(ops.SQRT2, x.dtype)
        return y * scales[:, None, None, :].astype(x.dtype)

    def r1(fn):  # d/d(bias, scales) |d/dx sum(tanh(fn))|^2
        def penalty(bias, scales):
            dx = jax.grad(lambda x: jnp.sum(jnp.tanh(fn(x, bias, scales).astype(jnp.float32))))(x)
            return jnp.sum(jnp.square(dx.astype(jnp.float32)))

        return jax.jit(jax.grad(penalty, argnums=(0, 1)))(bias, scales)

    tol = 1e-5 if dtype == jnp.float32 else 3e-2
    cotangent = jnp.asarray(rng.randn(*x.shape), dtype)
    _, got = value_and_grads(ours, (x, bias, scales), cotangent)
    _, want = value_and_grads(plain, (x, bias, scales), cotangent)
    for g, w, name in zip(got, want, ("x", "bias", "scales")):
        assert g.dtype == w.dtype
        assert_close(g.astype(jnp.float32), w.astype(jnp.float32), tol, name)
    for g, w in zip(r1(ours), r1(plain)):
        assert_close(g, w, 10 * tol, "second derivative")
