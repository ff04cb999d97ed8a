"""Latent-space statistics: Gaussianization and the Gaussian prior fitted on mapped latents."""
