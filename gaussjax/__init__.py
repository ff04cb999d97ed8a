"""gaussjax: StyleGAN2 inversion in JAX/Flax with a Gaussianized latent prior.

Public API:
  load_generator(path) -> Generator   (NNX module with .mapping, .synthesis, .cfg)
  PureGenerator.split(G) -> (fns, params) for jit / vmap / grad
  GeneratorConfig
"""

from gaussjax.networks.config import GeneratorConfig as GeneratorConfig
from gaussjax.files.checkpoints import load_generator_module as load_generator
from gaussjax.networks.stylegan2 import Generator as Generator
from gaussjax.networks.stylegan2 import PureGenerator as PureGenerator

__version__ = "0.1.0"
