"""A batch's images computed in passes one after another inside a step (equal results, less
memory at once; on CPU a per-device pass keeps its working set in cache)."""

import jax
import jax.numpy as jnp


def resolve_microbatch(microbatch: int | None) -> int:
    """ComputeConfig.microbatch with None made concrete: one image per device on CPU, else 0
    (the whole batch)."""
    if microbatch is not None:
        return microbatch
    return jax.device_count() if jax.default_backend() == "cpu" else 0


def pass_count(batch: int, microbatch: int) -> int:
    """The fewest passes of at most `microbatch` images (0: all) that divide `batch` evenly."""
    limit = microbatch or batch
    return next(p for p in range(1, batch + 1) if batch % p == 0 and batch // p <= limit)


def in_passes(fn, microbatch: int, *batched):
    """fn(*batched) for pytrees with a leading batch axis B, computed in passes of at most
    `microbatch` images (0: all) one after another (`lax.map`); equals fn on the whole batch when
    fn treats images independently.

    The passes are the fewest that divide B. Pass c takes images c, c + P, c + 2P, ... (P passes),
    so a batch split over devices in contiguous blocks splits every pass the same way (keep
    microbatch a multiple of the device count).
    """
    b = jax.tree.leaves(batched)[0].shape[0]
    passes = pass_count(b, microbatch)
    if passes == 1:
        return fn(*batched)

    def split(x):
        return jnp.swapaxes(x.reshape(b // passes, passes, *x.shape[1:]), 0, 1)

    def merge(x):
        return jnp.swapaxes(x, 0, 1).reshape(b, *x.shape[2:])

    out = jax.lax.map(lambda args: fn(*args), jax.tree.map(split, batched))
    return jax.tree.map(merge, out)
