"""Orbax checkpoints (behind `save_tree` / `load_tree`) and generator directories.

The Orbax V1 API (`orbax.checkpoint.v1`) is used in exactly two functions, so a future API switch is a
one-file change.
"""

import hashlib
import json
import os
import pathlib
import shutil
import uuid

import jax
import numpy as np
from flax import nnx
from orbax.checkpoint import v1 as ocp

from gaussjax.files.safe_io import first_line, read_json, read_npz
from gaussjax.networks.builtin import BUILTIN_DIR, BUILTIN_NOTICE
from gaussjax.networks.config import GeneratorConfig
from gaussjax.networks.stylegan2 import Generator

CONFIG_FILE = "config.json"
WEIGHTS_DIR = "weights"
PRIOR_FILE = "prior.npz"  # the prior cached beside the weights (experiments.invert, README)
FINGERPRINT_KEY = "generator_fingerprint"  # in a prior file: the generator it was fitted for


def save_tree(path, tree) -> None:
    """Writes a pytree of arrays to a new Orbax checkpoint directory at `path`."""
    ocp.save(pathlib.Path(path).absolute(), tree)


def load_tree(path, abstract_tree):
    """Reads an Orbax checkpoint written by `save_tree` into the structure of `abstract_tree`.

    Leaves without a sharding are placed on the first local device.
    """
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def with_sharding(leaf):
        if getattr(leaf, "sharding", None) is not None:
            return leaf
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device)

    return ocp.load(pathlib.Path(path).absolute(), jax.tree.map(with_sharding, abstract_tree))


def abstract_generator(cfg: GeneratorConfig) -> Generator:
    """A Generator with shapes but no allocated weights (for restoring or key mapping)."""
    return nnx.eval_shape(lambda: Generator(cfg, rngs=nnx.Rngs(0)))


def _to_numpy_state(state):
    return jax.tree.map(np.asarray, state)


def generator_fingerprint(generator: Generator) -> str:
    """A short hash of the config and every weight, so derived files (priors) can name their generator."""
    return module_fingerprint(generator.cfg.to_json(), generator)


def module_fingerprint(config_text: str, module: nnx.Module) -> str:
    """16 hex digits of sha256 over a config's text and every array of the module's state."""
    digest = hashlib.sha256(config_text.encode())
    for path, value in sorted(nnx.to_flat_state(nnx.state(module)), key=lambda kv: str(kv[0])):
        digest.update(str(path).encode())
        digest.update(np.ascontiguousarray(np.asarray(value[...], np.float32)).tobytes())
    return digest.hexdigest()[:16]


