"""Fitting the scikit-learn random forest on flattened pixels (the decks' baseline)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from convbench.inputs.pipeline import scaled
from convbench.training.results import TrainResult


def fit_forest(
    model: Any,
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    n_estimators: int,
    max_depth: int | None,
    normalize: bool,
    seed: int,
) -> TrainResult:
    model.set_params(n_estimators=n_estimators, max_depth=max_depth, random_state=seed, n_jobs=-1)
    x_train, y_train = data["train"]
    x_val, y_val = data["validation"]
    flat = len(x_train), -1
    started = time.perf_counter()
    model.fit(scaled(x_train, normalize).reshape(flat), y_train)
    seconds = time.perf_counter() - started
    # One "epoch" of history, so forests share the tables and plots of the networks.
    history = {
        "accuracy": [float(model.score(scaled(x_train, normalize).reshape(flat), y_train))],
        "val_accuracy": [
            float(model.score(scaled(x_val, normalize).reshape(len(x_val), -1), y_val))
        ],
    }
    return TrainResult(
        training_seconds=seconds,
        epochs_run=1,
        epoch_seconds=[seconds],
        history=history,
        final={k: v[-1] for k, v in history.items()},
    )
