"""The report's figures (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from convbench.core.atomic import atomic_path


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


def image_grid_png(rows: list[np.ndarray], row_labels: list[str], title: str, path: Path) -> None:
    """Rows of images (float in [0, 1] or uint8), each row labelled at its left."""
    columns = max(len(row) for row in rows)
    fig, axes = plt.subplots(
        len(rows), columns, figsize=(1.6 * columns, 1.7 * len(rows)), squeeze=False
    )
    for r, (images, label) in enumerate(zip(rows, row_labels, strict=True)):
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                image = np.asarray(images[c])
                image = image if image.dtype == np.uint8 else np.clip(image, 0, 1)
                ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(label, fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def stacked_bar_chart_png(parts: pd.DataFrame, ylabel: str, title: str, path: Path) -> None:
    """One bar per row of ``parts``, its columns stacked (e.g. training + feature extraction)."""
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(parts) + 2), 4))
    bottom = np.zeros(len(parts))
    labels = parts.index.astype(str)
    for column in parts.columns:
        values = parts[column].to_numpy(dtype=float)
        if not values.any():
            continue
        ax.bar(labels, values, bottom=bottom, label=column)
        bottom += values
    for x, total in enumerate(bottom):
        ax.annotate(f"{total:.3g}", (x, total), ha="center", va="bottom", fontsize=8)
    ax.set(ylabel=ylabel, title=title)
    ax.tick_params(axis="x", rotation=30)
    if len(ax.containers) > 1:
        ax.legend(fontsize=8)
    _save(fig, path)
