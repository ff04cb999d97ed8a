"""Data-parallel placement of image batches over every device of every host (no pmap).

One mesh axis, `data`: the batch is split over all devices; generator and prior are replicated.
Multi-host runs call `jax.distributed.initialize()` first; each process then feeds its own share of
the images, and `jax.make_array_from_process_local_data` assembles the global batch.
"""

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def data_mesh() -> jax.sharding.Mesh:
    """A 1-D mesh over all devices of all processes.

    Auto axis type: the compiler propagates the batch sharding through the vmapped step, so
    intermediate arrays created inside jit need no explicit annotations.
    """
    return jax.make_mesh(
        (jax.device_count(),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,)
    )


def local_batch_size(global_batch: int) -> int:
    """Per-process batch; the global batch is rounded up to a multiple of the device count."""
    devices = jax.device_count()
    rounded = -(-global_batch // devices) * devices
    return rounded // jax.process_count()


def shard_batch(mesh, local_tree):
    """Process-local arrays with leading batch dim -> global arrays split along `data`."""
    sharding = NamedSharding(mesh, P(DATA_AXIS))
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_tree)


def replicate(mesh, tree):
    """Places a pytree (generator params, prior) on every device of every process.

    Via host copies: arrays already committed to one device (restored from a checkpoint) would
    need a cross-host transfer, which the CPU backend cannot do; every process holds the same
    values, so each places its own.
    """
    return jax.device_put(jax.tree.map(np.asarray, tree), NamedSharding(mesh, P()))


def local_rows(x) -> np.ndarray:
    """The rows of a batch-sharded global array that belong to this process, in order."""
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    seen, rows = set(), []
    for s in shards:
        start = s.index[0].start or 0
        if start not in seen:  # replicas of the same rows on several local devices
            seen.add(start)
            rows.append(np.asarray(s.data))
    return np.concatenate(rows)
