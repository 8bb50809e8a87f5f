"""Figures of a run: training losses and validation metric per epoch, and heat maps of 2-D sweeps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_training_curves(history: list[dict], path: Path | str, metric: str = "recall@20") -> None:
    """Write :func:`training_curves_figure` to ``path`` (nothing when ``history`` is empty)."""
    if not history:
        return
    fig = training_curves_figure(history, metric)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def training_curves_figure(history: list[dict], metric: str = "recall@20") -> plt.Figure:
    """One panel per loss term (each on its own scale, so a small regulariser is not flattened against the
    main loss) and one of the validation ``metric`` with the best epoch marked; epochs as recorded (from 1)."""
    terms = [k for k in history[0] if k not in ("epoch", "train_seconds", "valid")]
    n_panels = len(terms) + 1
    cols = min(n_panels, 3)
    rows = -(-n_panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 3.0 * rows), squeeze=False)
    flat = list(axes.flat)
    epochs = [r["epoch"] for r in history]
    for ax, term in zip(flat, terms, strict=False):
        ax.plot(epochs, [r.get(term, float("nan")) for r in history], color="tab:blue")
        ax.set(xlabel="epoch", ylabel="loss", title=f"training loss: {term}")
    ax_val = flat[len(terms)]
    evals = [(r["epoch"], r["valid"][metric]) for r in history if "valid" in r]
    if evals:
        xs, ys = zip(*evals, strict=True)
        ax_val.plot(xs, ys, marker=".", color="tab:green")
        best = max(range(len(ys)), key=ys.__getitem__)
        ax_val.axvline(xs[best], color="grey", linestyle="--", label=f"best epoch {xs[best]}")
        ax_val.legend()
    ax_val.set(xlabel="epoch", ylabel=metric, title=f"validation {metric}")
    for ax in flat[:n_panels]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def plot_heatmaps(panels: dict[str, list[list[float]]], row_labels: list[str], col_labels: list[str],
                  path: Path | str, xlabel: str = "", ylabel: str = "") -> None:
    """One annotated heat map per panel (title -> matrix ``[rows][cols]``), side by side (e.g. a 2-D sweep)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, (title, matrix) in zip(axes[0], panels.items(), strict=True):
        image = ax.imshow(matrix, cmap="viridis", origin="lower")
        ax.set_xticks(range(len(col_labels)), col_labels)
        ax.set_yticks(range(len(row_labels)), row_labels)
        low, high = min(map(min, matrix)), max(map(max, matrix))
        for r, row in enumerate(matrix):
            for c, value in enumerate(row):
                bright = high > low and (value - low) / (high - low) > 0.6
                ax.text(c, r, f"{value:.4f}", ha="center", va="center", color="black" if bright else "white",
                        fontsize=8)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
