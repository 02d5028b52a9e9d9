"""train → evaluate → compare on tiny data, into a real (temporary) MLflow store."""

import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from convbench.core.hashing import fingerprint
from convbench.models.saving import load_model
from convbench.reporting.compare import compare, gather
from convbench.settings import Settings
from convbench.stages.evaluate import evaluate_run
from convbench.stages.train import train_run
from tests.conftest import prepared_tiny_digits

RUNS = ("mnist-cnn", "mnist-random_forest")


@pytest.fixture
def workspace(ci_settings: Settings, tmp_path: Path) -> tuple[Settings, Path]:
    prepared_tiny_digits(tmp_path / "prepared", train=120, validation=40, test=50)
    return ci_settings, tmp_path


def test_train_evaluate_compare(workspace: tuple[Settings, Path]) -> None:
    settings, root = workspace
    prepared, runs = root / "prepared", root / "results" / "runs"
    for key in RUNS:
        summary = train_run(
            settings, key, prepared, root / "models" / key, runs / key / "train", verbose=0
        )
        assert summary["epochs_run"] == 1 and summary["training_seconds"] > 0
        assert summary["device"] == "CPU"
        metrics = evaluate_run(
            settings,
            key,
            prepared,
            root / "models" / key,
            runs / key / "train",
            runs / key / "eval",
        )
        assert 0 <= metrics["test_accuracy"] <= 1
        assert metrics["inference_images_per_second"] > 0
        assert (runs / key / "eval" / "confusion_matrix.png").stat().st_size > 0
        assert load_model(root / "models" / key) is not None

    history = pd.read_csv(runs / "mnist-cnn" / "train" / "history.csv")
    assert list(history["epoch"]) == [1]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"} <= set(history)
    assert train_summary(runs, "mnist-cnn")["parameters"] == 1_199_882

    frame = compare(settings, runs, root / "compare")
    status = frame.set_index("run")["status"].to_dict()
    assert status["mnist-cnn"] == "ok" and status["mnist-random_forest"] == "ok"
    assert status["mnist-mlp"] == "not run"  # configured but absent: shown, not dropped
    for name in ("comparison.csv", "comparison.md", "test_error.png", "training_time.png"):
        assert (root / "compare" / name).stat().st_size > 0
    assert "not run" in (root / "compare" / "comparison.md").read_text()

    # Results trained under other params are shown as stale, never as current.
    changed_run = settings.params.runs["mnist-cnn"].model_copy(update={"epochs": 7})
    changed = settings.model_copy(
        update={
            "params": settings.params.model_copy(
                update={"runs": {**settings.params.runs, "mnist-cnn": changed_run}}
            )
        }
    )
    assert gather(changed, runs).set_index("run").loc["mnist-cnn", "status"] == "stale"

    client = MlflowClient(settings.env.tracking_uri)
    run = client.get_run(train_summary(runs, "mnist-cnn")["mlflow_run_id"])
    assert run.data.params["variant"] == "cnn" and run.data.params["effective.epochs"] == "1"
    assert {"test_accuracy", "training_seconds", "parameters", "val_accuracy"} <= set(
        run.data.metrics
    )
    for tag in (
        "git_commit",
        "dataset_sha256",
        "dvc_stage",
        "convbench.params_sha256",
        "convbench.profile",
        "convbench.device_name",
    ):
        assert run.data.tags.get(tag), tag
    assert run.data.tags["convbench.profile"] == "ci"
    epochs = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in epochs] == [1]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"confusion_matrix.png", "learning_curves.png"} <= artifacts
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert any(m.source_run_id == run.info.run_id for m in models)
    signature = mlflow.models.get_model_info(models[0].model_uri).signature
    assert signature is not None and signature.inputs is not None

    comparison = client.search_runs(
        [client.get_experiment_by_name("convbench/comparison").experiment_id]
    )
    assert comparison and comparison[0].data.tags["convbench.kind"] == "comparison"
    sha = train_summary(runs, "mnist-cnn")["dataset_sha256"]
    assert comparison[0].data.tags["dataset_sha256.mnist"] == sha

    # Every run, whatever made it, says which code, data, params and stage it came from.
    everything = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(everything) == 3
    for tracked in everything:
        tags = tracked.data.tags
        assert re.fullmatch(r"[0-9a-f]{40}|unknown", tags["git_commit"]), tags
        assert re.fullmatch(r"[0-9a-f]{64}", tags["dataset_sha256"]), tags
        assert tags["convbench.params_sha256"] == fingerprint(
            settings.params.model_dump(mode="json")
        )
        assert tags["dvc_stage"] in ("train@mnist-cnn", "train@mnist-random_forest", "compare")


def train_summary(runs: Path, key: str) -> dict:
    import json

    return json.loads((runs / key / "train" / "metrics.json").read_text())


def test_ema_weights_replace_the_last_ones_when_fit_ends() -> None:
    import keras

    from convbench.settings import Training
    from convbench.training.fit import ema_momentum_for, make_optimizer

    assert not make_optimizer(Training(epochs=1, batch_size=8)).use_ema
    configured = Training(epochs=50, batch_size=32, ema_momentum=0.998)
    assert ema_momentum_for(configured, 50 * 63) == 0.998  # the full run: as configured
    assert ema_momentum_for(configured, 2 * 63) < 0.97  # 2 capped epochs: a shorter span
    assert ema_momentum_for(Training(epochs=2, batch_size=32), 126) is None
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    weights = {}
    for ema in (None, 0.9):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, "sigmoid")])
        training = Training(epochs=1, batch_size=8, optimizer="sgd", ema_momentum=ema)
        model.compile(make_optimizer(training, ema), "binary_crossentropy")
        model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
        weights[ema] = model.get_weights()[0]
    assert not np.allclose(weights[None], weights[0.9])  # the average, not the last step
