"""Figures of a run: training losses and validation metric per epoch."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_training_curves(history: list[dict], path: Path | str, metric: str = "recall@20") -> None:
    """Two panels: every loss term per epoch, and the validation ``metric`` (best epoch marked)."""
    if not history:
        return
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = [r["epoch"] for r in history]
    terms = [k for k in history[0] if k not in ("epoch", "train_seconds", "valid")]
    for term in terms:
        ax_loss.plot(epochs, [r.get(term, float("nan")) for r in history], label=term)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="training loss terms")
    ax_loss.legend()
    evals = [(r["epoch"], r["valid"][metric]) for r in history if "valid" in r]
    if evals:
        xs, ys = zip(*evals, strict=True)
        ax_val.plot(xs, ys, marker=".")
        best = max(range(len(ys)), key=ys.__getitem__)
        ax_val.axvline(xs[best], color="grey", linestyle="--", label=f"best epoch {xs[best]}")
        ax_val.legend()
    ax_val.set(xlabel="epoch", ylabel=metric, title=f"validation {metric}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
