"""Times the jitted inversion dispatch of `Inverter.run` as the run pipeline uses it.

Compilation is timed on its own (ahead of time: `lower(...).compile()`), then whole dispatches of
`steps_per_dispatch` steps; per-step numbers are the median dispatch over its steps. XLA's cost
analysis counts the body of a loop once: its FLOP count is that of one step, or with a microbatch
of one pass, so it is multiplied by the passes of a step.
"""

import dataclasses
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gaussjax.inversion import InversionConfig, Inverter, pass_count
from gaussjax.networks.lpips import LPIPS
from gaussjax.networks.stylegan2 import PureGenerator


@dataclasses.dataclass(frozen=True)
class StepTiming:
    """One measurement. Times in seconds, memory in bytes, FLOPs per optimisation step."""

    batch: int
    dtype: str
    remat: bool
    images_per_pass: int  # the step's passes (InversionConfig.microbatch) run one after another
    loss: str
    compile_s: float
    step_s: float
    image_steps_per_s: float
    flops_per_step: float | None
    temp_bytes: int | None  # XLA's buffer assignment for the dispatch (activations, gradients)
    peak_bytes: int | None  # the device's own peak counter, where it keeps one (GPU, TPU)

    @property
    def achieved_flops(self) -> float | None:
        return None if self.flops_per_step is None else self.flops_per_step / self.step_s


def prepare_dispatch(
    G,
    *,
    batch,
    steps=5,
    num_steps=None,
    dtype="float32",
    remat=False,
    lpips=False,
    microbatch=None,
):
    """(Inverter, arguments of its `run`) for a W+ inversion (Adam, the official schedule, MSE
    [+ LPIPS with random VGG weights, whose speed is that of trained ones]) of `batch` random
    targets on generator G, `steps` steps per dispatch."""
    fns, params = PureGenerator.split(G)
    cfg = InversionConfig.from_flat(
        space="wplus",
        num_steps=num_steps or 1000,
        steps_per_dispatch=steps,
        prior_weight=0.0,
        lpips_weight=1.0 if lpips else 0.0,
        dtype=dtype,
        remat=remat,
        microbatch=microbatch,
    )
    lpips_fns, lpips_params = nnx.split(LPIPS(rngs=nnx.Rngs(0))) if lpips else (None, None)
    inverter = Inverter(fns, G.cfg, cfg, np.zeros(G.cfg.w_dim, np.float32), 1.0, lpips_fns)
    res, ch = G.cfg.img_resolution, G.cfg.img_channels
    rng = np.random.RandomState(0)
    targets = jnp.asarray(rng.uniform(-1, 1, (batch, res, res, ch)), jnp.float32)
    feats = inverter.features(lpips_params, targets)
    state = inverter.init(params, jnp.arange(batch, dtype=jnp.int32), targets)
    return inverter, (params, lpips_params, None, state, targets, feats)


def compile_dispatch(inverter, args):
    """(the compiled `run`, seconds it took to compile)."""
    start = time.perf_counter()
    compiled = inverter.run.lower(*args).compile()
    return compiled, time.perf_counter() - start


def prepare_timed_dispatch(G, *, batch, steps, dispatches, **settings):
    """`prepare_dispatch` with a schedule long enough for a warm-up and `dispatches` timed
    dispatches of `steps` steps (`settings`: its dtype, remat, lpips, microbatch)."""
    return prepare_dispatch(
        G, batch=batch, steps=steps, num_steps=steps * (dispatches + 2), **settings
    )


def time_inversion(G, *, batch, steps=5, dispatches=3, **settings):
    """Compiles and times `dispatches` dispatches (after a warm-up one) of
    `prepare_timed_dispatch`."""
    inverter, args = prepare_timed_dispatch(
        G, batch=batch, steps=steps, dispatches=dispatches, **settings
    )
    compiled, compile_s = compile_dispatch(inverter, args)
    params, lpips_params, prior, state, targets, feats = args
    durations = []
    for i in range(dispatches + 1):
        start = time.perf_counter()
        state, loss = compiled(params, lpips_params, prior, state, targets, feats)
        jax.block_until_ready(loss)
        if i:  # the first dispatch warms caches and allocators
            durations.append(time.perf_counter() - start)
    step_s = statistics.median(durations) / steps
    cfg = inverter.cfg
    flops = _flops(compiled)
    passes = pass_count(batch, inverter.microbatch)
    return StepTiming(
        batch,
        cfg.compute.dtype,
        cfg.compute.remat,
        batch // passes,
        cfg.loss.label,
        compile_s,
        step_s,
        batch / step_s,
        None if flops is None else flops * passes,
        _temp_bytes(compiled),
        _peak_bytes(),
    )


def _flops(compiled) -> float | None:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def _temp_bytes(compiled) -> int | None:
    try:
        return int(compiled.memory_analysis().temp_size_in_bytes)
    except (AttributeError, NotImplementedError, jax.errors.JaxRuntimeError):
        return None


def _peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def device_memory_bytes() -> int:
    """What one device can hold: the accelerator's limit, or the host's RAM for CPU."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def batch_that_fits(timing: StepTiming, memory_bytes: int) -> int | None:
    """The largest batch whose step buffers fit in `memory_bytes`, from the per-image share of
    XLA's temporary buffers at the measured batch (they grow linearly with the batch). None when
    the step runs in passes: then they are those of one pass, whatever the batch."""
    if not timing.temp_bytes or timing.images_per_pass < timing.batch:
        return None
    return int(memory_bytes // (timing.temp_bytes / timing.batch))


def matmul_flops_per_s(dtype="float32", size=4096, repeats=5) -> float:
    """The device's rate on one large square matmul (best of `repeats`): the yardstick for the
    fraction of the hardware a step achieves."""
    keys = jax.random.split(jax.random.key(0))
    a, b = (jax.random.normal(k, (size, size), jnp.dtype(dtype)) for k in keys)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best
