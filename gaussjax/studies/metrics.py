"""Image-set and path metrics of the paper's experiments. Images are float [N, H, W, C] in [-1, 1];
distances are RMS over pixels and channels, in those units."""

import numpy as np
from scipy import stats as scipy_stats


def per_pixel_std(images: np.ndarray) -> float:
    """Diversity: the std across samples of each pixel, averaged over pixels (paper Fig. 4)."""
    return float(np.mean(np.std(np.asarray(images, np.float64), axis=0)))


def mean_pairwise_distance(images: np.ndarray) -> float:
    """Diversity: the distance between two different samples, as the root of the mean over all
    pairs of the per-pixel mean squared difference.

    Uses Σ_{i<j} ||x_i − x_j||² = N Σ ||x_i − x̄||², so it is O(N) whatever N is.
    """
    x = np.asarray(images, np.float64).reshape(len(images), -1)
    n = len(x)
    if n < 2:
        raise ValueError("need at least 2 images for a pairwise distance")
    squared = n * np.sum(np.square(x - x.mean(axis=0)))  # Σ over pairs i<j of ||x_i − x_j||²
    return float(np.sqrt(squared / (n * (n - 1) / 2) / x.shape[1]))


def rms_change(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """[N] RMS difference of each image from its reference (identity preservation)."""
    diff = np.asarray(images, np.float64) - np.asarray(reference, np.float64)
    return np.sqrt(np.mean(np.square(diff).reshape(len(diff), -1), axis=1))


def path_steps(frames: np.ndarray) -> np.ndarray:
    """[K − 1] RMS difference between consecutive frames [K, H, W, C] of an interpolation."""
    return rms_change(frames[1:], frames[:-1])


def normality(samples: np.ndarray) -> dict:
    """Per-dimension skewness, excess kurtosis and D'Agostino-Pearson K² p-value of [N, D] samples
    (N >= 20). All three are 0, 0 and uniform on [0, 1] for Gaussian data.

    Returns:
      {"skewness": [D], "excess_kurtosis": [D], "normaltest_p": [D]}.
    """
    x = np.asarray(samples, np.float64)
    if x.ndim != 2 or len(x) < 20:
        raise ValueError(f"need [N >= 20, D] samples for a normality test, got {x.shape}")
    return {
        "skewness": scipy_stats.skew(x, axis=0),
        "excess_kurtosis": scipy_stats.kurtosis(x, axis=0),
        "normaltest_p": scipy_stats.normaltest(x, axis=0).pvalue,
    }


def normality_summary(result: dict, alpha: float = 0.01) -> dict:
    """Scalars of `normality`: median |skewness|, median and 90th percentile |excess kurtosis|, and
    the fraction of dimensions where normality is rejected at level `alpha`."""
    return {
        "median_abs_skewness": float(np.median(np.abs(result["skewness"]))),
        "median_abs_excess_kurtosis": float(np.median(np.abs(result["excess_kurtosis"]))),
        "p90_abs_excess_kurtosis": float(np.percentile(np.abs(result["excess_kurtosis"]), 90)),
        "fraction_rejected": float(np.mean(result["normaltest_p"] < alpha)),
    }
