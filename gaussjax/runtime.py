"""Process-wide JAX settings the launchers share."""

import os
import pathlib

import jax
import jaxlib

DEFAULT_CACHE_DIR = pathlib.Path.home() / ".cache" / "gaussjax" / "xla"


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> pathlib.Path | None:
    """Turns on JAX's persistent compilation cache, so a rerun skips XLA compilation.

    An explicit `--jax_compilation_cache_dir` (or JAX_COMPILATION_CACHE_DIR) wins; otherwise
    `directory`, then $GAUSSJAX_CACHE_DIR, then ~/.cache/gaussjax/xla. GAUSSJAX_CACHE_DIR=""
    turns the cache off. In a directory of ours every program is stored, however quick to
    compile: building a generator eagerly compiles dozens of small ones (the demo generator took
    17 s cold and 2.3 s from the cache). Returns the directory in use, or None when off.
    """
    current = jax.config.jax_compilation_cache_dir
    if current:
        return pathlib.Path(current)
    env = os.environ.get("GAUSSJAX_CACHE_DIR")
    if directory is None and env == "":
        return None
    path = pathlib.Path(directory or env or DEFAULT_CACHE_DIR).expanduser()
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path


# XLA:CPU hands dot fusions to the YNNPACK library, and by default also its convolutions and
# reductions (seen in the compiled HLO). Measured on 2 cores (jaxlib 0.10.2), W+ inversion step: with
# dots only, the 3x3 convolutions at 64 channels use XLA's own kernels, and c128ch64 runs 1.2-1.3x
# the image-steps/s (ffhq256 unchanged); dots, elementwise and reductions without convolutions ran
# 0.5x. README, Benchmark.
CPU_XLA_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT",)
MEASURED_JAXLIB = "0.10."


def on_measured_jaxlib() -> bool:
    """Whether this jaxlib is the one CPU_XLA_FLAGS were measured on (XLA aborts on a flag it
    does not know)."""
    return jaxlib.__version__.startswith(MEASURED_JAXLIB)


def set_cpu_xla_flags() -> list[str]:
    """Adds CPU_XLA_FLAGS to $XLA_FLAGS; returns the flags added. Call before JAX starts a backend.

    Only on the jaxlib they were measured on (`on_measured_jaxlib`), never over a flag the user set
    in $XLA_FLAGS, and not when GAUSSJAX_CPU_FLAGS=0. They touch only the CPU backend.
    """
    if os.environ.get("GAUSSJAX_CPU_FLAGS") == "0" or not on_measured_jaxlib():
        return []
    current = os.environ.get("XLA_FLAGS", "")
    added = [f for f in CPU_XLA_FLAGS if f.split("=")[0] not in current]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added
