"""Same params, same seed, same CPU: a rerun of a training gives the same numbers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from convbench.settings import Augmentation, Settings
from convbench.stages.evaluate import evaluate_run
from tests.conftest import prepared_tiny_digits
from tests.project import stage, store_env, tiny_project

pytestmark = pytest.mark.timeout(300)


def test_two_trainings_in_fresh_processes_give_identical_test_metrics(
    ci_settings: Settings, tmp_path: Path
) -> None:
    prepared_tiny_digits(tmp_path / "prepared", train=600, validation=60, test=60)
    # Augmented, shuffled and with dropout: every source of randomness is seeded.
    augmentation = Augmentation(rotation=20, zoom=0.1, width_shift=0.1, horizontal_flip=True)
    settings = tiny_project(ci_settings, tmp_path, "mnist-mlp", epochs=2, augmentation=augmentation)
    results = []
    for attempt in ("first", "second"):
        process = stage(tmp_path, "mnist-mlp", store_env(tmp_path))
        output, _ = process.communicate(timeout=240)
        assert process.returncode == 0, output[-3000:]
        train = tmp_path / attempt / "train"
        (tmp_path / attempt).mkdir()
        (tmp_path / "out" / "mnist-mlp" / "train").rename(train)
        (tmp_path / "models" / "mnist-mlp").rename(tmp_path / attempt / "model")
        history = pd.read_csv(train / "history.csv").drop(columns="epoch_seconds")
        metrics = evaluate_run(
            settings,
            "mnist-mlp",
            tmp_path / "prepared",
            tmp_path / attempt / "model",
            train,
            tmp_path / attempt / "eval",
        )
        metrics.pop("inference_images_per_second")  # a speed, not a result
        results.append((history, metrics))
    (first_history, first), (second_history, second) = results
    assert first_history.equals(second_history)  # every epoch, to the last bit
    assert first == second
    assert first["test_accuracy"] > 0.1  # it learned something: not two constant models
