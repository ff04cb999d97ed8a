"""The Gaussianizing transform of Wulff & Torralba (papers note §1.2).

The mapping network ends with a leaky ReLU of negative slope 0.2 (times a gain). Its output w is
far from Gaussian: the negative half of every coordinate is squashed by 5. Undoing that last
activation gives v = LeakyReLU_5(w), a scaled pre-activation: an affine function of the previous
layer's outputs, which is close to a D-dimensional Gaussian and so is described by a mean and a
covariance. The gain is not undone: it only rescales v and does not change its Gaussianity.
"""

import jax
import jax.numpy as jnp


def _check_slope(negative_slope: float) -> None:
    # Slope 0 (a ReLU mapping net) loses the negative half of w: nothing to undo.
    if not negative_slope > 0:
        raise ValueError(f"negative_slope must be > 0 to be invertible, got {negative_slope}")


def gaussianize(w: jax.Array, negative_slope: float = 0.2) -> jax.Array:
    """Maps w to v = w where w >= 0, else w / negative_slope.

    Args:
      w: latents of any shape, e.g. [N, D] (W) or [N, L, D] (W+).
      negative_slope: slope of the mapping network's last leaky ReLU on negative inputs
        (`GeneratorConfig.mapping_negative_slope`; 0.2 for StyleGAN2, so v = LeakyReLU_5(w)).

    Returns:
      v with the shape and dtype of w.
    """
    _check_slope(negative_slope)
    w = jnp.asarray(w)
    return jnp.where(w >= 0, w, w / negative_slope)


def degaussianize(v: jax.Array, negative_slope: float = 0.2) -> jax.Array:
    """The inverse of `gaussianize`: w = v where v >= 0, else v * negative_slope.

    Args:
      v: Gaussianized latents of any shape.
      negative_slope: the slope given to `gaussianize`.

    Returns:
      w with the shape and dtype of v.
    """
    _check_slope(negative_slope)
    v = jnp.asarray(v)
    return jnp.where(v >= 0, v, v * negative_slope)
