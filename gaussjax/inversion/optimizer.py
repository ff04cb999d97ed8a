"""The optimiser of an inversion: any optax optimiser under the official projector's learning-rate
schedule (reference-stylegan2.md §3.1), or a constant rate."""

import functools

import jax
import jax.numpy as jnp
import optax

from gaussjax.inversion import spaces as latent_spaces
from gaussjax.inversion.config import OptimConfig


def lr_schedule(cfg: OptimConfig):
    """The official projector's schedule as an optax schedule (cosine ramp-down, linear ramp-up),
    or a constant rate."""
    if cfg.lr_schedule == "constant":
        return optax.constant_schedule(cfg.learning_rate)

    def schedule(count):
        t = count / cfg.num_steps
        ramp = jnp.minimum(1.0, (1.0 - t) / cfg.lr_rampdown)
        ramp = 0.5 - 0.5 * jnp.cos(jnp.pi * ramp)
        return cfg.learning_rate * ramp * jnp.minimum(1.0, t / cfg.lr_rampup)

    return schedule


def make_optimizer(cfg: OptimConfig, space: str) -> optax.GradientTransformation:
    """optax.<cfg.optimizer>(learning_rate=the official schedule).

    Latent variables named with one of `space`'s `constant_rate_prefixes` keep the constant
    rate cfg.learning_rate instead (SPHInX: the schedule drives the style head only)."""
    factory = getattr(optax, cfg.optimizer, None)
    try:
        tx = factory(learning_rate=lr_schedule(cfg))
    except TypeError as e:  # None, or not an optimiser taking a learning rate
        raise ValueError(f"{cfg.optimizer!r} is not an optax optimiser taking learning_rate") from e
    if not isinstance(tx, optax.GradientTransformation):
        raise ValueError(f"optax.{cfg.optimizer} is not an optimiser")
    prefixes = latent_spaces.constant_rate_prefixes(space)
    if not prefixes or cfg.lr_schedule == "constant":
        return tx
    transforms = {"scheduled": tx, "constant": factory(learning_rate=cfg.learning_rate)}
    return optax.multi_transform(transforms, functools.partial(_rate_labels, prefixes=prefixes))


def _rate_labels(variables: dict, prefixes) -> dict:
    """The engine's variables {"latent": {name: ...}, "noise": ...} -> "scheduled" / "constant"."""
    labels = jax.tree.map(lambda _: "scheduled", variables)
    for name, value in variables["latent"].items():
        label = "constant" if name.startswith(prefixes) else "scheduled"
        labels["latent"][name] = jax.tree.map(lambda _, label=label: label, value)
    return labels
