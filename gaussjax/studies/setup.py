"""A generator with its Gaussianized prior, loaded once for a whole study (many inversions/samples)."""

import dataclasses
import pathlib
from collections.abc import Callable

import numpy as np

from gaussjax.analysis import pca as pca_lib
from gaussjax.analysis.prior import GaussianPrior, PriorStats
from gaussjax.files import checkpoints
from gaussjax.inversion import pipeline
from gaussjax.inversion.config import InversionConfig
from gaussjax.inversion.engine import Inverter
from gaussjax.networks.config import GeneratorConfig
from gaussjax.networks.stylegan2 import PureGenerator, jit_mapping, jit_synthesis


@dataclasses.dataclass(frozen=True)
class Study:
    """fns, params: `PureGenerator.split` of the generator; prior/stats: as `prior.load_prior`
    returns them; base: the RunSpec the generator and prior were obtained with; fingerprint:
    the generator's (checkpoints.generator_fingerprint)."""

    fns: object
    params: object
    cfg: GeneratorConfig
    prior: GaussianPrior
    stats: PriorStats
    base: pipeline.RunSpec
    fingerprint: str = ""

    @property
    def pca(self) -> pca_lib.LatentPCA:
        s = self.stats
        return pca_lib.make_pca(s.mean, s.cov, s.mean_w, s.negative_slope)

    def map(self, z, class_idx: int | None = None, chunk: int = 1024) -> np.ndarray:
        """Mapped latents [N, num_ws, w_dim] of z [N, z_dim], in jitted chunks. A conditional
        generator maps with class `class_idx` (default 0)."""
        out = []
        for start in range(0, len(z), chunk):
            rows = np.asarray(z[start : start + chunk], np.float32)
            c = None if self.cfg.c_dim == 0 else self.cfg.class_labels(class_idx or 0, len(rows))
            out.append(np.asarray(jit_mapping(self.fns, self.params, rows, c)))
        return np.concatenate(out)

    def render(self, ws, chunk: int = 64) -> np.ndarray:
        """Images [N, H, W, C] float32 (nominally [-1, 1]) of ws [N, num_ws, w_dim], const noise."""
        return np.concatenate(
            [
                np.asarray(jit_synthesis(self.fns, self.params, ws[i : i + chunk]))
                for i in range(0, len(ws), chunk)
            ]
        )

    def inverter(self, config: InversionConfig) -> Inverter:
        """The engine for `config` on this generator, started from w̄ with the prior's w spread.
        There are no LPIPS weights here: a space's default LPIPS term is dropped with a notice, as
        experiments.invert does without --vgg."""
        config = pipeline.resolve_lpips(dataclasses.replace(self.base, config=config)).config
        return Inverter(self.fns, self.cfg, config, self.stats.mean_w, self.stats.w_std)


def load_study(
    outdir: pathlib.Path,
    generator: str | None = None,
    prior: str | None = None,
    prior_samples: int = 10000,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> Study:
    """Loads the generator (None: the built-in one) and its prior: `prior`, the cached one, or a
    fresh fit cached beside the generator (in `outdir` for the built-in one), as
    experiments.invert does.

    Raises:
      ValueError, OSError: unreadable generator or prior, or a prior of another generator.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    base = pipeline.RunSpec(
        outdir=outdir,
        config=InversionConfig(),
        generator=generator,
        prior=prior,
        prior_samples=prior_samples,
        seed=seed,
        log=log,
    )
    pipeline.check_spec(base)
    module, gen_dir = pipeline.load_generator(base)
    fns, params = PureGenerator.split(module)
    fingerprint = checkpoints.generator_fingerprint(module)
    gaussian, stats = pipeline.obtain_prior(base, fns, params, module, fingerprint, gen_dir)
    return Study(fns, params, module.cfg, gaussian, stats, base, fingerprint)


def sample_z(num: int, z_dim: int, seed: int) -> np.ndarray:
    """[num, z_dim] float32 z ~ N(0, I), as NVIDIA's generate.py draws them (RandomState(seed))."""
    return np.random.RandomState(seed).randn(num, z_dim).astype(np.float32)
