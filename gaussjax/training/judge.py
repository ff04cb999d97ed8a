"""A realism judge for a fixed generator: a discriminator trained against it, with a pass mark
set on real images it never saw. A stand-in for the paper's user study (which frames look real).

    judge = train_judge(generator, reals, JudgeConfig(), seed=0)
    judge.scores(images)       # D logits [N], higher = more like the real images
    judge.realistic(images)    # bool [N]: score >= the pass mark
    save_judge(dst, judge, generator.cfg); load_judge(dst | "builtin")

Training is the GAN's own D step (`gan.discriminator_step`: logistic loss, lazy R1) with G frozen:
D sees the generator's samples (styles mixed, random noise) against a seeded share of the real
images. A quarter of its negatives are images no generator should make: uniform noise,
cross-fades of two real images and blank images (`negatives`). Trained on G's samples alone, D
never sees such images and passed every noise and blank image. The rest of the real images, never trained on,
set the pass mark: the score that `real_pass_rate` of them reach. A judged set's realistic
fraction is thus on the scale "real digits: 0.9". D runs with a minibatch-std group of 1, so an
image's score does not depend on the images judged beside it.
"""

import dataclasses
import functools
import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gaussjax.files import checkpoints
from gaussjax.files.safe_io import first_line, read_json
from gaussjax.networks.config import GeneratorConfig
from gaussjax.networks.stylegan2 import Buffer, Generator
from gaussjax.settings import setting
from gaussjax.training import gan
from gaussjax.training.discriminator import Discriminator

JUDGE_FILE = "judge.json"
WEIGHTS_DIR = "weights"
BUILTIN = "builtin"
BUILTIN_JUDGE_DIR = pathlib.Path(__file__).with_name("builtin_digits32_judge")


@dataclasses.dataclass(frozen=True)
class JudgeConfig:
    steps: int = setting(2000, "D steps against the frozen generator.")
    batch_size: int = setting(32, "Generated and real images per D step (each).")
    learning_rate: float = setting(0.0025, "Adam learning rate (the GAN's).")
    r1_gamma: float | None = setting(None, "R1 weight; default: the GAN's formula.")
    width: float = setting(1.0, "D's channels relative to G's.")
    held_out_fraction: float = setting(0.5, "Share of the real images kept for the pass mark.")
    real_pass_rate: float = setting(0.9, "Share of held-out real images that pass the mark.")
    negative_fraction: float = setting(
        0.25, "Share of D's negatives that are noise, cross-fades or blanks, not G's samples."
    )
    steps_per_dispatch: int = setting(100, "D steps per jitted call.")

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.steps_per_dispatch < 1:
            raise ValueError("the judge needs steps, batch_size and steps_per_dispatch >= 1")
        if not (0 < self.held_out_fraction < 1 and 0 < self.real_pass_rate <= 1):
            raise ValueError("held_out_fraction must be in (0, 1) and real_pass_rate in (0, 1]")
        if not 0 <= self.negative_fraction <= 1:
            raise ValueError(f"negative_fraction must be in [0, 1], got {self.negative_fraction}")


@dataclasses.dataclass(frozen=True)
class Judge:
    """graphdef, state: nnx.split of the Discriminator; threshold: the pass mark (a logit);
    generator_fingerprint: the generator it judges; record: how it was made (judge.json)."""

    graphdef: Any
    state: Any
    threshold: float
    generator_fingerprint: str
    record: dict

    def scores(self, images, chunk: int = 256) -> np.ndarray:
        """images [N, R, R, C] in [-1, 1] -> logits [N] float32."""
        images = np.asarray(images, np.float32)
        return np.concatenate(
            [
                np.asarray(_discriminate(self.graphdef, self.state, images[i : i + chunk]))
                for i in range(0, len(images), chunk)
            ]
        )

    def realistic(self, images) -> np.ndarray:
        """bool [N]: the image scores at least the pass mark."""
        return self.scores(images) >= self.threshold

    def check_generator(self, fingerprint: str) -> None:
        if fingerprint != self.generator_fingerprint:
            raise ValueError(
                f"the realism judge was trained against generator {self.generator_fingerprint}, "
                f"not this one ({fingerprint}): train one with experiments.train_judge"
            )


