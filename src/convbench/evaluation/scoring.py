"""Evaluate a trained run on the test set: accuracy, loss, per-class accuracy,
confusion matrix, inference throughput; logged into the run's own MLflow run.

One implementation for every kind of run: the test split comes from the run's inputs
folder, prepared images (arrays or shards) or, for a head trained on stored features,
those features.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import pandas as pd
import skops.io
from sklearn.metrics import confusion_matrix, log_loss

from convbench.core.atomic import all_or_nothing, read_json, write_json, write_text
from convbench.core.plots import confusion_matrix_png
from convbench.data.prepare import load_prepared, prepared_info
from convbench.inputs.pipeline import PipelineOptions, prepared_dataset, scaled
from convbench.models.saving import load_keras_model
from convbench.settings import RunSpec, Settings
from convbench.tracking import store as tracking
from convbench.training.devices import configure_runtime
from convbench.training.fit import FOREST_MODEL, FOREST_TRUSTED_TYPES, KERAS_MODEL

BATCH = 256


def load_model(model_dir: Path) -> Any:
    if (model_dir / KERAS_MODEL).exists():
        # Safe mode: a model that would run code from the file (a Lambda layer) is refused.
        return load_keras_model(model_dir / KERAS_MODEL)
    # skops, not pickle: only the listed types may be rebuilt from the file.
    return skops.io.load(model_dir / FOREST_MODEL, trusted=FOREST_TRUSTED_TYPES)


def class_probabilities(output: np.ndarray) -> np.ndarray:
    """(N, classes) probabilities; a single sigmoid unit is P(class 1)."""
    output = np.asarray(output, dtype=np.float64)
    if output.ndim == 2 and output.shape[1] == 1:
        return np.hstack([1.0 - output, output])
    # float32 softmax rows sum to 1 only to float32 precision.
    return output / output.sum(axis=1, keepdims=True)


def _normalize(settings: Settings, spec: RunSpec) -> bool:
    """Whether the run's inputs are scaled by 1/255 (stored features already are)."""
    if spec.kind == "features":
        return False
    if spec.kind == "finetune":
        assert spec.transfer is not None
        return settings.transfer(spec.transfer).normalize
    return settings.run(spec.key).normalize


def predict_test(
    model: Any, inputs_dir: Path, size: tuple[int, int], normalize: bool
) -> tuple[np.ndarray, np.ndarray, float]:
    """(class probabilities, true labels, images per second) over the test split."""
    if not isinstance(model, keras.Model):
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
    for images, _ in dataset.take(1):
        model.predict_on_batch(images)  # warm-up: tracing is not inference
    outputs, labels = [], []
    started = time.perf_counter()
    for images, batch_labels in dataset:
        outputs.append(np.asarray(model.predict_on_batch(images)))
        labels.append(np.asarray(batch_labels))
    seconds = time.perf_counter() - started
    return class_probabilities(np.concatenate(outputs)), np.concatenate(labels), count / seconds


def evaluate_run(
    settings: Settings,
    key: str,
    inputs_dir: Path,
    model_dir: Path,
    train_dir: Path,
    out_dir: Path,
) -> dict[str, Any]:
    """Score run ``key``'s model on the test split of ``inputs_dir``; write and log it."""
    settings = tracking.checked_up_front(settings)
    spec = settings.run_spec(key)
    classes = prepared_info(inputs_dir)["classes"]
    trained = read_json(train_dir / "metrics.json")
    # Where to run and GPU memory growth; a loaded model keeps the dtypes it trained with.
    configure_runtime(settings.params.runtime)
    model = load_model(model_dir)

    size = settings.image_size(spec.dataset)
    proba, labels, throughput = predict_test(model, inputs_dir, size, _normalize(settings, spec))
    predicted = proba.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, labels=range(len(classes)))
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    accuracy = float((predicted == labels).mean())
    metrics = {
        "test_accuracy": accuracy,
        "test_error": 1.0 - accuracy,
        "test_loss": float(log_loss(labels, proba, labels=range(len(classes)))),
        "test_images": len(labels),
        "inference_images_per_second": throughput,
    }

    per_class_frame = pd.DataFrame(
        {"class": classes, "accuracy": per_class, "support": matrix.sum(axis=1)}
    )
    predictions = pd.DataFrame(
        {"actual": np.asarray(classes)[labels], "predicted": np.asarray(classes)[predicted]}
    )
    png = out_dir / "confusion_matrix.png"
    # All four replace the previous ones together, or none does.
    with all_or_nothing() as outputs:
        write_text(outputs.file(out_dir / "per_class.csv"), per_class_frame.to_csv(index=False))
        write_text(outputs.file(out_dir / "predictions.csv"), predictions.to_csv(index=False))
        title = f"{key}: test accuracy {accuracy:.4f}"
        confusion_matrix_png(matrix, classes, title, outputs.file(png))
        write_json(
            outputs.file(out_dir / "metrics.json"),
            {
                "run": key,
                **metrics,
                "per_class_accuracy": dict(zip(map(str, classes), per_class.tolist(), strict=True)),
            },
        )

    with tracking.start_run(
        settings,
        tracking.experiment_name(spec.dataset),
        key,
        tags={"dvc_evaluate_stage": settings.env.dvc_stage or f"evaluate@{key}"},
        run_id=trained["mlflow_run_id"],
    ):
        mlflow.log_metrics(metrics)
        mlflow.log_metrics(
            {f"test_accuracy_class_{c}": float(a) for c, a in zip(classes, per_class, strict=True)}
        )
        mlflow.log_artifact(str(png))
        mlflow.log_artifact(str(out_dir / "per_class.csv"))
    return metrics
