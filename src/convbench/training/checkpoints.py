"""Resume a killed training from its last completed epoch.

After every epoch the model's weights with the optimizer's state (step count, moments,
weight average), and the run's progress (the epochs' logs and times, the early-stopping
state, the MLflow run), replace the previous checkpoint in one rename. A rerun with the
same settings and data loads it and trains the remaining epochs only; a successful run
removes it. The folder is outside every DVC output: ``dvc repro`` deletes a stage's
outputs before it runs the stage again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convbench.core.atomic import atomic_dir, lock_held, write_json

if TYPE_CHECKING:  # at import, Keras would bring its backend (TensorFlow: 5 s) along
    import keras

log = logging.getLogger(__name__)

CHECKPOINTS = Path(".convbench") / "checkpoints"
WEIGHTS = "state.weights.h5"  # Keras' weights file: layers and the optimizer's variables
BEST_WEIGHTS = "best_weights.npz"  # early stopping's best epoch, to restore at the end
PROGRESS = "progress.json"


@dataclass
class Progress:
    """How far a run got; ``history`` doubles as the journal of its epoch metrics."""

    fingerprint: str
    epochs_done: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_timestamps_ms: list[int] = field(default_factory=list)  # MLflow's metric times
    finished: bool = False  # fit returned: the saved weights are the final ones
    stopped_early: bool = False
    early_stopping: dict[str, Any] | None = None
    mlflow_run_id: str | None = None
    logged_epochs: int = 0  # epochs MLflow has acknowledged (re-sending is idempotent)
    resumes: int = 0

    def record_epoch(self, logs: dict[str, float], seconds: float) -> None:
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        self.epoch_seconds.append(seconds)
        self.epoch_timestamps_ms.append(int(time.time() * 1000))
        self.epochs_done += 1

    def epoch_metrics(self, epoch: int) -> dict[str, float]:
        """The logs of epoch ``epoch`` (0-based) with its wall time, as MLflow records them."""
        metrics = {key: values[epoch] for key, values in self.history.items()}
        return {**metrics, "epoch_seconds": self.epoch_seconds[epoch]}


class Checkpoint:
    """The checkpoint folder of one run under one set of settings (``fingerprint``)."""

    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.folder = folder
        self.fingerprint = fingerprint

    @classmethod
    def for_run(cls, project_root: Path, run_key: str, fingerprint: str) -> Checkpoint:
        # One folder per settings: queued experiments of one run never share a checkpoint.
        return cls(project_root / CHECKPOINTS / f"{run_key}-{fingerprint[:12]}", fingerprint)

    def _read(self) -> Progress:
        return Progress(**json.loads((self.folder / PROGRESS).read_text()))

    def load_any(self) -> Progress | None:
        """The saved progress whatever settings it was made under (None if unreadable)."""
        try:
            return self._read()
        except (OSError, ValueError, TypeError):
            return None

    def load(self) -> Progress | None:
        """The saved progress, or None when there is none (or it is unreadable)."""
        path = self.folder / PROGRESS
        if not path.is_file():
            return None
        try:
            progress = self._read()
        except (ValueError, TypeError) as error:
            log.warning("%s: unreadable checkpoint, starting afresh (%s)", self.folder, error)
            return None
        if progress.fingerprint != self.fingerprint:
            log.warning("%s: checkpoint of other settings, starting afresh", self.folder)
            return None
        return progress

    def save(
        self, model: keras.Model, progress: Progress, best_weights: list[np.ndarray] | None
    ) -> None:
        """Replace the checkpoint in one rename: a kill while saving leaves the previous one."""
        with atomic_dir(self.folder) as tmp:
            model.save_weights(tmp / WEIGHTS)
            if best_weights is not None:
                np.savez(tmp / BEST_WEIGHTS, *best_weights)
            write_json(tmp / PROGRESS, asdict(progress))

    def restore(self, model: keras.Model) -> list[np.ndarray] | None:
        """Load the weights and optimizer state into ``model``; return early stopping's best."""
        # Unbuilt optimizer variables would be skipped (with only a warning): build them first.
        model.optimizer.build(model.trainable_variables)
        model.load_weights(self.folder / WEIGHTS)
        best = self.folder / BEST_WEIGHTS
        if not best.is_file():
            return None
        with np.load(best) as saved:
            return [saved[f"arr_{i}"] for i in range(len(saved.files))]

    def discard(self) -> None:
        remove_checkpoint(self.folder)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Mark the checkpoint as in use while training: a sweep leaves a held one alone.

        The operating system drops the lock when the process dies, so a killed
        training's checkpoint is never mistaken for a live one.
        """
        lock = _lock_path(self.folder)
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _lock_path(folder: Path) -> Path:
    return folder.with_name(f"{folder.name}.lock")


def in_use(folder: Path) -> bool:
    """Whether a live training holds the checkpoint ``folder``."""
    return lock_held(_lock_path(folder))


def checkpoints_of(project_root: Path, run_key: str) -> list[Path]:
    """Every checkpoint folder of run ``run_key``, whatever settings it was made under."""
    folder = project_root / CHECKPOINTS
    if not folder.is_dir():
        return []
    name = re.compile(rf"{re.escape(run_key)}-[0-9a-f]{{12}}")
    return sorted(p for p in folder.iterdir() if p.is_dir() and name.fullmatch(p.name))


def remove_checkpoint(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    _lock_path(folder).unlink(missing_ok=True)


class EarlyStoppingState:
    """What ``keras.callbacks.EarlyStopping`` must carry over a restart to stop as if none."""

    FIELDS = ("wait", "best", "best_epoch", "stopped_epoch")

    @classmethod
    def read(cls, callback: keras.callbacks.EarlyStopping) -> dict[str, Any]:
        state = {name: getattr(callback, name, None) for name in cls.FIELDS}
        return {k: float(v) if isinstance(v, np.floating) else v for k, v in state.items()}

    @classmethod
    def apply(
        cls,
        callback: keras.callbacks.EarlyStopping,
        state: dict[str, Any],
        best_weights: list[np.ndarray] | None,
    ) -> None:
        for name in cls.FIELDS:
            if state.get(name) is not None:
                setattr(callback, name, state[name])
        callback.best_weights = best_weights
