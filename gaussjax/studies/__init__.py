"""Building blocks of the paper's experiments (experiments.latent_stats, reconstruction, interpolation,
artifacts, prior_sweep): a generator with its prior, traced inversions, image and path metrics."""
