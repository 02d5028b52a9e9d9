"""Train one run (a variant on a dataset) and record it: model, history, times, MLflow.

``train_run`` is the one implementation for the runs of ``runs``: the DVC stage, the
Prefect flow (through the stage) and the tests all call it. The transfer-learning runs
(:mod:`convbench.transfer`) fit and record through the same helpers here.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import pandas as pd
import skops.io
import tensorflow as tf
from mlflow.entities import Run
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo

from convbench import tracking
from convbench.atomic import atomic_dir, write_json, write_text
from convbench.augment import augment_batch
from convbench.config import Augmentation, ForestRun, KerasRun, Settings, Training
from convbench.devices import AppliedRuntime, configure_runtime, describe_device
from convbench.inputs import (
    PipelineOptions,
    first_images,
    prepared_dataset,
    prepared_input_shape,
    scaled,
)
from convbench.plots import image_grid_png, learning_curves_png
from convbench.prepare import ARRAYS, load_prepared, prepared_info
from convbench.variants import build_variant

log = logging.getLogger(__name__)

KERAS_MODEL = "model.keras"
FOREST_MODEL = "model.skops"
PREVIEW = "input_preview.png"
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


def ema_momentum_for(training: Training, total_steps: int) -> float | None:
    """The run's weight-average momentum, spanning at most the last quarter of its steps.

    A profile that caps the epochs leaves too few steps for the configured average: it
    would still be mostly the random initial weights.
    """
    if training.ema_momentum is None:
        return None
    return min(training.ema_momentum, 1.0 - 4.0 / max(total_steps, 8))


def make_optimizer(
    training: Training, ema_momentum: float | None = None
) -> keras.optimizers.Optimizer:
    kwargs: dict[str, Any] = {"learning_rate": training.learning_rate}
    if training.optimizer in ("sgd", "rmsprop"):
        kwargs["momentum"] = training.momentum
    if ema_momentum is not None:
        # The average replaces the weights when fit ends; per-epoch validation still
        # sees the raw weights.
        kwargs |= {"use_ema": True, "ema_momentum": ema_momentum}
    return OPTIMIZERS[training.optimizer](**kwargs)


def is_binary(model: keras.Model) -> bool:
    """One sigmoid output: the decks' two-class models."""
    return model.outputs[0].shape[-1] == 1


def compile_model(
    model: keras.Model,
    training: Training,
    ema_momentum: float | None = None,
    jit_compile: bool | str = "auto",
) -> keras.Model:
    """Compile for training; under mixed_float16 Keras wraps the optimizer in loss scaling."""
    loss = "binary_crossentropy" if is_binary(model) else "sparse_categorical_crossentropy"
    optimizer = make_optimizer(training, ema_momentum)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=jit_compile)
    return model


