"""The report's figures (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from convbench.atomic import atomic_path


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def confusion_matrix_png(matrix: np.ndarray, classes: list, title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 5))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set(
        xticks=range(len(classes)),
        yticks=range(len(classes)),
        xticklabels=classes,
        yticklabels=classes,
        xlabel="predicted",
        ylabel="true",
        title=title,
    )
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(
            col,
            row,
            str(value),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if value > threshold else "black",
        )
    _save(fig, path)


def learning_curves_png(history: pd.DataFrame, title: str, path: Path) -> None:
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for column, ax in (("loss", loss_ax), ("accuracy", acc_ax)):
        for prefix, label in (("", "train"), ("val_", "validation")):
            if prefix + column in history:
                ax.plot(history["epoch"], history[prefix + column], marker="o", label=label)
        ax.set(xlabel="epoch", ylabel=column, title=f"{title}: {column}")
        if ax.get_lines():
            ax.legend()
    _save(fig, path)


def bar_chart_png(
    values: pd.Series, ylabel: str, title: str, path: Path, colors: list[str] | None = None
) -> None:
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(values) + 2), 4))
    bars = ax.bar(values.index.astype(str), values.to_numpy(), color=colors)
    ax.bar_label(bars, fmt="%.3g", fontsize=8)
    ax.set(ylabel=ylabel, title=title)
    ax.tick_params(axis="x", rotation=30)
    _save(fig, path)
