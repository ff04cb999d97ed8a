"""A small built-in generator so every tool runs on a fresh install, before any model is converted.

Its weights are seeded random numbers, not a trained model: images look like structured noise.
Inverting them is still a faithful test of the machinery (the generator can reproduce its own
images exactly, so the true latents are known).
"""

import jax
from flax import nnx

from gaussjax.networks.config import GeneratorConfig
from gaussjax.networks.stylegan2 import Generator

DEMO_CONFIG = GeneratorConfig(
    z_dim=64,
    w_dim=64,
    img_resolution=32,
    img_channels=3,
    mapping_layers=8,
    channel_base=1024,
    channel_max=64,
    architecture="skip",
)


def demo_generator(seed: int = 0, cfg: GeneratorConfig = DEMO_CONFIG) -> Generator:
    """The demo generator: `cfg` (default DEMO_CONFIG) with weights drawn from `seed` and non-zero
    biases and noise strengths (so every term of the forward pass is exercised, as in the
    reference fixtures)."""
    G = Generator(cfg, rngs=nnx.Rngs(seed))
    graphdef, state = nnx.split(G)
    flat = nnx.to_flat_state(state)
    key = jax.random.key(seed + 1)
    perturbed = []
    for i, (path, var) in enumerate(flat):
        if path[-1] in ("bias", "noise_strength"):
            noise = 0.1 * jax.random.normal(jax.random.fold_in(key, i), var.shape)
            var = var.replace(var[...] + noise)
        perturbed.append((path, var))
    return nnx.merge(graphdef, nnx.from_flat_state(perturbed))
