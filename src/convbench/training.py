"""Train one run (a variant on a dataset) and record it: model, history, times, MLflow.

``train_run`` is the one implementation: the DVC stage, the Prefect flow (through the
stage) and the tests all call it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import pandas as pd
import skops.io
from mlflow.models import infer_signature

from convbench import tracking
from convbench.atomic import atomic_dir, write_json, write_text
from convbench.config import ForestRun, KerasRun, Settings
from convbench.devices import describe_device
from convbench.inputs import make_dataset, scaled
from convbench.plots import learning_curves_png
from convbench.prepare import load_prepared, prepared_info
from convbench.variants import build_variant

log = logging.getLogger(__name__)

KERAS_MODEL = "model.keras"
FOREST_MODEL = "model.skops"
# The one non-builtin type a fitted forest holds; trusted because we wrote the file.
FOREST_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]
OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
    "adadelta": keras.optimizers.Adadelta,
}


@dataclass
class TrainResult:
    training_seconds: float
    epochs_run: int
    epoch_seconds: list[float] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)


class EpochRecorder(keras.callbacks.Callback):
    """Wall time per epoch, and each epoch's logs handed to ``on_epoch`` (e.g. MLflow)."""

    def __init__(self, on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> None:
        super().__init__()
        self.on_epoch = on_epoch
        self.epoch_seconds: list[float] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._started
        self.epoch_seconds.append(seconds)
        if self.on_epoch:
            metrics = {k: float(v) for k, v in (logs or {}).items()}
            self.on_epoch(epoch, {**metrics, "epoch_seconds": seconds})


def compile_model(model: keras.Model, run: KerasRun) -> keras.Model:
    model.compile(
        optimizer=OPTIMIZERS[run.optimizer](learning_rate=run.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def fit_keras(
    model: keras.Model,
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    run: KerasRun,
    epochs: int,
    seed: int,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    verbose: int = 2,
) -> TrainResult:
    train = make_dataset(*data["train"], run.batch_size, run.normalize, shuffle=True, seed=seed)
    val = make_dataset(*data["validation"], run.batch_size, run.normalize, shuffle=False, seed=seed)
    recorder = EpochRecorder(on_epoch)
    callbacks: list[keras.callbacks.Callback] = [recorder]
    if run.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(**run.early_stopping.model_dump()))
    started = time.perf_counter()
    # shuffle=False: the tf.data pipeline already reshuffles every epoch.
    history = model.fit(
        train,
        validation_data=val,
        epochs=epochs,
        callbacks=callbacks,
        shuffle=False,
        verbose=verbose,
    )
    seconds = time.perf_counter() - started
    hist = {k: [float(v) for v in values] for k, values in history.history.items()}
    return TrainResult(
        training_seconds=seconds,
        epochs_run=len(recorder.epoch_seconds),
        epoch_seconds=recorder.epoch_seconds,
        history=hist,
        final={k: values[-1] for k, values in hist.items()},
    )


def fit_forest(
    model: Any,
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    run: ForestRun,
    n_estimators: int,
    seed: int,
) -> TrainResult:
    model.set_params(
        n_estimators=n_estimators, max_depth=run.max_depth, random_state=seed, n_jobs=-1
    )
    x_train, y_train = data["train"]
    x_val, y_val = data["validation"]
    flat = len(x_train), -1
    started = time.perf_counter()
    model.fit(scaled(x_train, run.normalize).reshape(flat), y_train)
    seconds = time.perf_counter() - started
    # One "epoch" of history, so forests share the tables and plots of the networks.
    history = {
        "accuracy": [float(model.score(scaled(x_train, run.normalize).reshape(flat), y_train))],
        "val_accuracy": [
            float(model.score(scaled(x_val, run.normalize).reshape(len(x_val), -1), y_val))
        ],
    }
    return TrainResult(
        training_seconds=seconds,
        epochs_run=1,
        epoch_seconds=[seconds],
        history=history,
        final={k: v[-1] for k, v in history.items()},
    )


def history_frame(result: TrainResult) -> pd.DataFrame:
    frame = pd.DataFrame(result.history)
    frame.insert(0, "epoch", range(1, len(frame) + 1))
    if result.history:
        frame["epoch_seconds"] = result.epoch_seconds[: len(frame)]
    return frame


def count_params(model: Any) -> int | None:
    return int(model.count_params()) if hasattr(model, "count_params") else None


def train_run(
    settings: Settings,
    key: str,
    prepared_dir: Path,
    model_dir: Path,
    out_dir: Path,
    verbose: int = 2,
) -> dict[str, Any]:
    """Train run ``key`` on its prepared data; write the model, metrics and history."""
    run = settings.run(key)
    seed = settings.params.seed
    info = prepared_info(prepared_dir)
    data = {split: load_prepared(prepared_dir, split) for split in ("train", "validation")}
    input_shape = tuple(data["train"][0].shape[1:])
    keras.utils.set_random_seed(seed)
    model = build_variant(run.variant, input_shape, len(info["classes"]))
    device = describe_device()
    is_keras = isinstance(run, KerasRun)
    effective = (
        {"epochs": settings.effective_epochs(run)}
        if is_keras
        else {"n_estimators": settings.effective_estimators(run)}
    )
    tags = tracking.base_tags(settings, f"train@{key}", info["sha256"])
    tags |= {
        "convbench.dataset": run.dataset,
        "convbench.variant": run.variant,
        "convbench.run": key,
        **{f"convbench.{k}": v for k, v in device.items()},
    }

    with tracking.start_run(settings, tracking.experiment_name(run.dataset), key, tags) as active:
        mlflow.log_params(
            tracking.flatten(
                {
                    **run.model_dump(mode="json"),
                    "effective": effective,
                    "seed": seed,
                    "profile": settings.params.profile,
                    "train_images": len(data["train"][1]),
                    "validation_images": len(data["validation"][1]),
                }
            )
        )
        log.info("training %s (%s on %s) on %s", key, run.variant, run.dataset, device)
        if is_keras:
            compile_model(model, run)

            def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
                mlflow.log_metrics(metrics, step=epoch + 1)

            result = fit_keras(model, data, run, effective["epochs"], seed, log_epoch, verbose)
        else:
            result = fit_forest(model, data, run, effective["n_estimators"], seed)

        metrics = {
            "training_seconds": result.training_seconds,
            "seconds_per_epoch": result.training_seconds / max(result.epochs_run, 1),
            "seconds_per_image": result.training_seconds
            / max(result.epochs_run * len(data["train"][1]), 1),
            "epochs_run": result.epochs_run,
            **{f"final_{k}": v for k, v in result.final.items()},
        }
        params = count_params(model)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        if params is not None:
            mlflow.log_metric("parameters", params)

        _save_model(model, model_dir)
        _log_model(model, data["train"][0][:8], run.normalize)
        history = history_frame(result)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text(out_dir / "history.csv", history.to_csv(index=False))
        if len(history):
            learning_curves_png(history, key, out_dir / "learning_curves.png")
            mlflow.log_artifact(str(out_dir / "learning_curves.png"))
        summary = {
            "run": key,
            "dataset": run.dataset,
            "variant": run.variant,
            "parameters": params,
            **device,
            **metrics,
            "effective": effective,
            "profile": settings.params.profile,
            "run_fingerprint": settings.run_fingerprint(key),
            "train_images": len(data["train"][1]),
            "mlflow_run_id": active.info.run_id,
            "mlflow_experiment_id": active.info.experiment_id,
        }
        write_json(out_dir / "metrics.json", summary)
    return summary


def _save_model(model: Any, model_dir: Path) -> None:
    with atomic_dir(model_dir) as tmp:
        if isinstance(model, keras.Model):
            model.save(tmp / KERAS_MODEL)
        else:
            skops.io.dump(model, tmp / FOREST_MODEL)


def _log_model(model: Any, sample: np.ndarray, normalize: bool) -> None:
    """Log the model with an input/output signature inferred from a few real images."""
    if isinstance(model, keras.Model):
        x = scaled(sample, normalize)
        signature = infer_signature(x, model.predict(x, verbose=0))
        # Explicit requirements: inferring them re-imports the model in a subprocess (slow).
        mlflow.keras.log_model(
            model,
            name="model",
            signature=signature,
            pip_requirements=[f"keras=={keras.__version__}", _tensorflow_requirement()],
        )
    else:
        import sklearn

        x = scaled(sample, normalize).reshape(len(sample), -1)
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x, model.predict(x)),
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
            skops_trusted_types=FOREST_TRUSTED_TYPES,
        )


def _tensorflow_requirement() -> str:
    import tensorflow as tf

    return f"tensorflow=={tf.__version__}"
