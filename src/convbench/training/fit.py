"""Fitting a Keras model: optimizer and loss, the per-epoch progress keeper, resuming.

``fit_keras`` is the one fitting loop of every Keras run (images, stored features,
fine-tuning). It knows nothing of MLflow or output files: each finished epoch goes to the
checkpoint, then to ``on_epoch`` (the stage hands in the MLflow logging).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from convbench.core.errors import ConvbenchError
from convbench.training.checkpoints import Checkpoint, EarlyStoppingState, Progress
from convbench.training.results import TrainResult

if TYPE_CHECKING:  # annotations only: the GPU check builds optimizers without pydantic
    from convbench.settings import Training

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
    "adadelta": keras.optimizers.Adadelta,
}


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
    train: Any,
    validation: Any,
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
        # shuffle=False: the input pipeline already reshuffles every epoch.
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
