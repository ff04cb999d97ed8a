"""StyleGAN2's residual discriminator as Flax NNX modules, NHWC (official `resnet` architecture).

Layers use equalised learning rate like the generator: weights are stored as N(0, 1) and scaled by
1/sqrt(fan_in) at run time; activations are leaky ReLU(0.2) times sqrt(2). Per block at resolution
r: conv 3x3 -> blur-downsample -> conv 3x3, plus a blur-downsample 1x1 skip, summed with gain
sqrt(1/2). The official block strides its second conv after the blur; here the blur and decimation
come first and the conv runs at the low resolution (the same operator family, a quarter of the
FLOPs). The 4x4 epilogue: minibatch standard deviation, conv 3x3, dense, dense -> one logit.

With `pack` > 1 (PacGAN, Lin et al. 2018; not in the official recipe) D judges `pack` images at a
time, stacked along channels: a generator that drops modes is then easier to tell apart, because
a pack of its samples is less varied than a pack of reals.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from gaussjax.networks import ops
from gaussjax.networks.config import GeneratorConfig

SQRT_HALF = math.sqrt(0.5)


class Conv(nnx.Module):
    """Equalised-lr k x k conv, optional bias + leaky ReLU; `down` blur-downsamples first."""

    def __init__(self, in_ch, out_ch, k, *, rngs, bias=True, act="lrelu", down=False, taps=None):
        self.weight = nnx.Param(jax.random.normal(rngs.params(), (k, k, in_ch, out_ch)))
        self.bias = nnx.Param(jnp.zeros((out_ch,), jnp.float32)) if bias else None
        self.act = act
        self.down = down
        self.taps = taps
        self.weight_gain = 1.0 / math.sqrt(in_ch * k * k)

    def __call__(self, x, gain=1.0):
        """x: [N, H, W, in] -> [N, H', W', out] (H' = H/2 when `down`)."""
        if self.down:
            x = downsample2d(x, ops.setup_filter(self.taps))
        x = ops.conv2d(x, self.weight[...] * self.weight_gain, padding=self.weight.shape[0] // 2)
        bias = None if self.bias is None else self.bias[...]
        return ops.bias_act(x, bias, act=self.act, gain=gain)


class Dense(nnx.Module):
    """Equalised-lr fully connected layer with bias and activation."""

    def __init__(self, in_features, out_features, *, rngs, act="lrelu"):
        self.weight = nnx.Param(jax.random.normal(rngs.params(), (in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))
        self.act = act
        self.weight_gain = 1.0 / math.sqrt(in_features)

    def __call__(self, x):
        return ops.bias_act(x @ (self.weight[...] * self.weight_gain), self.bias[...], act=self.act)


class DiscriminatorBlock(nnx.Module):
    """Resolution r -> r/2 with a residual 1x1 skip."""

    def __init__(self, in_ch, out_ch, taps, *, rngs):
        self.conv0 = Conv(in_ch, in_ch, 3, rngs=rngs)
        self.conv1 = Conv(in_ch, out_ch, 3, rngs=rngs, down=True, taps=taps)
        self.skip = Conv(
            in_ch, out_ch, 1, rngs=rngs, bias=False, act="linear", down=True, taps=taps
        )

    def __call__(self, x):
        skip = self.skip(x, gain=SQRT_HALF)
        return skip + self.conv1(self.conv0(x), gain=SQRT_HALF)


class Discriminator(nnx.Module):
    """Images [N, R, R, C] in [-1, 1] -> logits [N / pack] (real > fake), one per `pack`
    consecutive images; channels at each resolution `width` times the generator's."""

    def __init__(self, cfg: GeneratorConfig, *, rngs: nnx.Rngs, mbstd_group=4, pack=1, width=1.0):
        def channels(res):  # the generator's at `res`, times `width`
            return max(1, round(cfg.channels(res) * width))

        self.pack = pack
        self.from_rgb = Conv(cfg.img_channels * pack, channels(cfg.img_resolution), 1, rngs=rngs)
        self.blocks = nnx.List(
            [
                DiscriminatorBlock(
                    channels(res), channels(res // 2), cfg.resample_filter, rngs=rngs
                )
                for res in reversed(cfg.block_resolutions[1:])
            ]
        )
        ch = channels(4)
        self.mbstd_group = mbstd_group
        self.conv = Conv(ch + 1, ch, 3, rngs=rngs)
        self.fc = Dense(ch * 16, ch, rngs=rngs)
        self.out = Dense(ch, 1, rngs=rngs, act="linear")

    def __call__(self, images):
        x = self.from_rgb(pack_images(images, self.pack))
        for block in self.blocks:
            x = block(x)
        x = self.conv(minibatch_stddev(x, self.mbstd_group))
        return self.out(self.fc(x.reshape(x.shape[0], -1)))[:, 0]


def pack_images(images, pack: int):
    """[N, H, W, C] -> [N / pack, H, W, pack * C]: images pack*i .. pack*i + pack - 1 side by side
    along channels."""
    n, h, w, c = images.shape
    if n % pack:
        raise ValueError(f"batch {n} is not a multiple of the discriminator's pack {pack}")
    packed = images.reshape(n // pack, pack, h, w, c).transpose(0, 2, 3, 1, 4)
    return packed.reshape(n // pack, h, w, pack * c)


def downsample2d(x, f):
    """Official `downsample2d` (factor 2): FIR filter `f` [k, k] with padding, keep every 2nd pixel.
    [N, H, W, C] -> [N, H/2, W/2, C]."""
    k = f.shape[0]
    p0, p1 = (k - 1) // 2, (k - 2) // 2
    return ops.upfirdn2d(x, f, padding=(p0, p1, p0, p1))[:, ::2, ::2]


def minibatch_stddev(x, group_size):
    """Appends the official minibatch-std feature: per group of `group_size` images, the mean over
    features and pixels of the standard deviation across the group. [N, H, W, C] -> [.., C + 1].

    Image i belongs to group i mod (N / group_size), as in the official reshape.
    """
    n, h, w, c = x.shape
    g = min(group_size, n)
    if n % g:
        raise ValueError(f"batch {n} is not a multiple of the minibatch-std group {g}")
    y = x.reshape(g, n // g, h, w, c).astype(jnp.float32)
    std = jnp.sqrt(jnp.var(y, axis=0) + 1e-8)  # [N/g, H, W, C]
    feature = jnp.mean(std, axis=(1, 2, 3))  # [N/g]
    feature = jnp.tile(feature, g)[:, None, None, None]  # image i -> group i mod N/g
    return jnp.concatenate([x, jnp.broadcast_to(feature, (n, h, w, 1)).astype(x.dtype)], axis=-1)
