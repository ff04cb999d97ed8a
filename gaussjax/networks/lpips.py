"""LPIPS-VGG16 (v0.1, 'net-lin') as Flax NNX modules, NHWC.

The numerics follow the `lpips` package (Zhang et al. 2018) with `net='vgg', version='0.1'`:

1. images in [-1, 1] go through the ScalingLayer, `(x - shift) / scale` (the ImageNet mean/std
   written in [-1, 1] units);
2. torchvision's VGG16 `features` stack gives relu1_2, relu2_2, relu3_3, relu4_3, relu5_3;
3. each activation is unit-normalised over channels, `f / (sqrt(sum_c f^2) + 1e-10)`;
4. the squared difference of the two images' normalised features is weighted per channel by the
   non-negative 'lin' weights, averaged over space and summed over the five layers.

`LPIPS.features` gives the same distance as a flat vector per image (the form NVIDIA's TorchScript
`vgg16.pt` returns with `return_lpips=True`), so a target's features can be computed once and the
distance becomes a plain squared Euclidean norm.

No I/O here: weights come in through `files/lpips_weights.py`.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

# torchvision vgg16 'D' configuration of `features`: conv3x3 widths, 'M' = 2x2 max-pool, stride 2.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# Channels of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3: the taps LPIPS reads.
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
# lpips ScalingLayer constants, in [-1, 1] image units.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
# lpips `normalize_tensor` adds eps to the norm (not to the squared norm).
EPS = 1e-10


def ensure_rgb(x: jax.Array) -> jax.Array:
    """Tiles a single-channel image batch to 3 channels; RGB passes through.

    Args:
      x: images [N, H, W, 1] or [N, H, W, 3].

    Returns:
      [N, H, W, 3].

    Raises:
      ValueError: for any other channel count.
    """
    if x.shape[-1] == 1:
        return jnp.broadcast_to(x, x.shape[:-1] + (3,))
    if x.shape[-1] != 3:
        raise ValueError(f"LPIPS needs 1 or 3 channels (NHWC), got shape {x.shape}")
    return x


def scale_input(x: jax.Array) -> jax.Array:
    """lpips ScalingLayer: `(x - shift) / scale` per RGB channel.

    Args:
      x: images [N, H, W, 3] in [-1, 1].

    Returns:
      [N, H, W, 3] in the same dtype.
    """
    shift = jnp.asarray(SHIFT, x.dtype)
    scale = jnp.asarray(SCALE, x.dtype)
    return (x - shift) / scale


def normalize_channels(f: jax.Array, eps: float = EPS) -> jax.Array:
    """Unit-normalises features over the channel axis exactly as lpips does.

    The forward value is `f / (sqrt(sum_c f^2) + eps)`. The square root is guarded so that a pixel
    whose channels are all zero (common after ReLU) gets a zero gradient through the norm instead
    of `inf * 0 = nan`; the value is unchanged.

    Args:
      f: features [N, H, W, C].
      eps: added to the norm.

    Returns:
      [N, H, W, C].
    """
    sq = jnp.sum(jnp.square(f), axis=-1, keepdims=True)
    positive = sq > 0
    norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)
    return f / (norm + eps)


def layer_distance(fx: jax.Array, fy: jax.Array, lin_w: jax.Array) -> jax.Array:
    """One LPIPS term: lin-weighted squared difference, summed over C, averaged over H, W.

    Args:
      fx: normalised features [N, H, W, C].
      fy: normalised features [N, H, W, C].
      lin_w: non-negative channel weights [C].

    Returns:
      [N].
    """
    weighted = jnp.sum(jnp.square(fx - fy) * lin_w, axis=-1)
    return jnp.mean(weighted, axis=(1, 2))


def flat_features(feats: Sequence[jax.Array], lin: Sequence[jax.Array]) -> jax.Array:
    """Flat per-image vectors whose squared Euclidean distance is the LPIPS distance.

    Each layer contributes `f * sqrt(lin_w) / sqrt(H * W)` flattened in NHWC order (NVIDIA's
    `vgg16.pt` flattens NCHW; the order differs, distances do not).

    Args:
      feats: the 5 normalised feature maps, each [N, H_l, W_l, C_l].
      lin: the 5 non-negative weight vectors, each [C_l].

    Returns:
      [N, D] with D = sum_l H_l * W_l * C_l.
    """
    parts = []
    for f, lin_w in zip(feats, lin):
        n, h, w, _ = f.shape
        scaled = f * (jnp.sqrt(lin_w).astype(f.dtype) / jnp.sqrt(jnp.asarray(h * w, f.dtype)))
        parts.append(scaled.reshape(n, -1))
    return jnp.concatenate(parts, axis=1)


class VGG16Features(nnx.Module):
    """torchvision VGG16 `features` (13 conv3x3 + ReLU, 4 max-pools), NHWC.

    `convs[i]` is the i-th conv layer (torchvision `features.{0,2,5,7,10,12,14,17,19,21,24,26,28}`),
    kernels [3, 3, in, out] (HWIO).
    """

    def __init__(self, *, rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32, precision=None):
        """Builds the conv stack with torchvision's init (He normal, fan_out; zero bias).

        Args:
          rngs: parameter randomness (irrelevant once converted weights are loaded).
          dtype: computation dtype; None promotes inputs and parameters.
          param_dtype: parameter dtype.
          precision: `jax.lax` precision of the convolutions.
        """
        widths = [c for c in VGG16_LAYOUT if c != "M"]
        init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
        self.convs = nnx.List(
            [
                nnx.Conv(
                    c_in,
                    c_out,
                    (3, 3),
                    padding=((1, 1), (1, 1)),
                    dtype=dtype,
                    param_dtype=param_dtype,
                    precision=precision,
                    kernel_init=init,
                    rngs=rngs,
                )
                for c_in, c_out in zip([3] + widths[:-1], widths)
            ]
        )

    def __call__(self, x: jax.Array) -> tuple[jax.Array, ...]:
        """Runs the stack and returns the activations LPIPS reads.

        Args:
          x: preprocessed images [N, H, W, 3].

        Returns:
          relu1_2 [N, H, W, 64], relu2_2 [N, H/2, W/2, 128], relu3_3 [N, H/4, W/4, 256],
          relu4_3 [N, H/8, W/8, 512], relu5_3 [N, H/16, W/16, 512] (sizes floor-divided).
        """
        taps, i = [], 0
        for item in VGG16_LAYOUT:
            if item == "M":
                # The tap is the ReLU output right before each pool (torch MaxPool2d floors).
                taps.append(x)
                x = nnx.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
            else:
                x = jax.nn.relu(self.convs[i](x))
                i += 1
        taps.append(x)
        return tuple(taps)


class LPIPS(nnx.Module):
    """LPIPS-VGG16 v0.1 distance between images in [-1, 1], NHWC.

    Images need H, W >= 16 so that relu5_3 (after four 2x2 pools) is not empty.

    Attributes:
      vgg: the VGG16Features backbone.
      lin: 5 non-negative channel weights (Params), shapes [64], [128], [256], [512], [512].
    """

    def __init__(self, *, rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32, precision=None):
        """Builds an untrained model; lin weights start at 1 (plain sum of normalised differences).

        Args:
          rngs: parameter randomness for the backbone.
          dtype: computation dtype; None promotes inputs and parameters.
          param_dtype: parameter dtype.
          precision: `jax.lax` precision of the convolutions. On GPUs the default may run float32
            convolutions in TF32; `jax.lax.Precision.HIGHEST` keeps them in full float32.
        """
        self.vgg = VGG16Features(
            rngs=rngs, dtype=dtype, param_dtype=param_dtype, precision=precision
        )
        self.lin = nnx.List([nnx.Param(jnp.ones((c,), param_dtype)) for c in LPIPS_CHANNELS])

    def normalized_features(self, x: jax.Array) -> tuple[jax.Array, ...]:
        """Channel-normalised VGG activations of images.

        Args:
          x: images [N, H, W, 1 or 3] in [-1, 1].

        Returns:
          5 arrays [N, H_l, W_l, C_l].
        """
        feats = self.vgg(scale_input(ensure_rgb(x)))
        return tuple(normalize_channels(f) for f in feats)

    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """LPIPS distance, as `lpips.LPIPS(net='vgg')(x, y)` computes it.

        Args:
          x: images [N, H, W, 1 or 3] in [-1, 1].
          y: images of the same shape as x.

        Returns:
          distances [N].

        Raises:
          ValueError: x and y differ in shape (after tiling grayscale to RGB).
        """
        x, y = ensure_rgb(x), ensure_rgb(y)
        if x.shape != y.shape:
            raise ValueError(f"LPIPS compares equal shapes, got {x.shape} and {y.shape}")
        n = x.shape[0]
        # One backbone pass over both batches: one conv per layer instead of two.
        feats = self.normalized_features(jnp.concatenate([x, y]))
        terms = [layer_distance(f[:n], f[n:], w[...]) for f, w in zip(feats, self.lin)]
        return sum(terms[1:], terms[0])

    def features(self, x: jax.Array) -> jax.Array:
        """Flat features with `sum((features(x) - features(y))**2, -1) == self(x, y)`.

        Args:
          x: images [N, H, W, 1 or 3] in [-1, 1].

        Returns:
          [N, D], D = sum_l H_l * W_l * C_l (124928 for 32 x 32 images, 7995392 for 256 x 256).
        """
        return flat_features(self.normalized_features(x), [w[...] for w in self.lin])
