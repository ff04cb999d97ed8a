"""Speed features: rematerialisation and bfloat16 give the float32 results, reading ahead keeps
order and bounds, the compilation cache settings, and the benchmark's numbers and files."""

import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaussjax import runtime
from gaussjax.files import prefetch
from gaussjax.inversion import InversionConfig, Inverter
from gaussjax.networks.demo import demo_generator
from gaussjax.networks.stylegan2 import PureGenerator
from gaussjax.perf import inversion_step, official_projector

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_remat_gives_the_same_gradients_and_inversion(skip32):  # noqa: F811
    G, fns, params, io, targets, w_mean, w_std = skip32
    ws = jnp.asarray(io["ws"][:2])

    def grad(remat):
        loss = lambda w: jnp.sum(jnp.square(fns.synthesis(params, w, remat=remat) - targets[:2]))
        return np.asarray(jax.jit(jax.grad(loss))(ws))

    plain, remat = grad(False), grad(True)
    np.testing.assert_allclose(remat, plain, rtol=1e-5, atol=1e-6 * np.abs(plain).max())

    def invert(remat):
        cfg = InversionConfig.from_flat(space="w", num_steps=10, steps_per_dispatch=5, remat=remat)
        inverter = Inverter(fns, G.cfg, cfg, w_mean, w_std)
        result = inverter.invert(params, targets[:2], np.arange(2, dtype=np.int32))
        assert inverter.trace_counts["run"] == 1
        return result

    a, b = invert(False), invert(True)
    np.testing.assert_allclose(b.ws, a.ws, atol=1e-4)
    np.testing.assert_allclose(b.terms["psnr"], a.terms["psnr"], atol=1e-2)


@pytest.mark.slow
def test_bfloat16_synthesis_inverts_close_to_float32(skip32):  # noqa: F811
    G, fns, params, io, targets, w_mean, w_std = skip32
    synthesis = jax.jit(fns.synthesis, static_argnames="dtype")
    image32 = np.asarray(synthesis(params, io["ws"][:1]))
    image16 = synthesis(params, io["ws"][:1], dtype=jnp.bfloat16)
    assert image16.dtype == jnp.float32  # the RGB path stays float32
    scale = np.abs(image32).max()
    assert np.abs(np.asarray(image16) - image32).max() < 0.05 * scale

    cfg = InversionConfig.from_flat(
        space="w", num_steps=60, steps_per_dispatch=30, dtype="bfloat16"
    )
    inverter = Inverter(fns, G.cfg, cfg, w_mean, w_std)
    result = inverter.invert(params, targets[:2], np.arange(2, dtype=np.int32))
    start = np.asarray(synthesis(params, np.tile(w_mean, (2, G.num_ws, 1))))
    initial_mse = np.mean(np.square(start - targets[:2]), axis=(1, 2, 3))
    assert result.images.dtype == jnp.float32
    assert np.all(np.asarray(result.terms["mse"]) < 0.5 * initial_mse)
    assert inverter.trace_counts["run"] == 1


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="dtype must be one of"):
        InversionConfig.from_flat(dtype="float16")


def test_ordered_map_keeps_order_and_reads_at_most_ahead():
    in_flight, most = 0, 0
    lock = threading.Lock()

    def slow_square(x):
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        time.sleep(0.01 * (x % 3))  # finish out of order
        with lock:
            in_flight -= 1
        return x * x

    consumed = []
    for y in prefetch.ordered_map(slow_square, range(20), ahead=3, workers=4):
        consumed.append(y)
    assert consumed == [x * x for x in range(20)]
    assert most <= 3


def test_ordered_map_raises_at_the_failing_items_turn():
    def fail_on_two(x):
        if x == 2:
            raise KeyError("two")
        return x

    out = prefetch.ordered_map(fail_on_two, range(5), ahead=4)
    assert [next(out), next(out)] == [0, 1]
    with pytest.raises(KeyError, match="two"):
        next(out)
    with pytest.raises(ValueError, match="ahead must be >= 1"):
        list(prefetch.ordered_map(fail_on_two, range(5), ahead=0))


def test_compilation_cache_directory_choice(tmp_path, monkeypatch):
    previous = jax.config.jax_compilation_cache_dir
    min_time = jax.config.jax_persistent_cache_min_compile_time_secs
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        monkeypatch.setenv("GAUSSJAX_CACHE_DIR", "")
        assert runtime.enable_compilation_cache() is None
        monkeypatch.setenv("GAUSSJAX_CACHE_DIR", str(tmp_path / "env"))
        assert runtime.enable_compilation_cache() == tmp_path / "env"
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "env")
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0
        # Already set (a --jax_compilation_cache_dir flag): kept.
        assert runtime.enable_compilation_cache(tmp_path / "other") == tmp_path / "env"
    finally:
        jax.config.update("jax_compilation_cache_dir", previous)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", min_time)


