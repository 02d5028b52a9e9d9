"""Evaluate a trained run on the test set: accuracy, loss, per-class accuracy,
confusion matrix, inference throughput; logged into the run's own MLflow run."""

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

from convbench import tracking
from convbench.atomic import read_json, write_json, write_text
from convbench.config import Settings
from convbench.inputs import make_dataset, scaled
from convbench.plots import confusion_matrix_png
from convbench.prepare import load_prepared, prepared_info
from convbench.training import FOREST_MODEL, FOREST_TRUSTED_TYPES, KERAS_MODEL

THROUGHPUT_BATCH = 256


def load_model(model_dir: Path) -> Any:
    if (model_dir / KERAS_MODEL).exists():
        # safe_mode refuses models that would run arbitrary code (lambda layers) on load.
        return keras.saving.load_model(model_dir / KERAS_MODEL, safe_mode=True)
    # skops, not pickle: only the listed types may be rebuilt from the file.
    return skops.io.load(model_dir / FOREST_MODEL, trusted=FOREST_TRUSTED_TYPES)


def predict_proba(model: Any, images: np.ndarray, normalize: bool) -> tuple[np.ndarray, float]:
    """Class probabilities and the inference throughput in images per second."""
    if isinstance(model, keras.Model):
        data = make_dataset(
            images,
            np.zeros(len(images), np.int64),
            THROUGHPUT_BATCH,
            normalize,
            shuffle=False,
            seed=0,
        ).map(lambda x, _: x)
        model.predict(data.take(1), verbose=0)  # warm-up: tracing is not inference
        started = time.perf_counter()
        proba = model.predict(data, verbose=0)
    else:
        flat = scaled(images, normalize).reshape(len(images), -1)
        started = time.perf_counter()
        proba = model.predict_proba(flat)
    seconds = time.perf_counter() - started
    return proba, len(images) / seconds


def evaluate_run(
    settings: Settings,
    key: str,
    prepared_dir: Path,
    model_dir: Path,
    train_dir: Path,
    out_dir: Path,
) -> dict[str, Any]:
    run = settings.run(key)
    classes = prepared_info(prepared_dir)["classes"]
    images, labels = load_prepared(prepared_dir, "test")
    trained = read_json(train_dir / "metrics.json")
    model = load_model(model_dir)

    proba, throughput = predict_proba(model, images, run.normalize)
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

    out_dir.mkdir(parents=True, exist_ok=True)
    per_class_frame = pd.DataFrame(
        {"class": classes, "accuracy": per_class, "support": matrix.sum(axis=1)}
    )
    write_text(out_dir / "per_class.csv", per_class_frame.to_csv(index=False))
    write_text(
        out_dir / "predictions.csv",
        pd.DataFrame(
            {"actual": np.asarray(classes)[labels], "predicted": np.asarray(classes)[predicted]}
        ).to_csv(index=False),
    )
    png = out_dir / "confusion_matrix.png"
    confusion_matrix_png(matrix, classes, f"{key}: test accuracy {accuracy:.4f}", png)
    write_json(
        out_dir / "metrics.json",
        {
            "run": key,
            **metrics,
            "per_class_accuracy": dict(zip(map(str, classes), per_class.tolist(), strict=True)),
        },
    )

    with tracking.start_run(
        settings,
        tracking.experiment_name(run.dataset),
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