@functools.partial(jax.jit, static_argnums=(0,))
def _discriminate(graphdef, state, images):
    return nnx.merge(graphdef, state)(images)


def _gan_config(cfg: JudgeConfig) -> gan.TrainConfig:
    return gan.TrainConfig(
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        r1_gamma=cfg.r1_gamma,
        mbstd_group=1,
        d_width=cfg.width,
        steps_per_dispatch=cfg.steps_per_dispatch,
    )


def negatives(key, reals, count: int):
    """[count, R, R, C] images that are not real, in turn: uniform noise, a cross-fade
    (1 - t) a + t b of two real images with t ~ U(0.3, 0.7) (the ghosted double image of a bad
    interpolation), and a blank image of one gray level."""
    k_noise, k_pick, k_t, k_level = jax.random.split(key, 4)
    shape = (count, *reals.shape[1:])
    noise = jax.random.uniform(k_noise, shape, minval=-1.0, maxval=1.0)
    a, b = reals[jax.random.randint(k_pick, (2, count), 0, reals.shape[0])]
    t = jax.random.uniform(k_t, (count, 1, 1, 1), minval=0.3, maxval=0.7)
    blank = jnp.broadcast_to(jax.random.uniform(k_level, (count, 1, 1, 1), minval=-1.0), shape)
    kind = (jnp.arange(count) % 3)[:, None, None, None]
    return jnp.where(kind == 0, noise, jnp.where(kind == 1, (1.0 - t) * a + t * b, blank))


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(3,))
def _train_dispatch(nets, cfg: JudgeConfig, frozen, trained, reals, key, num_steps):
    """`num_steps` D steps (dynamic). frozen: G's (params, buffers); trained: D's (params, Adam
    state, iteration), donated; reals [M, R, R, C] are drawn from with replacement. Static: nets,
    cfg."""
    gan_cfg = _gan_config(cfg)
    count = round(cfg.negative_fraction * cfg.batch_size)

    def body(_, trained):
        d, d_opt, iteration = trained
        state = gan.TrainState(
            *frozen, g_ema=None, d=d, d_opt=d_opt, g_opt=None, iteration=iteration
        )
        k_step, k_real, k_fake, k_neg = jax.random.split(jax.random.fold_in(key, iteration), 4)
        batch = reals[jax.random.randint(k_real, (cfg.batch_size,), 0, reals.shape[0])]
        generator = nets.generator(state)
        fakes, _ = gan.fake_images(generator, k_fake, cfg.batch_size, gan_cfg.style_mixing_prob)
        if count:
            fakes = fakes.at[:count].set(negatives(k_neg, reals, count))
        state, _, _ = gan.discriminator_step(nets, gan_cfg, state, k_step, batch, fakes)
        return state.d, state.d_opt, iteration + 1

    return jax.lax.fori_loop(0, num_steps, body, trained)


def split_reals(reals: np.ndarray, cfg: JudgeConfig, seed: int):
    """(training, held out) rows of `reals`, a seeded permutation cut at held_out_fraction."""
    order = np.random.default_rng(seed).permutation(len(reals))
    cut = len(reals) - int(round(cfg.held_out_fraction * len(reals)))
    if cut < 1 or cut == len(reals):
        raise ValueError(
            f"held_out_fraction {cfg.held_out_fraction} leaves no training or held-out images"
        )
    return reals[order[:cut]], reals[order[cut:]]