def save_generator(
    dst, generator: Generator, metadata: dict | None = None, overwrite=False, log=print
) -> None:
    """Saves `generator` as a directory: `config.json` (human readable) + `weights/` (Orbax).

    The directory is assembled under a temporary name beside `dst` and renamed into place, so a
    partly written generator never exists at `dst`. Overwriting keeps the prior cached in the old
    directory (`carry_over_prior`), and says what it did through `log`.

    Raises:
      FileExistsError: `dst` exists and `overwrite` is False, or `dst` is not a generator directory
        (overwrite never deletes anything else).
    """
    dst = pathlib.Path(dst).absolute()
    check_destination(dst, overwrite)
    doc = {
        "generator": generator.cfg.to_dict(),
        "fingerprint": generator_fingerprint(generator),
        **(metadata or {}),
    }
    notes = []

    def fill(tmp):
        save_tree(tmp / WEIGHTS_DIR, _to_numpy_state(nnx.state(generator)))
        (tmp / CONFIG_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        notes.append(carry_over_prior(dst, tmp, doc["fingerprint"]))

    assemble_dir(dst, fill)
    if notes[0]:
        log(notes[0])


def assemble_dir(dst: pathlib.Path, fill) -> None:
    """Builds a directory with fill(tmp) under a temporary name beside `dst`, then swaps it into
    place (`replace_dir`), so a partly written directory never exists at `dst`."""
    dst = pathlib.Path(dst).absolute()
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        fill(tmp)
        replace_dir(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def carry_over_prior(old_dir: pathlib.Path, new_dir: pathlib.Path, fingerprint: str) -> str | None:
    """Copies the prior cached in a generator directory that is being replaced into its new
    contents: as PRIOR_FILE when it was fitted for these very weights (same fingerprint), else
    aside as prior.<its fingerprint>.npz, so nothing is lost but no stale prior is used.

    Returns:
      A message for the user, or None when `old_dir` holds no prior.
    """
    prior = old_dir / PRIOR_FILE
    if not prior.is_file():
        return None
    try:
        fitted_for = str(read_npz(prior)[FINGERPRINT_KEY])
    except (ValueError, KeyError):
        fitted_for = "unknown"
    if fitted_for == fingerprint:
        shutil.copy2(prior, new_dir / PRIOR_FILE)
        return f"kept {prior}: the weights are unchanged (fingerprint {fingerprint})"
    aside = f"prior.{fitted_for}.npz"
    shutil.copy2(prior, new_dir / aside)
    return (
        f"{prior} was fitted for other weights ({fitted_for}; now {fingerprint}): kept as "
        f"{old_dir / aside}, not used; fit a new prior with experiments.fit_prior"
    )


def check_destination(dst, overwrite: bool) -> None:
    """Refuses an existing `dst` unless `overwrite` is set and it is a generator directory."""
    dst = pathlib.Path(dst)
    if not dst.exists() and not dst.is_symlink():
        return
    if not overwrite:
        raise FileExistsError(f"{dst} already exists (set overwrite to replace it)")
    if not (dst.is_dir() and (dst / CONFIG_FILE).is_file() and (dst / WEIGHTS_DIR).is_dir()):
        raise FileExistsError(
            f"refusing to overwrite {dst}: it is not a gaussjax generator directory"
        )


def replace_dir(src: pathlib.Path, dst: pathlib.Path) -> None:
    """Moves `src` to `dst`; an existing `dst` is swapped out first and deleted only afterwards."""
    old = None
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_generator_config(path) -> tuple[GeneratorConfig, dict]:
    """Reads `config.json` of a generator directory: (config, the whole JSON document)."""
    path = pathlib.Path(path)
    cfg_file = path / CONFIG_FILE
    if not path.is_dir() or not cfg_file.is_file() or not (path / WEIGHTS_DIR).is_dir():
        raise FileNotFoundError(
            f"{path} is not a gaussjax generator directory "
            f"(expected {CONFIG_FILE} and {WEIGHTS_DIR}/; make one with converters.convert)"
        )
    doc = read_json(cfg_file, ValueError)
    if not isinstance(doc.get("generator"), dict):
        raise ValueError(f"{cfg_file}: no 'generator' section (rewrite it with converters.convert)")
    try:
        return GeneratorConfig.from_dict(doc["generator"]), doc
    except (TypeError, ValueError) as e:  # missing, unknown or ill-typed fields
        raise ValueError(f"{cfg_file}: bad generator config ({first_line(e)})") from e


def load_generator_module(path) -> Generator:
    """Restores the Generator saved by `save_generator`.

    Raises:
      FileNotFoundError: not a generator directory. ValueError: a corrupt config.json, or weights
        that do not match it (one line naming the file).
    """
    path = pathlib.Path(path)
    cfg, _ = read_generator_config(path)
    model = abstract_generator(cfg)
    graphdef, abstract_state = nnx.split(model)
    weights = pathlib.Path(path) / WEIGHTS_DIR
    try:
        state = load_tree(weights, abstract_state)
    except Exception as e:  # Orbax raises many kinds, with messages of hundreds of lines
        raise ValueError(
            f"{weights} cannot be read as the generator of {path / CONFIG_FILE} ({first_line(e)})"
        ) from e
    return nnx.merge(graphdef, state)


def generator_or_builtin(path, log=print) -> Generator:
    """The generator directory at `path`, or (None) the built-in one, saying so through `log`."""
    if path is None:
        log(BUILTIN_NOTICE)
        path = BUILTIN_DIR
    return load_generator_module(path)
