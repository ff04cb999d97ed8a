"""Differentiable augmentations of every image D sees, reals and fakes alike (ADA-style).

Not in the official StyleGAN2 recipe: StyleGAN2-ADA (Karras et al. 2020) showed that a
discriminator trained on a few thousand images memorises them unless what it sees is augmented,
and that augmenting reals and fakes alike, each transformation applied with probability p < 0.8,
does not leak into the generator's output. Each transformation below is applied to each image
independently with probability `p`:
  translate: an integer shift of up to `max_shift` of the image size in x and y, edges repeated
             (ADA's `xint`);
  geometric: an isotropic scale 2^N(0, 0.2), a rotation uniform in +-`max_rotate_deg`, an
             anisotropic scale 2^N(0, 0.2) and a fractional shift N(0, 0.125) of the image size,
             composed into one affine warp, bilinear, edges repeated (ADA's `scale`, `rotate`,
             `aniso`, `xfrac`; ADA rotates by any angle, which would turn a 6 into a 9);
  color:     brightness + N(0, 0.2) and contrast * 2^N(0, 0.5) about mid-gray (ADA's values).
Images are [N, R, R, C] in [-1, 1]; every function is differentiable in them.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    p: float = 0.0  # probability of each transformation, per image; 0: no augmentation
    max_shift: float = 0.125
    geometric: bool = False
    max_rotate_deg: float = 15.0
    color: bool = False


def augment(images, key, cfg: AugmentConfig):
    """The pipeline (translate, then geometric, then color, as ADA orders them)."""
    if cfg.p <= 0:
        return images
    # The translation draws from `key` itself, so runs from before the other transformations
    # existed continue bit for bit.
    images = translate(images, key, cfg.p, cfg.max_shift)
    if cfg.geometric:
        images = warp(images, random_affine(jax.random.fold_in(key, 1), images.shape[0], cfg))
    if cfg.color:
        images = adjust_color(images, jax.random.fold_in(key, 2), cfg.p)
    return images


def translate(images, key, p: float, max_fraction: float):
    """Shifts each image [N, R, R, C] by integers in [-s, s]^2 (s = max_fraction * R) with
    probability p, repeating edge pixels; the others pass unchanged."""
    if p <= 0:
        return images
    n, r = images.shape[:2]
    s = max(1, int(round(max_fraction * r)))
    k_shift, k_apply = jax.random.split(key)
    shifts = _applied(k_apply, p, jax.random.randint(k_shift, (n, 2), -s, s + 1), 0)
    padded = jnp.pad(images, ((0, 0), (s, s), (s, s), (0, 0)), mode="edge")

    def crop(image, shift):
        return jax.lax.dynamic_slice(
            image, (s + shift[0], s + shift[1], 0), (r, r, image.shape[-1])
        )

    return jax.vmap(crop)(padded, shifts)


def _applied(key, p: float, value, identity):
    """`value` [N, ...] for the images whose coin (probability p) comes up, `identity` elsewhere."""
    coins = jax.random.uniform(key, value.shape[:1] + (1,) * (value.ndim - 1))
    return jnp.where(coins < p, value, identity)


def random_affine(key, n: int, cfg: AugmentConfig):
    """[N, 2, 3] maps from output to input coordinates (both in [-1, 1], x then y).

    The output -> input map is drawn directly: each factor's distribution is symmetric about the
    identity, so its inverse has the same distribution."""
    keys = jax.random.split(key, 8)
    log2_iso = _applied(keys[0], cfg.p, 0.2 * jax.random.normal(keys[1], (n,)), 0.0)
    limit = math.radians(cfg.max_rotate_deg)
    angle = _applied(
        keys[2], cfg.p, jax.random.uniform(keys[3], (n,), minval=-limit, maxval=limit), 0.0
    )
    log2_aniso = _applied(keys[4], cfg.p, 0.2 * jax.random.normal(keys[5], (n,)), 0.0)
    # [-1, 1] spans the image, so a shift of 0.125 of the image is 0.25 in these coordinates.
    shift = _applied(keys[7], cfg.p, 2 * 0.125 * jax.random.normal(keys[6], (n, 2)), 0.0)
    sx = jnp.exp2(log2_iso + log2_aniso)
    sy = jnp.exp2(log2_iso - log2_aniso)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    linear = jnp.stack(
        [jnp.stack([cos * sx, -sin * sy], -1), jnp.stack([sin * sx, cos * sy], -1)], -2
    )
    return jnp.concatenate([linear, shift[:, :, None]], axis=-1)


def warp(images, affine):
    """Bilinear resampling of [N, R, R, C] at affine [N, 2, 3] (output -> input, [-1, 1] coords
    of pixel centres' span), edges repeated."""
    r = images.shape[1]
    centres = (jnp.arange(r, dtype=jnp.float32) + 0.5) / r * 2 - 1
    gx, gy = jnp.meshgrid(centres, centres)  # [R, R]: x varies along columns
    grid = jnp.stack([gx, gy, jnp.ones_like(gx)], -1)  # [R, R, 3]
    coords = jnp.einsum("nij,hwj->nhwi", affine, grid)  # [N, R, R, 2] (x, y) in [-1, 1]
    pixels = (coords + 1) / 2 * r - 0.5
    return jax.vmap(_bilinear)(images, pixels[..., 1], pixels[..., 0])


def _bilinear(image, rows, cols):
    """image [R, R, C] sampled at float pixel positions rows, cols [R, R], edges repeated."""
    r = image.shape[0]
    r0, c0 = jnp.floor(rows), jnp.floor(cols)
    fr, fc = (rows - r0)[..., None], (cols - c0)[..., None]

    def at(dr, dc):
        i = jnp.clip(r0 + dr, 0, r - 1).astype(jnp.int32)
        j = jnp.clip(c0 + dc, 0, r - 1).astype(jnp.int32)
        return image[i, j]

    top = at(0, 0) * (1 - fc) + at(0, 1) * fc
    bottom = at(1, 0) * (1 - fc) + at(1, 1) * fc
    return top * (1 - fr) + bottom * fr


def adjust_color(images, key, p: float):
    """Brightness + N(0, 0.2), then contrast * 2^N(0, 0.5) about 0, each with probability p."""
    n = images.shape[0]
    k = jax.random.split(key, 4)
    brightness = _applied(k[0], p, 0.2 * jax.random.normal(k[1], (n,)), 0.0)
    contrast = _applied(k[2], p, jnp.exp2(0.5 * jax.random.normal(k[3], (n,))), 1.0)
    return (images + brightness[:, None, None, None]) * contrast[:, None, None, None]
