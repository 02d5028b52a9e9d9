"""Train one run (a variant on a dataset) and record it: model, history, times, MLflow.

``train_run`` is the one implementation for the runs of ``runs``: the DVC stage, the
Prefect flow (through the stage) and the tests all call it. The transfer-learning runs
(:mod:`convbench.training.transfer`) fit and record through the same helpers here.
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
from mlflow.entities import Metric, Run
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient

from convbench.core.atomic import Staging, all_or_nothing, write_json, write_text
from convbench.core.errors import ConvbenchError
from convbench.core.hashing import fingerprint
from convbench.core.plots import image_grid_png, learning_curves_png
from convbench.core.redact import redact
from convbench.data.prepare import ARRAYS, load_prepared, prepared_info
from convbench.inputs.augment import augment_batch
from convbench.inputs.pipeline import (
    PipelineOptions,
    first_images,
    prepared_dataset,
    prepared_input_shape,
    scaled,
)
from convbench.models import build_variant
from convbench.settings import (
    Augmentation,
    ForestRun,
    KerasRun,
    Settings,
    Training,
)
from convbench.tracking import store as tracking
from convbench.training.checkpoints import Checkpoint, EarlyStoppingState, Progress
from convbench.training.devices import AppliedRuntime, configure_runtime, describe_device

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


class TrainingDivergedError(ConvbenchError, RuntimeError):
    """The loss stopped being a finite number: the run failed, whatever fit returned."""


class ProgressKeeper(keras.callbacks.Callback):
    """Each epoch: record its logs and time, checkpoint, then hand the progress on (MLflow).

    Stops training at the first batch whose loss is not finite (Keras' TerminateOnNaN
    would stop too, but fit then returns as if all were well). Listed after early
    stopping, so it saves its state and, at the end, the weights it restored.
    """

    def __init__(
        self,
        progress: Progress,
        checkpoint: Checkpoint | None = None,
        early: keras.callbacks.EarlyStopping | None = None,
        best_weights: list[np.ndarray] | None = None,
        on_epoch: Callable[[Progress], None] | None = None,
    ) -> None:
        super().__init__()
        self.progress = progress
        self.checkpoint = checkpoint
        self.early = early
        self.best_weights = best_weights
        self.on_epoch = on_epoch
        self.diverged: str | None = None
        self._epoch = 0
        self._started = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.early is not None and self.progress.early_stopping:
            EarlyStoppingState.apply(self.early, self.progress.early_stopping, self.best_weights)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            where = f"epoch {self._epoch + 1}, batch {batch + 1}"
            self.diverged = f"the loss became {float(loss)} at {where}"
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._started
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        bad = next((k for k, v in metrics.items() if not math.isfinite(v)), None)
        if self.diverged or bad:
            self.diverged = self.diverged or f"{bad} became {metrics[bad]} at epoch {epoch + 1}"
            self.model.stop_training = True
            return  # a diverged epoch is neither checkpointed nor recorded
        self.progress.record_epoch(metrics, seconds)
        best = None
        if self.early is not None:
            self.progress.early_stopping = EarlyStoppingState.read(self.early)
            self.progress.stopped_early = bool(self.model.stop_training)
            best = self.early.best_weights
        if self.checkpoint is not None:
            self.checkpoint.save(self.model, self.progress, best)
        if self.on_epoch:
            self.on_epoch(self.progress)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.diverged:
            return
        # The weights are final now (best epoch restored, weight average applied).
        self.progress.finished = True
        if self.checkpoint is not None:
            self.checkpoint.save(self.model, self.progress, None)


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
    on_epoch: Callable[[Progress], None] | None = None,
    verbose: int = 2,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Fit ``model`` (a compiled one); with ``progress`` from ``checkpoint``, from where it was.

    Raises TrainingDivergedError when the loss stops being finite.
    """
    progress = progress or Progress(fingerprint="")
    early = None
    if training.early_stopping:
        early = keras.callbacks.EarlyStopping(**training.early_stopping.model_dump())
    best = checkpoint.restore(model) if checkpoint and progress.epochs_done else None
    keeper = ProgressKeeper(progress, checkpoint, early, best, on_epoch)
    earlier_seconds = sum(progress.epoch_seconds)
    started = time.perf_counter()
    if not progress.finished:
        # Stopped early before the kill: no more epochs, but early stopping's end (the
        # best weights back) and the weight average still apply.
        last = progress.epochs_done if progress.stopped_early else epochs
        # shuffle=False: the tf.data pipeline already reshuffles every epoch.
        model.fit(
            train,
            validation_data=validation,
            epochs=last,
            initial_epoch=progress.epochs_done,
            callbacks=[*([early] if early else []), keeper],
            shuffle=False,
            verbose=verbose,
        )
    seconds = time.perf_counter() - started
    if keeper.diverged:
        raise TrainingDivergedError(
            f"{keeper.diverged} (learning rate {training.learning_rate}, "
            f"{training.optimizer}): training stopped; nothing was saved. Lower the "
            "learning rate (or normalize the inputs) and run it again."
        )
    return TrainResult(
        training_seconds=earlier_seconds + seconds,
        epochs_run=progress.epochs_done,
        epoch_seconds=list(progress.epoch_seconds),
        history={k: list(v) for k, v in progress.history.items()},
        final={k: values[-1] for k, values in progress.history.items()},
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
def tracked_run(
    settings: Settings, record: RunRecord, params: dict[str, Any], progress: Progress | None = None
) -> Iterator[Run]:
    """The MLflow run of a training: tags that link it to git and DVC, and its params.

    A training resumed from a checkpoint continues the MLflow run the killed process
    started (its epoch metrics are already there); if the store no longer has that run,
    a new one is started and tagged with the old run's id.
    """
    device = describe_device()
    tags = tracking.base_tags(settings, f"train@{record.key}", record.dataset_sha256)
    tags |= {
        "convbench.dataset": record.dataset,
        "convbench.variant": record.variant,
        "convbench.run": record.key,
        "convbench.runner": settings.env.runner,
        **{f"convbench.{k}": v for k, v in device.items()},
    }
    resumed = progress is not None and progress.resumes > 0
    if resumed:
        tags |= {
            "convbench.resumes": str(progress.resumes),
            "convbench.resumed_after_epoch": str(progress.epochs_done),
        }
    experiment = tracking.experiment_name(record.dataset)
    run_id = progress.mlflow_run_id if resumed else None
    with tracking.start_run(
        settings, experiment, record.key, tags, run_id=run_id, if_missing="new"
    ) as active:
        if progress is not None:
            if progress.mlflow_run_id != active.info.run_id:
                progress.logged_epochs = 0  # a new run has none of the earlier epochs
            progress.mlflow_run_id = active.info.run_id
        tracking.log_params_kept(
            tracking.flatten(
                {**params, "seed": settings.params.seed, "profile": settings.params.profile}
            )
        )
        log.info("training %s (%s on %s) on %s", record.key, record.variant, record.dataset, device)
        yield active


def send_epochs(progress: Progress, *, patient: bool) -> None:
    """Send the epochs MLflow has not acknowledged, each at its own step and time.

    After each epoch (``patient=False``) a tracking server that is down costs one quick
    health check and a warning: training goes on, the epochs wait in the checkpoint's
    journal. At the end (``patient=True``) they must arrive: a server still down raises
    TrackingUnavailableError, and the checkpoint keeps the finished training for a rerun.
    """
    if progress.logged_epochs >= progress.epochs_done or progress.mlflow_run_id is None:
        return
    uri = mlflow.get_tracking_uri()
    reason = tracking.unreachable_reason(uri)
    if reason is not None:
        shown = redact(uri)
        if patient:
            raise tracking.TrackingUnavailableError(
                f"MLflow tracking server {shown} stopped answering ({reason}): training "
                f"finished ({progress.epochs_done} epochs) and is kept in its checkpoint, "
                f"but epochs {progress.logged_epochs + 1}-{progress.epochs_done}, the model "
                "and the outputs are not recorded. Run the stage again once the server "
                "answers: it resumes after the last epoch and sends them."
            )
        log.warning(
            "MLflow %s not reachable (%s): epoch %d kept in the checkpoint, sent later",
            shown,
            reason,
            progress.epochs_done,
        )
        return
    epochs = range(progress.logged_epochs, progress.epochs_done)
    metrics = [
        Metric(key, value, progress.epoch_timestamps_ms[epoch], epoch + 1)
        for epoch in epochs
        for key, value in progress.epoch_metrics(epoch).items()
    ]
    try:
        # Re-sending an epoch is harmless: MLflow keeps one copy of an identical point.
        MlflowClient().log_batch(progress.mlflow_run_id, metrics=metrics)
    except Exception as error:
        if patient:
            raise
        log.warning("could not send epoch metrics to MLflow (%s); sent later", error)
        return
    progress.logged_epochs = progress.epochs_done


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
    preview: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """Save the model, log its metrics and artifacts, write metrics.json and history.csv.

    ``extra`` are more metrics (MLflow and metrics.json); ``details`` go to metrics.json
    only; ``preview(path)`` draws the input preview. The outputs replace the previous
    ones together, and only once every one of them is written.
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
    logged = log_model(model, sample)
    with all_or_nothing() as outputs:
        _stage_outputs(outputs, record, model, result, model_dir, out_dir, preview)
        summary = _summary(settings, record, active, model, metrics, train_images, logged)
        write_json(outputs.file(out_dir / "metrics.json"), {**summary, **(details or {})})
    for name in ("learning_curves.png", PREVIEW):
        if (out_dir / name).is_file():
            mlflow.log_artifact(str(out_dir / name))
    return {**summary, **(details or {})}


def _stage_outputs(
    outputs: Staging,
    record: RunRecord,
    model: Any,
    result: TrainResult,
    model_dir: Path,
    out_dir: Path,
    preview: Callable[[Path], None] | None,
) -> None:
    save_model(model, outputs.folder(model_dir))
    history = history_frame(result)
    write_text(outputs.file(out_dir / "history.csv"), history.to_csv(index=False))
    if len(history):
        learning_curves_png(history, record.key, outputs.file(out_dir / "learning_curves.png"))
    if preview is not None:
        preview(outputs.file(out_dir / PREVIEW))


def _summary(
    settings: Settings,
    record: RunRecord,
    active: Run,
    model: Any,
    metrics: dict[str, float],
    train_images: int,
    logged: ModelInfo,
) -> dict[str, Any]:
    return {
        "run": record.key,
        "dataset": record.dataset,
        "variant": record.variant,
        "parameters": count_params(model),
        **describe_device(),
        **metrics,
        "profile": settings.params.profile,
        "runner": settings.env.runner,
        "run_fingerprint": settings.run_fingerprint(record.key),
        "train_images": train_images,
        "dataset_sha256": record.dataset_sha256,
        "mlflow_run_id": active.info.run_id,
        "mlflow_experiment_id": active.info.experiment_id,
        "mlflow_model_uri": logged.model_uri,  # what the registry registers
    }


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
    checkpoint = Checkpoint.for_run(
        settings.env.project_root,
        record.key,
        fingerprint([settings.run_fingerprint(record.key), record.dataset_sha256, params]),
    )
    progress = _resume_or_start(checkpoint, record.key, epochs)

    def preview(path: Path) -> None:
        unaugmented, _ = prepared_dataset(
            prepared_dir, "train", size, PipelineOptions(8, normalize=False, cache=False)
        )
        images = first_images(unaugmented, 8).astype(np.uint8)
        write_input_preview(images, run.augmentation, record.key, path, seed)

    with tracked_run(settings, record, params, progress) as active:
        compile_model(model, run, ema, jit_compile=applied.xla)
        runtime = _log_runtime(applied, model)

        def log_epoch(done: Progress) -> None:
            send_epochs(done, patient=False)

        try:
            result = fit_keras(
                model, train, validation, run, epochs, log_epoch, verbose, checkpoint, progress
            )
        except TrainingDivergedError:
            checkpoint.discard()  # resuming would only diverge again
            raise
        send_epochs(progress, patient=True)
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
            # Images, not stored features: show what the model trains on.
            preview=preview if model.inputs[0].shape[-1] in (1, 3) else None,
        )
    checkpoint.discard()
    return summary


def _resume_or_start(checkpoint: Checkpoint, key: str, epochs: int) -> Progress:
    progress = checkpoint.load()
    if progress is None:
        return Progress(fingerprint=checkpoint.fingerprint)
    progress.resumes += 1
    state = "finished" if progress.finished else f"{progress.epochs_done}/{epochs} epochs"
    log.warning("%s: resuming from its checkpoint (%s) in %s", key, state, checkpoint.folder)
    return progress


def _log_runtime(applied: AppliedRuntime, model: keras.Model) -> dict[str, Any]:
    """What the run really used (device, GPU model, dtype policy, XLA), as MLflow params."""
    runtime = {**applied.as_params(), "runtime.xla": bool(model.jit_compile)}
    tracking.log_params_kept(runtime)
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
            preview=lambda path: write_input_preview(
                data["train"][0][:8], None, record.key, path, 0
            ),
        )
    return summary


def _classes(prepared_dir: Path) -> int:
    return len(prepared_info(prepared_dir)["classes"])


def save_model(model: Any, model_dir: Path) -> None:
    """Write the model into ``model_dir`` (a staged folder: see ``finish_run``)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(model, keras.Model):
        model.save(model_dir / KERAS_MODEL)
    else:
        skops.io.dump(model, model_dir / FOREST_MODEL)


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
