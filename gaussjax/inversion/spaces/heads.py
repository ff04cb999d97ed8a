"""SPHInX's projection heads (Subramanyam et al. 2022; shared/notes/papers.md §3.2), as flat dicts of
arrays with explicit inits: they are per-image optimised variables, so the engine vmaps them over a
batch like any latent.

Style head (replaces the mapping network): a row-wise encoder w_dim -> w_dim/2 -> w_dim/4 -> 32
(ReLU after the first layer only; 512 -> 256 -> 128 -> 32 at w_dim 512, the public code's widths as
powers of two of w_dim) shared by the W+ rows, then one decoder per row 32 -> 64 -> 128 -> w_dim
(ReLU after the first). Plain linear layers with PyTorch's default init, as the public code's
nn.Linear: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

Content head (its output replaces the learned 4x4 constant): 1x1 equalised convolutions
8 -> 32 -> 128 -> C without their own bias, a fused bias + leaky ReLU (slope 0.2, gain sqrt 2)
after the first two, as rosinality's EqualConv2d(bias=False) + FusedLeakyReLU: weights N(0, 1)
scaled by 1/sqrt(fan_in) at run time, biases zero.
"""

import functools
import itertools
import math

import jax
import jax.numpy as jnp

STYLE_CODE = 32  # the style head's bottleneck
CONTENT_CODE = 8  # channels of the content head's 4x4 input
CONTENT_HIDDEN = (4 * CONTENT_CODE, 16 * CONTENT_CODE)  # 32, 128


def style_widths(w_dim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(encoder widths, decoder widths), input first: ((512, 256, 128, 32), (32, 64, 128, 512))."""
    return (w_dim, w_dim // 2, w_dim // 4, STYLE_CODE), (STYLE_CODE, 64, 128, w_dim)


def split_draw(key, shapes: dict, sample=jax.random.normal) -> dict:
    """{name: array of shapes[name]} cut from ONE draw of `sample` (each RNG call inside a jitted,
    vmapped function costs seconds of compile time, so a space draws once per purpose)."""
    sizes = [math.prod(shape) for shape in shapes.values()]
    flat = sample(key, (sum(sizes),))
    offsets = [0, *itertools.accumulate(sizes)]
    return {
        name: flat[a:b].reshape(shape)
        for (name, shape), a, b in zip(shapes.items(), offsets[:-1], offsets[1:])
    }


def style_shapes(num_ws: int, w_dim: int) -> dict:
    """{enc_w{i} [in, out], enc_b{i} [out], dec_w{i} [num_ws, in, out], dec_b{i} [num_ws, out]}."""
    enc, dec = style_widths(w_dim)
    shapes = {}
    for i, (n_in, n_out) in enumerate(zip(enc[:-1], enc[1:])):
        shapes[f"enc_w{i}"], shapes[f"enc_b{i}"] = (n_in, n_out), (n_out,)
    for i, (n_in, n_out) in enumerate(zip(dec[:-1], dec[1:])):
        shapes[f"dec_w{i}"], shapes[f"dec_b{i}"] = (num_ws, n_in, n_out), (num_ws, n_out)
    return shapes


def init_style_head(key, num_ws: int, w_dim: int) -> dict:
    """style_shapes' arrays, each U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (fan_in: its layer's input)."""
    shapes = style_shapes(num_ws, w_dim)
    unit = split_draw(key, shapes, functools.partial(jax.random.uniform, minval=-1.0, maxval=1.0))
    fan_in = {name: shapes[name.replace("_b", "_w")][-2] for name in shapes}
    return {name: u / math.sqrt(fan_in[name]) for name, u in unit.items()}


def style_head(params: dict, z):
    """z [num_ws, w_dim] -> W+ [num_ws, w_dim]: row l is decoder l of the shared encoding of z_l."""
    h = z
    for i in range(3):
        h = h @ params[f"enc_w{i}"] + params[f"enc_b{i}"]
        h = jax.nn.relu(h) if i == 0 else h
    for i in range(3):
        h = jnp.einsum("ki,kio->ko", h, params[f"dec_w{i}"]) + params[f"dec_b{i}"]
        h = jax.nn.relu(h) if i == 0 else h
    return h


def with_mean_output(params: dict, code) -> dict:
    """The style head with its last decoder biases moved so that style_head(params, 0) == code
    [num_ws, w_dim] (the other parameters unchanged, so the head's response around 0 is kept)."""
    mean_output = style_head(params, jnp.zeros_like(code))
    last = f"dec_b{len(style_widths(code.shape[-1])[1]) - 2}"
    return {**params, last: params[last] + code - mean_output}


def init_content_head(key, channels: int) -> dict:
    """{content_w{i} [in, out] N(0, 1) (unscaled), content_b{i} [out] zeros for the activations}."""
    widths = (CONTENT_CODE, *CONTENT_HIDDEN, channels)
    shapes = {f"content_w{i}": shape for i, shape in enumerate(zip(widths[:-1], widths[1:]))}
    params = split_draw(key, shapes)
    params.update({f"content_b{i}": jnp.zeros((n,)) for i, n in enumerate(CONTENT_HIDDEN)})
    return params


def content_head(params: dict, s):
    """s [4, 4, CONTENT_CODE] -> [4, 4, channels], the synthesis network's constant input."""
    h = s
    for i in range(3):
        w = params[f"content_w{i}"]
        h = h @ (w / math.sqrt(w.shape[0]))  # equalised learning rate
        if i < 2:
            h = jax.nn.leaky_relu(h + params[f"content_b{i}"], 0.2) * math.sqrt(2.0)
    return h


def num_params(params: dict) -> int:
    return sum(int(v.size) for v in params.values())
