"""Encoder directories: `encoder.json` (config, the generator's fingerprint, how it was trained)
and `weights/` (Orbax), written atomically; and the encoder that ships with the built-in generator.

    save_encoder(dst, encoder, generator_fingerprint, metadata={"kimg": 400})
    encoder = load_encoder("out/encoder")         # a training run's folder, or its encoder/ folder
    encoder = load_encoder("builtin")             # the built-in generator's
    encoder.check_generator(fingerprint)          # refuses another generator, one line
"""

import dataclasses
import functools
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gaussjax.encoding.network import Encoder, EncoderConfig
from gaussjax.files import checkpoints
from gaussjax.files.safe_io import first_line, read_json
from gaussjax.inversion import sharding
from gaussjax.inversion.engine import ENCODABLE_TASKS

ENCODER_FILE = "encoder.json"
WEIGHTS_DIR = "weights"
EXPORT_DIR = "encoder"  # inside a training run's folder
BUILTIN = "builtin"
NO_ENCODER = "none"
BUILTIN_ENCODER_DIR = pathlib.Path(__file__).with_name("builtin_digits32")


def default_encoder(generator: str | None, task: str) -> str | None:
    """The encoder a run starts from when none is named: the built-in one for the built-in
    generator (generator None) where the task's measurements are full images, else none. Its start
    is ahead of the mean latent's at every step count measured (docs/encoder.md)."""
    return BUILTIN if generator is None and task in ENCODABLE_TASKS else None


@dataclasses.dataclass(frozen=True)
class LoadedEncoder:
    """An encoder read from a directory.

    Attributes:
      graphdef, state: nnx.split of the Encoder (merge them inside jitted code).
      cfg: its EncoderConfig.
      generator_fingerprint: the generator it was trained for.
      fingerprint: hash of its config and weights (recorded in the runs that use it).
      source: where it was read from, for messages.
      metadata: the rest of encoder.json (training kimg, command, ...).
    """

    graphdef: Any
    state: Any
    cfg: EncoderConfig
    generator_fingerprint: str
    fingerprint: str
    source: str
    metadata: dict

    def check_generator(self, fingerprint: str) -> None:
        if fingerprint != self.generator_fingerprint:
            raise ValueError(
                f"the encoder {self.source} was trained for generator {self.generator_fingerprint}, "
                f"not this one ({fingerprint}): train one with experiments.train_encoder"
            )

    def replicated(self, mesh) -> "LoadedEncoder":
        """This encoder with its weights replicated over `mesh` (to encode batches sharded on it,
        across processes too)."""
        return dataclasses.replace(self, state=sharding.replicate(mesh, self.state))

    def encode(self, images):
        """images [B, R, R, C] in [-1, 1] -> W+ codes [B, num_ws, w_dim] (jitted; the weights are
        an argument, not compiled-in constants, and follow the images' sharding)."""
        return _encode(self.graphdef, self.state, images)


@functools.partial(jax.jit, static_argnums=(0,))
def _encode(graphdef, state, images):
    return nnx.merge(graphdef, state)(images)


def new_encoder(cfg: EncoderConfig, prior_stats, seed: int) -> Encoder:
    """An untrained encoder around a prior's mu and sigma = sqrt(diag Sigma) (PriorStats)."""
    scale = np.sqrt(np.maximum(np.diag(np.asarray(prior_stats.cov, np.float64)), 1e-12))
    return Encoder(cfg, prior_stats.mean, scale, rngs=nnx.Rngs(seed))


def encoder_fingerprint(encoder: Encoder) -> str:
    return checkpoints.module_fingerprint(
        json.dumps(encoder.cfg.to_dict(), sort_keys=True), encoder
    )


def save_encoder(
    dst, encoder: Encoder, generator_fingerprint: str, metadata: dict | None = None
) -> None:
    """Writes (or replaces) the encoder directory `dst`."""
    doc = {
        "encoder": encoder.cfg.to_dict(),
        "generator_fingerprint": generator_fingerprint,
        "fingerprint": encoder_fingerprint(encoder),
        **(metadata or {}),
    }

    def fill(tmp):
        checkpoints.save_tree(tmp / WEIGHTS_DIR, jax.tree.map(np.asarray, nnx.state(encoder)))
        (tmp / ENCODER_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")

    checkpoints.assemble_dir(pathlib.Path(dst), fill)


def encoder_dir(path) -> pathlib.Path:
    """`builtin`, an encoder directory, or a training run's folder (its encoder/)."""
    if str(path) == BUILTIN:
        return BUILTIN_ENCODER_DIR
    path = pathlib.Path(path)
    if not (path / ENCODER_FILE).is_file() and (path / EXPORT_DIR / ENCODER_FILE).is_file():
        return path / EXPORT_DIR
    if not (path / ENCODER_FILE).is_file():
        raise FileNotFoundError(
            f"{path} is not an encoder directory (no {ENCODER_FILE}; train one with "
            "experiments.train_encoder)"
        )
    return path


def load_encoder(path) -> LoadedEncoder:
    """Reads an encoder directory (see `encoder_dir`).

    Raises:
      FileNotFoundError: no encoder there. ValueError: a corrupt encoder.json or weights that do
        not match it (one line).
    """
    directory = encoder_dir(path)
    doc = read_json(directory / ENCODER_FILE, ValueError)
    try:
        cfg = EncoderConfig.from_dict(doc.pop("encoder"))
        generator_fp, fingerprint = doc.pop("generator_fingerprint"), doc.pop("fingerprint")
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{directory / ENCODER_FILE}: bad encoder record ({first_line(e)})") from e
    zeros = jnp.zeros((cfg.w_dim,))
    graphdef, abstract = nnx.split(
        nnx.eval_shape(lambda: Encoder(cfg, zeros, zeros, rngs=nnx.Rngs(0)))
    )
    try:
        state = checkpoints.load_tree(directory / WEIGHTS_DIR, abstract)
    except Exception as e:  # Orbax raises many kinds, with messages of hundreds of lines
        raise ValueError(
            f"{directory / WEIGHTS_DIR} cannot be read as the encoder of {directory / ENCODER_FILE}"
        ) from e
    source = BUILTIN if directory == BUILTIN_ENCODER_DIR else str(directory)
    return LoadedEncoder(graphdef, state, cfg, generator_fp, fingerprint, source, doc)