@pytest.mark.slow
@pytest.mark.skipif(
    not runtime.on_measured_jaxlib(),
    reason="the XLA:CPU flags are set only on the jaxlib they were measured on",
)
@pytest.mark.parametrize("off", [False, True])
def test_cpu_xla_flags_leave_convolutions_to_xla(off):
    """With the launchers' flags a 3x3 convolution is XLA's own and a dot still goes to YNNPACK;
    GAUSSJAX_CPU_FLAGS=0 keeps XLA's default, where both do."""
    script = """
from gaussjax import runtime
added = runtime.set_cpu_xla_flags()
import jax, jax.numpy as jnp
conv = jax.jit(lambda x, k: jax.lax.conv_general_dilated(
    x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
conv = conv.lower(jnp.ones((1, 32, 32, 64)), jnp.ones((3, 3, 64, 64))).compile().as_text()
dot = jax.jit(jnp.matmul).lower(jnp.ones((256, 256)), jnp.ones((256, 256))).compile().as_text()
print(len(added), "__ynn_fusion" in conv, "__ynn_fusion" in dot)
"""
    env = dict(os.environ, GAUSSJAX_CPU_FLAGS="0" if off else "1")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == (["0", "True", "True"] if off else ["1", "False", "True"])


@pytest.mark.slow
def test_step_timing_counts_flops_and_memory():
    G = demo_generator()
    timing = inversion_step.time_inversion(G, batch=2, steps=2, dispatches=1)
    assert timing.image_steps_per_s == pytest.approx(2 / timing.step_s)
    # XLA counts one loop body: FLOPs of one step, at least the forward 3x3 convolutions' own.
    cfg = G.cfg
    conv_flops = sum(
        2 * 2 * r * r * cfg.channels(r) * cfg.channels(r) * 9 for r in cfg.block_resolutions
    )
    assert timing.flops_per_step > conv_flops
    assert timing.temp_bytes > 0
    assert inversion_step.batch_that_fits(timing, timing.temp_bytes * 10) == 20


def test_official_code_must_be_a_checkout(tmp_path):
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match="no training/networks.py"):
        official_projector.official_generator(tmp_path, demo_generator().cfg)


@pytest.mark.skipif(
    not os.environ.get("GAUSSJAX_OFFICIAL_CODE"),
    reason="set GAUSSJAX_OFFICIAL_CODE to a stylegan2-ada-pytorch checkout",
)
def test_official_generator_converts_to_the_same_images():
    torch = pytest.importorskip("torch")
    from converters import pytorch_keys as key_maps

    cfg = demo_generator().cfg
    torch_G, state = official_projector.official_generator(
        os.environ["GAUSSJAX_OFFICIAL_CODE"], cfg, seed=3
    )
    ours = key_maps.generator_from_state_dict(state, cfg)
    ws = np.random.RandomState(0).randn(2, cfg.num_ws, cfg.w_dim).astype(np.float32)
    with torch.no_grad():
        expected = torch_G.synthesis(torch.from_numpy(ws), noise_mode="const", force_fp32=True)
    fns, params = PureGenerator.split(ours)
    got = np.asarray(fns.synthesis(params, ws)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4 * np.abs(got).max())
    assert official_projector.time_official_step(torch_G, steps=1) > 0


@pytest.mark.slow
def test_benchmark_writes_the_table_it_prints(tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.benchmark",
            f"--out={out}",
            "--generators=demo",
            "--batch_sizes=2",
            "--steps=1",
            "--dispatches=1",
            "--remat=both",
            "--microbatches=0,1,auto",
            "--loader_images=2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    payload = json.loads(out.with_suffix(".json").read_text())
    rows = payload["rows"]
    cuts = [(r["batch"], r["remat"], r["images_per_pass"]) for r in rows]
    assert cuts == [(2, False, 2), (2, False, 1), (2, True, 2), (2, True, 1)]
    # auto equals 0 or 1 here (one image per device): measured once. In passes XLA counts one
    # pass; the table gives the whole step's FLOPs, and no batch limit.
    whole, passes = rows[0], rows[1]
    assert passes["flops_per_step"] == pytest.approx(whole["flops_per_step"], rel=0.05)
    assert passes["fits_batch"] is None and whole["fits_batch"] > 0
    markdown = out.with_suffix(".md").read_text()
    for r in rows:
        assert f"| {r['image_steps_per_s']:.2f} |" in markdown
        assert r["achieved_flops"] == pytest.approx(r["flops_per_step"] / r["step_s"])
        assert r["matmul_fraction"] == pytest.approx(
            r["achieved_flops"] / payload["matmul_flops_per_s"]
        )
        assert r["cached_compile_s"] > 0 and r["compile_s"] > 0
    assert set(payload["loader_images_per_s"]) == {"sequential", "2 threads", "8 threads"}
    assert markdown in result.stdout