def fit_keras(
    model: keras.Model,
    train: tf.data.Dataset,
    validation: tf.data.Dataset,
    training: Training,
    epochs: int,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    verbose: int = 2,
) -> TrainResult:
    recorder = EpochRecorder(on_epoch)
    callbacks: list[keras.callbacks.Callback] = [recorder]
    if training.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(**training.early_stopping.model_dump()))
    started = time.perf_counter()
    # shuffle=False: the tf.data pipeline already reshuffles every epoch.
    history = model.fit(
        train,
        validation_data=validation,
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


def time_metrics(result: TrainResult, train_images: int) -> dict[str, float]:
    """Training time in total, per epoch and per image seen: comparable across devices."""
    return {
        "training_seconds": result.training_seconds,
        "seconds_per_epoch": result.training_seconds / max(result.epochs_run, 1),
        "seconds_per_image": result.training_seconds / max(result.epochs_run * train_images, 1),
        "epochs_run": result.epochs_run,
        **{f"final_{k}": v for k, v in result.final.items()},
    }


@dataclass(frozen=True)
class RunRecord:
    """What every training run records, whatever it trains on."""

    key: str
    dataset: str
    variant: str
    dataset_sha256: str


@contextmanager
def tracked_run(settings: Settings, record: RunRecord, params: dict[str, Any]) -> Iterator[Run]:
    """The MLflow run of a training: tags that link it to git and DVC, and its params."""
    device = describe_device()
    tags = tracking.base_tags(settings, f"train@{record.key}", record.dataset_sha256)
    tags |= {
        "convbench.dataset": record.dataset,
        "convbench.variant": record.variant,
        "convbench.run": record.key,
        "convbench.runner": settings.env.runner,
        **{f"convbench.{k}": v for k, v in device.items()},
    }
    experiment = tracking.experiment_name(record.dataset)
    with tracking.start_run(settings, experiment, record.key, tags) as active:
        mlflow.log_params(
            tracking.flatten(
                {**params, "seed": settings.params.seed, "profile": settings.params.profile}
            )
        )
        log.info("training %s (%s on %s) on %s", record.key, record.variant, record.dataset, device)
        yield active


def finish_run(
    settings: Settings,
    record: RunRecord,
    active: Run,
    model: Any,
    result: TrainResult,
    train_images: int,
    model_dir: Path,
    out_dir: Path,
    sample: np.ndarray,
    extra: dict[str, float] | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Save the model, log its metrics and artifacts, write metrics.json and history.csv.

    ``extra`` are more metrics (MLflow and metrics.json); ``details`` go to metrics.json only.
    """
    metrics = {**time_metrics(result, train_images), **(extra or {})}
    params = count_params(model)
    if isinstance(model, keras.Model):
        # Fine-tuning trains a part of the model: say how much.
        metrics["trainable_parameters"] = int(
            sum(np.prod(w.shape) for w in model.trainable_weights)
        )
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
    if params is not None:
        mlflow.log_metric("parameters", params)
    save_model(model, model_dir)
    logged = log_model(model, sample)
    history = history_frame(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "history.csv", history.to_csv(index=False))
    if len(history):
        learning_curves_png(history, record.key, out_dir / "learning_curves.png")
        mlflow.log_artifact(str(out_dir / "learning_curves.png"))
    summary = {
        "run": record.key,
        "dataset": record.dataset,
        "variant": record.variant,
        "parameters": params,
        **describe_device(),
        **metrics,
        "profile": settings.params.profile,
        "runner": settings.env.runner,
        "run_fingerprint": settings.run_fingerprint(record.key),
        "train_images": train_images,
        "mlflow_run_id": active.info.run_id,
        "mlflow_experiment_id": active.info.experiment_id,
        "mlflow_model_uri": logged.model_uri,  # what the registry registers
        **(details or {}),
    }
    write_json(out_dir / "metrics.json", summary)
    return summary


def write_input_preview(
    train_images: np.ndarray, augmentation: Augmentation | None, title: str, path: Path, seed: int
) -> None:
    """What the model trains on: a few training images, and each one augmented 5 times."""
    shown = train_images[:4]
    if augmentation is None:
        image_grid_png(
            [list(train_images[:8])], ["inputs"], f"{title}: inputs (no augmentation)", path
        )
    else:
        rows = []
        for index, image in enumerate(shown):
            batch = tf.repeat(tf.convert_to_tensor(image)[tf.newaxis], 5, axis=0)
            warped = augment_batch(batch, augmentation, tf.constant([seed, index], tf.int64))
            rows.append([image, *np.clip(warped.numpy(), 0, 255).astype(np.uint8)])
        labels = [f"image {i + 1}" for i in range(len(rows))]
        image_grid_png(rows, labels, f"{title}: original, then 5 augmentations", path)
    mlflow.log_artifact(str(path))


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
    info = prepared_info(prepared_dir)
    record = RunRecord(key, run.dataset, run.variant, info["sha256"])
    keras.utils.set_random_seed(settings.params.seed)
    if isinstance(run, ForestRun):
        return _train_forest(settings, record, run, prepared_dir, model_dir, out_dir)
    return train_keras_run(settings, record, run, prepared_dir, model_dir, out_dir, verbose=verbose)


Builder = Callable[[tuple[int, int, int], int], keras.Model]


def train_keras_run(
    settings: Settings,
    record: RunRecord,
    run: KerasRun,
    prepared_dir: Path,
    model_dir: Path,
    out_dir: Path,
    *,
    build: Builder | None = None,
    extra_params: dict[str, Any] | None = None,
    extra_metrics: dict[str, float] | None = None,
    verbose: int = 2,
) -> dict[str, Any]:
    """Fit a Keras model on prepared images (or stored features) and record the run.

    ``build(input_shape, classes)`` makes the model; by default the registered variant.
    """
    applied = configure_runtime(settings.params.runtime)  # before any model is built
    seed = settings.params.seed
    size = settings.image_size(run.dataset)
    plain = PipelineOptions(batch_size=run.batch_size, normalize=run.normalize, seed=seed)
    train, train_count = prepared_dataset(
        prepared_dir,
        "train",
        size,
        PipelineOptions(run.batch_size, run.normalize, True, run.augmentation, seed),
    )
    validation, validation_count = prepared_dataset(prepared_dir, "validation", size, plain)
    epochs = settings.effective_epochs(run)
    ema = ema_momentum_for(run, epochs * math.ceil(train_count / run.batch_size))
    build = build or (lambda shape, classes: build_variant(run.variant, shape, classes))
    model = build(prepared_input_shape(prepared_dir, size), _classes(prepared_dir))
    params = {
        **run.model_dump(mode="json"),
        **(extra_params or {}),
        "effective": {"epochs": epochs, "image_size": list(size), "ema_momentum": ema},
        "train_images": train_count,
        "validation_images": validation_count,
    }
    with tracked_run(settings, record, params) as active:
        if model.inputs[0].shape[-1] in (1, 3):  # images, not stored features
            unaugmented, _ = prepared_dataset(
                prepared_dir, "train", size, PipelineOptions(8, normalize=False, cache=False)
            )
            write_input_preview(
                first_images(unaugmented, 8).astype(np.uint8),
                run.augmentation,
                record.key,
                out_dir / PREVIEW,
                seed,
            )
        compile_model(model, run, ema, jit_compile=applied.xla)
        runtime = _log_runtime(applied, model)

        def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
            mlflow.log_metrics(metrics, step=epoch + 1)

        result = fit_keras(model, train, validation, run, epochs, log_epoch, verbose)
        summary = finish_run(
            settings,
            record,
            active,
            model,
            result,
            train_count,
            model_dir,
            out_dir,
            first_images(validation, 8),
            extra={"image_height": size[0], "image_width": size[1], **(extra_metrics or {})},
            details={"effective": {"epochs": epochs, "ema_momentum": ema}, "runtime": runtime},
        )
    return summary


def _log_runtime(applied: AppliedRuntime, model: keras.Model) -> dict[str, Any]:
    """What the run really used (device, GPU model, dtype policy, XLA), as MLflow params."""
    runtime = {**applied.as_params(), "runtime.xla": bool(model.jit_compile)}
    mlflow.log_params(runtime)
    return {key.removeprefix("runtime."): value for key, value in runtime.items()}


def _train_forest(
    settings: Settings,
    record: RunRecord,
    run: ForestRun,
    prepared_dir: Path,
    model_dir: Path,
    out_dir: Path,
) -> dict[str, Any]:
    if prepared_info(prepared_dir).get("format", ARRAYS) != ARRAYS:
        raise ValueError(f"runs.{record.key}: a random forest needs an array dataset")
    data = {split: load_prepared(prepared_dir, split) for split in ("train", "validation")}
    estimators = settings.effective_estimators(run)
    model = build_variant(run.variant, tuple(data["train"][0].shape[1:]), _classes(prepared_dir))
    params = {
        **run.model_dump(mode="json"),
        "effective": {"n_estimators": estimators},
        "train_images": len(data["train"][1]),
        "validation_images": len(data["validation"][1]),
    }
    with tracked_run(settings, record, params) as active:
        write_input_preview(data["train"][0][:8], None, record.key, out_dir / PREVIEW, 0)
        result = fit_forest(model, data, run, estimators, settings.params.seed)
        sample = scaled(data["train"][0][:8], run.normalize)
        summary = finish_run(
            settings,
            record,
            active,
            model,
            result,
            len(data["train"][1]),
            model_dir,
            out_dir,
            sample,
            details={"effective": {"n_estimators": estimators}},
        )
    return summary


def _classes(prepared_dir: Path) -> int:
    return len(prepared_info(prepared_dir)["classes"])


def save_model(model: Any, model_dir: Path) -> None:
    with atomic_dir(model_dir) as tmp:
        if isinstance(model, keras.Model):
            model.save(tmp / KERAS_MODEL)
        else:
            skops.io.dump(model, tmp / FOREST_MODEL)


def log_model(model: Any, sample: np.ndarray) -> ModelInfo:
    """Log the model with a signature inferred from a few real (already scaled) inputs."""
    if isinstance(model, keras.Model):
        signature = infer_signature(sample, model.predict(sample, verbose=0))
        # Explicit requirements: inferring them re-imports the model in a subprocess (slow).
        return mlflow.keras.log_model(
            model,
            name="model",
            signature=signature,
            pip_requirements=[f"keras=={keras.__version__}", f"tensorflow=={tf.__version__}"],
        )
    else:
        import sklearn

        x = sample.reshape(len(sample), -1)
        return mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x, model.predict(x)),
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
            skops_trusted_types=FOREST_TRUSTED_TYPES,
        )
