"""gaussjax: StyleGAN2 inversion in JAX/Flax with a Gaussianized latent prior.

Public API:
  load_generator(path) -> Generator   (NNX module with .mapping, .synthesis, .cfg)
  PureGenerator.split(G) -> (fns, params) for jit / vmap / grad
  GeneratorConfig
  InversionConfig.for_space(space, **overrides), Inverter: the batched inversion engine
  RunSpec, run_inversion(spec): a whole resumable inversion run (what experiments.invert does)
"""

from gaussjax.files.checkpoints import load_generator_module as load_generator
from gaussjax.inversion.config import InversionConfig
from gaussjax.inversion.engine import Inverter
from gaussjax.inversion.pipeline import RunSpec
from gaussjax.inversion.pipeline import run as run_inversion
from gaussjax.networks.config import GeneratorConfig
from gaussjax.networks.stylegan2 import Generator, PureGenerator

__all__ = [
    "Generator",
    "GeneratorConfig",
    "InversionConfig",
    "Inverter",
    "PureGenerator",
    "RunSpec",
    "load_generator",
    "run_inversion",
]
__version__ = "0.1.0"
