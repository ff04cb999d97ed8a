"""PNG plots for the reports. matplotlib is optional (`pip install -e '.[plots]'`): it is imported
inside each function, so importing gaussjax never needs it."""

import io
import pathlib

import numpy as np

from gaussjax.files.safe_io import write_bytes_atomic

INSTALL_HINT = "plots need matplotlib: pip install -e '.[plots]' (or pip install matplotlib)"


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or ImportError with the install hint."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return plt


def save_figure(fig, path: pathlib.Path) -> None:
    """Writes a figure as PNG atomically and closes it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    pyplot().close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def line_plot(path, series: dict, *, xlabel: str, ylabel: str, logy=False, logx=False, dashed=()):
    """One line per entry {label: (x [T], y [T])}; labels in `dashed` are drawn dashed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (x, y) in series.items():
        ax.plot(x, y, "--" if label in dashed else "-", label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    if len(series) > 1:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def histograms(path, samples: dict, dims, *, bins: int = 60):
    """A row of marginal histograms per entry {name: [N, D] samples}, for the chosen dimensions,
    every panel centred at 0 with the same range (as in the paper's Fig. 1)."""
    plt = pyplot()
    fig, axes = plt.subplots(len(samples), len(dims), figsize=(2.2 * len(dims), 2 * len(samples)))
    axes = np.atleast_2d(axes)
    for row, (name, x) in enumerate(samples.items()):
        centred = x[:, dims] - np.median(x[:, dims], axis=0)
        limit = np.percentile(np.abs(centred), 99.5)
        for col, d in enumerate(dims):
            axes[row, col].hist(centred[:, col], bins=bins, range=(-limit, limit), color=f"C{row}")
            axes[row, col].set_title(f"{name}[{d}]", fontsize=8)
            axes[row, col].set_yticks([])
    save_figure(fig, path)


def scatter_pairs(path, samples: dict, pairs, *, max_points: int = 3000):
    """Pairwise scatter plots per entry {name: [N, D]}: one row per entry, one panel per pair."""
    plt = pyplot()
    fig, axes = plt.subplots(
        len(samples), len(pairs), figsize=(2.4 * len(pairs), 2.4 * len(samples))
    )
    axes = np.atleast_2d(axes)
    for row, (name, x) in enumerate(samples.items()):
        x = x[:max_points]
        for col, (a, b) in enumerate(pairs):
            axes[row, col].scatter(x[:, a], x[:, b], s=1, alpha=0.3, color=f"C{row}")
            axes[row, col].set_title(f"{name}[{a}] vs {name}[{b}]", fontsize=8)
    save_figure(fig, path)


def profile_plot(path, profiles: dict, band: np.ndarray | None = None, *, xlabel: str, ylabel: str):
    """Lines {label: y [K]} over component index, with an optional shaded ±band [K] around 0."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    k = np.arange(len(next(iter(profiles.values()))))
    if band is not None:
        ax.fill_between(k, -band, band, color="grey", alpha=0.2, label="±1 std (all samples)")
    for label, y in profiles.items():
        ax.plot(k, y, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, path)