def train_judge(
    generator: Generator, reals: np.ndarray, cfg: JudgeConfig, seed: int, log=print
) -> Judge:
    """A judge of `generator`'s images trained on a share of `reals` [M, R, R, C] in [-1, 1]."""
    train_reals, held_out = split_reals(np.asarray(reals, np.float32), cfg, seed)
    fingerprint = checkpoints.generator_fingerprint(generator)  # before the state is donated
    d = Discriminator(generator.cfg, rngs=nnx.Rngs(seed), mbstd_group=1, width=cfg.width)
    g_graph, g_params, g_buffers = nnx.split(generator, nnx.Param, Buffer)
    d_graph, d_params = nnx.split(d)
    nets = gan.Networks(g_graph, d_graph)
    trained = (d_params, gan.adam(_gan_config(cfg)).init(d_params), jnp.zeros((), jnp.int32))
    key, reals_on_device = jax.random.key(seed), jnp.asarray(train_reals)
    done, start = 0, time.time()
    while done < cfg.steps:
        n = min(cfg.steps_per_dispatch, cfg.steps - done)
        trained = _train_dispatch(
            nets, cfg, (g_params, g_buffers), trained, reals_on_device, key, n
        )
        done += n
        jax.block_until_ready(trained)
        log(f"judge: {done}/{cfg.steps} D steps, {time.time() - start:.0f} s")
    judge = Judge(d_graph, trained[0], 0.0, "", {})
    held_scores = judge.scores(held_out)
    threshold = float(np.quantile(held_scores, 1.0 - cfg.real_pass_rate))
    record = {
        "training": dataclasses.asdict(cfg),
        "seed": seed,
        "real_images": len(reals),
        "held_out_score_median": float(np.median(held_scores)),
    }
    return Judge(d_graph, trained[0], threshold, fingerprint, record)


def save_judge(dst, judge: Judge, generator_cfg: GeneratorConfig) -> None:
    """Writes (or replaces) the judge directory `dst`: judge.json + weights/ (Orbax)."""
    doc = {
        "generator": generator_cfg.to_dict(),
        "generator_fingerprint": judge.generator_fingerprint,
        "threshold": judge.threshold,
        **judge.record,
    }

    def fill(tmp):
        checkpoints.save_tree(tmp / WEIGHTS_DIR, jax.tree.map(np.asarray, judge.state))
        (tmp / JUDGE_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")

    checkpoints.assemble_dir(pathlib.Path(dst), fill)


def load_judge(path) -> Judge:
    """Reads a judge directory (`builtin`: the built-in generator's).

    Raises:
      FileNotFoundError: no judge there. ValueError: a corrupt judge.json or weights (one line).
    """
    directory = BUILTIN_JUDGE_DIR if str(path) == BUILTIN else pathlib.Path(path)
    if not (directory / JUDGE_FILE).is_file():
        raise FileNotFoundError(
            f"{directory} is not a realism judge (no {JUDGE_FILE}; train one with experiments.train_judge)"
        )
    doc = read_json(directory / JUDGE_FILE, ValueError)
    try:
        cfg = GeneratorConfig.from_dict(doc["generator"])
        width = float(doc["training"]["width"])
        threshold, fingerprint = float(doc["threshold"]), doc["generator_fingerprint"]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{directory / JUDGE_FILE}: bad judge record ({first_line(e)})") from e
    abstract = nnx.eval_shape(
        lambda: Discriminator(cfg, rngs=nnx.Rngs(0), mbstd_group=1, width=width)
    )
    graphdef, abstract_state = nnx.split(abstract)
    try:
        state = checkpoints.load_tree(directory / WEIGHTS_DIR, abstract_state)
    except Exception as e:  # Orbax raises many kinds, with messages of hundreds of lines
        raise ValueError(f"{directory / WEIGHTS_DIR} cannot be read as the judge's weights") from e
    record = {
        k: v for k, v in doc.items() if k not in ("generator", "threshold", "generator_fingerprint")
    }
    return Judge(graphdef, state, threshold, fingerprint, record)
