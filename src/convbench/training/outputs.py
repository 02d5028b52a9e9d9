"""What a training writes besides the model: history, learning curves, input preview,
and the time metrics every run reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from convbench.core.atomic import Staging, write_text
from convbench.core.plots import image_grid_png, learning_curves_png
from convbench.settings import Augmentation
from convbench.training.results import TrainResult

PREVIEW = "input_preview.png"
CURVES = "learning_curves.png"


def history_frame(result: TrainResult) -> pd.DataFrame:
    frame = pd.DataFrame(result.history)
    frame.insert(0, "epoch", range(1, len(frame) + 1))
    if result.history:
        frame["epoch_seconds"] = result.epoch_seconds[: len(frame)]
    return frame


def count_params(model: Any) -> int | None:
    return int(model.count_params()) if hasattr(model, "count_params") else None


def trainable_params(model: Any) -> int | None:
    """Parameters training changes (fine-tuning trains a part of the model)."""
    weights = getattr(model, "trainable_weights", None)
    return None if weights is None else int(sum(np.prod(w.shape) for w in weights))


def time_metrics(result: TrainResult, train_images: int) -> dict[str, float]:
    """Training time in total, per epoch and per image seen: comparable across devices."""
    return {
        "training_seconds": result.training_seconds,
        "seconds_per_epoch": result.training_seconds / max(result.epochs_run, 1),
        "seconds_per_image": result.training_seconds / max(result.epochs_run * train_images, 1),
        "epochs_run": result.epochs_run,
        **{f"final_{k}": v for k, v in result.final.items()},
    }


def write_input_preview(
    train_images: np.ndarray, augmentation: Augmentation | None, title: str, path: Path, seed: int
) -> None:
    """What the model trains on: a few training images, and each one augmented 5 times."""
    if augmentation is None:
        image_grid_png(
            [list(train_images[:8])], ["inputs"], f"{title}: inputs (no augmentation)", path
        )
        return
    import tensorflow as tf

    from convbench.inputs.augment import augment_batch

    rows = []
    for index, image in enumerate(train_images[:4]):
        batch = tf.repeat(tf.convert_to_tensor(image)[tf.newaxis], 5, axis=0)
        warped = augment_batch(batch, augmentation, tf.constant([seed, index], tf.int64))
        rows.append([image, *np.clip(warped.numpy(), 0, 255).astype(np.uint8)])
    labels = [f"image {i + 1}" for i in range(len(rows))]
    image_grid_png(rows, labels, f"{title}: original, then 5 augmentations", path)


def stage_history(outputs: Staging, result: TrainResult, title: str, out_dir: Path) -> None:
    """history.csv and, when there are epochs, the learning curves, staged in ``outputs``."""
    history = history_frame(result)
    write_text(outputs.file(out_dir / "history.csv"), history.to_csv(index=False))
    if len(history):
        learning_curves_png(history, title, outputs.file(out_dir / CURVES))
