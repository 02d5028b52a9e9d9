"""Scoring a trained model on a test split: class probabilities, accuracy, loss, the
confusion matrix, per-class accuracy and inference throughput.

One implementation for every kind of run: the split comes from a prepared inputs folder,
images (arrays or shards) or, for a head trained on stored features, those features.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, log_loss

from convbench.data.prepare import load_prepared
from convbench.inputs.pipeline import PipelineOptions, prepared_dataset, scaled
from convbench.models.saving import is_keras

BATCH = 256


def class_probabilities(output: np.ndarray) -> np.ndarray:
    """(N, classes) probabilities; a single sigmoid unit is P(class 1)."""
    output = np.asarray(output, dtype=np.float64)
    if output.ndim == 2 and output.shape[1] == 1:
        return np.hstack([1.0 - output, output])
    # float32 softmax rows sum to 1 only to float32 precision.
    return output / output.sum(axis=1, keepdims=True)


def predict_test(
    model: Any, inputs_dir: Path, size: tuple[int, int], normalize: bool
) -> tuple[np.ndarray, np.ndarray, float]:
    """(class probabilities, true labels, images per second) over the test split."""
    if not is_keras(model):
        images, labels = load_prepared(inputs_dir, "test")
        flat = scaled(images, normalize).reshape(len(images), -1)
        started = time.perf_counter()
        proba = model.predict_proba(flat)
        return proba, labels, len(labels) / (time.perf_counter() - started)
    dataset, count = prepared_dataset(
        inputs_dir,
        "test",
        size,
        PipelineOptions(batch_size=BATCH, normalize=normalize, cache=False),
    )
    for images, _ in dataset:
        model.predict_on_batch(images)  # warm-up: tracing is not inference
        break
    outputs, labels = [], []
    started = time.perf_counter()
    for images, batch_labels in dataset:
        outputs.append(np.asarray(model.predict_on_batch(images)))
        labels.append(np.asarray(batch_labels))
    seconds = time.perf_counter() - started
    return class_probabilities(np.concatenate(outputs)), np.concatenate(labels), count / seconds


@dataclass(frozen=True)
class Score:
    """A model's results on a test split."""

    metrics: dict[str, float]
    matrix: np.ndarray  # confusion matrix, rows the true classes
    per_class: np.ndarray  # accuracy of each class
    labels: np.ndarray
    predicted: np.ndarray


def score(
    model: Any, inputs_dir: Path, size: tuple[int, int], normalize: bool, n_classes: int
) -> Score:
    proba, labels, throughput = predict_test(model, inputs_dir, size, normalize)
    predicted = proba.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, labels=range(n_classes))
    accuracy = float((predicted == labels).mean())
    metrics = {
        "test_accuracy": accuracy,
        "test_error": 1.0 - accuracy,
        "test_loss": float(log_loss(labels, proba, labels=range(n_classes))),
        "test_images": len(labels),
        "inference_images_per_second": throughput,
    }
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    return Score(metrics, matrix, per_class, labels, predicted)
