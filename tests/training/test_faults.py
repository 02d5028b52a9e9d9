"""Faults during training: a killed process, a diverging loss, a tracking server that goes
away, a full disk. Tiny models on tiny digits, a real MLflow store (and server)."""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import signal
import time
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from convbench.core.atomic import all_or_nothing
from convbench.ops import services
from convbench.reporting.compare import compare
from convbench.settings import Settings, load_settings
from convbench.stages.evaluate import evaluate_run
from convbench.stages.train import train_run
from convbench.tracking import health, training_run
from convbench.tracking import store as tracking
from convbench.training import outputs as training_outputs
from convbench.training.checkpoints import CHECKPOINTS, Checkpoint
from tests.conftest import prepared_tiny_digits
from tests.project import stage, store_env, tiny_project

pytestmark = pytest.mark.timeout(300)


def checkpoint_progress(root: Path, run: str) -> dict | None:
    for path in (root / CHECKPOINTS).glob(f"{run}-*/progress.json"):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):  # being replaced right now
            return None
    return None


def steps(client: MlflowClient, run_id: str, metric: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, metric))


def test_a_killed_training_resumes_after_its_last_completed_epoch(
    ci_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prepared_tiny_digits(tmp_path / "prepared", train=1500, validation=100, test=50)
    settings = tiny_project(ci_settings, tmp_path, "mnist-cnn", epochs=5)
    process = stage(tmp_path, "mnist-cnn", store_env(tmp_path))
    deadline = time.monotonic() + 240
    while (progress := checkpoint_progress(tmp_path, "mnist-cnn")) is None or progress[
        "epochs_done"
    ] < 2:
        assert process.poll() is None, f"the stage ended before the kill:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, "no checkpoint of 2 epochs in time"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    # Killed: nothing that could pass for a result; the epochs so far are checkpointed.
    assert not (tmp_path / "models" / "mnist-cnn").exists()
    assert not (tmp_path / "out" / "mnist-cnn" / "metrics.json").exists()
    progress = checkpoint_progress(tmp_path, "mnist-cnn")
    done, run_id = progress["epochs_done"], progress["mlflow_run_id"]
    assert 2 <= done < 5 and not progress["finished"]
    client = MlflowClient(tracking_uri=settings.env.tracking_uri)
    assert client.get_run(run_id).info.status == "RUNNING"  # nobody could end it

    with caplog.at_level(logging.WARNING, logger="convbench"):
        summary = train_in_process(settings, tmp_path, "mnist-cnn")
    assert f"resuming from its checkpoint ({done}/5 epochs)" in caplog.text
    assert summary["epochs_run"] == 5 and summary["mlflow_run_id"] == run_id

    # The earlier epochs are the killed process's, not trained again.
    history = pd.read_csv(tmp_path / "out" / "mnist-cnn" / "train" / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4, 5]
    assert np.allclose(history["val_loss"][:done], progress["history"]["val_loss"])
    # The optimizer went on counting: every step of the 5 epochs, in one state.
    model = keras.saving.load_model(tmp_path / "models" / "mnist-cnn" / "model.keras")
    assert int(model.optimizer.iterations) == 5 * math.ceil(1500 / 128)

    # One MLflow run, continued: each epoch once, finished, saying it was resumed.
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert steps(client, run_id, "val_accuracy") == [1, 2, 3, 4, 5]
    assert run.data.tags["convbench.resumes"] == "1"
    assert run.data.tags["convbench.resumed_after_epoch"] == str(done)
    assert checkpoint_progress(tmp_path, "mnist-cnn") is None  # removed once done


def abandoned_checkpoint(root: Path, run: str, fingerprint: str, run_id: str) -> Path:
    """What a training killed under other settings leaves: its checkpoint and RUNNING run."""
    folder = root / CHECKPOINTS / f"{run}-{fingerprint[:12]}"
    folder.mkdir(parents=True)
    progress = {"fingerprint": fingerprint, "epochs_done": 2, "mlflow_run_id": run_id}
    (folder / "progress.json").write_text(json.dumps(progress))
    return folder


def test_a_killed_run_of_other_settings_ends_killed_when_the_run_next_finishes(
    ci_settings: Settings, tmp_path: Path
) -> None:
    prepared_tiny_digits(tmp_path / "prepared", train=64, validation=16, test=16)
    settings = tiny_project(ci_settings, tmp_path, "mnist-mlp", epochs=1)
    client = MlflowClient(tracking_uri=settings.env.tracking_uri)
    experiment = client.create_experiment("convbench/mnist")
    killed = client.create_run(experiment, run_name="mnist-mlp").info.run_id
    live = client.create_run(experiment, run_name="mnist-mlp").info.run_id
    gone = abandoned_checkpoint(tmp_path, "mnist-mlp", "a" * 64, killed)
    held = abandoned_checkpoint(tmp_path, "mnist-mlp", "b" * 64, live)
    other_run = abandoned_checkpoint(tmp_path, "mnist-mlp-raw", "c" * 64, live)

    with Checkpoint(held, "b" * 64).held():  # a training at work under those settings
        summary = train_in_process(settings, tmp_path, "mnist-mlp")

    assert client.get_run(summary["mlflow_run_id"]).info.status == "FINISHED"
    run = client.get_run(killed)
    assert run.info.status == "KILLED"
    assert "never resumed" in run.data.tags[tracking.FAILURE_TAG]
    assert "train@mnist-mlp finished under other settings" in run.data.tags[tracking.FAILURE_TAG]
    assert not gone.exists()
    assert held.exists() and client.get_run(live).info.status == "RUNNING"  # in use: kept
    assert other_run.exists()  # another run key's checkpoint is not this run's business


def test_a_diverging_loss_fails_the_stage_and_the_mlflow_run(
    ci_settings: Settings, tmp_path: Path
) -> None:
    prepared_tiny_digits(tmp_path / "prepared", train=256, validation=32, test=32)
    settings = tiny_project(
        ci_settings, tmp_path, "mnist-mlp", epochs=20, optimizer="sgd", learning_rate=1e12
    )
    process = stage(tmp_path, "mnist-mlp", store_env(tmp_path))
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 1, output
    assert re.search(r"loss became (nan|inf|-inf) at epoch 1", output), output
    assert "learning rate 1000000000000.0" in output
    assert "Traceback" not in output  # a known failure: its message, not a stack

    client = MlflowClient(tracking_uri=settings.env.tracking_uri)
    (run,) = client.search_runs(client.get_experiment_by_name("convbench/mnist").experiment_id)
    assert run.info.status == "FAILED"
    reason = run.data.tags[tracking.FAILURE_TAG]
    assert reason.startswith("TrainingDivergedError: ") and "became nan at epoch 1" in reason
    assert client.get_metric_history(run.info.run_id, "loss") == []  # no NaN epoch recorded
    assert not (tmp_path / "models" / "mnist-mlp").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.json"))
    assert checkpoint_progress(tmp_path, "mnist-mlp") is None  # nothing to resume into


def unused_port() -> int:
    return services.free_port()  # bound, then released: nothing listens there


def train_in_process(settings: Settings, root: Path, run: str) -> dict:
    """The train stage's work for ``run``, here: its outputs where the stage puts them."""
    prepared, model, out = root / "prepared", root / "models" / run, root / "out" / run / "train"
    return train_run(settings, run, prepared, model, out, verbose=0)


def train_mlp(settings: Settings, root: Path) -> dict:
    return train_in_process(settings, root, "mnist-mlp")


def test_an_unreachable_tracking_server_stops_the_stage_before_training(
    ci_settings: Settings, tmp_path: Path
) -> None:
    prepared_tiny_digits(tmp_path / "prepared", train=64, validation=16, test=16)
    tiny_project(ci_settings, tmp_path, "mnist-mlp", epochs=1)
    down = f"http://convbench:s3cret@127.0.0.1:{unused_port()}"
    settings = load_settings(tmp_path / "params.yaml", environ=store_env(tmp_path, down))
    started = time.monotonic()
    with pytest.raises(health.TrackingUnavailableError) as info:
        train_mlp(settings, tmp_path)
    assert time.monotonic() - started < 15
    message = str(info.value)
    assert "not reachable" in message and "nothing was run" in message
    assert "CONVBENCH_TRACKING_FALLBACK=local" in message
    assert "s3cret" not in message and "***@127.0.0.1" in message
    assert not (tmp_path / "models").exists() and not (tmp_path / CHECKPOINTS).exists()


def test_evaluation_and_comparison_check_the_server_before_writing(
    ci_settings: Settings, tmp_path: Path
) -> None:
    prepared_tiny_digits(tmp_path / "prepared", train=64, validation=16, test=16)
    settings = tiny_project(ci_settings, tmp_path, "mnist-mlp", epochs=1)
    train_mlp(settings, tmp_path)
    down = store_env(tmp_path, f"http://127.0.0.1:{unused_port()}")
    unreachable = load_settings(tmp_path / "params.yaml", environ=down)
    out = tmp_path / "out" / "mnist-mlp"
    with pytest.raises(health.TrackingUnavailableError):
        evaluate_run(
            unreachable,
            "mnist-mlp",
            tmp_path / "prepared",
            tmp_path / "models" / "mnist-mlp",
            out / "train",
            out / "eval",
        )
    with pytest.raises(health.TrackingUnavailableError):
        compare(unreachable, tmp_path / "out", tmp_path / "compare")
    assert not (out / "eval").exists() and not (tmp_path / "compare").exists()


def test_the_local_fallback_records_the_run_with_a_loud_warning(
    ci_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prepared_tiny_digits(tmp_path / "prepared", train=64, validation=16, test=16)
    tiny_project(ci_settings, tmp_path, "mnist-mlp", epochs=1)
    down = f"http://127.0.0.1:{unused_port()}"
    environ = {**store_env(tmp_path, down), "CONVBENCH_TRACKING_FALLBACK": "local"}
    settings = load_settings(tmp_path / "params.yaml", environ=environ)
    with caplog.at_level(logging.WARNING, logger="convbench"):
        summary = train_mlp(settings, tmp_path)
    assert "recorded in the LOCAL store" in caplog.text
    local = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    run = local.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags[health.FALLBACK_TAG] == down


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """A real MLflow server on 127.0.0.1; ``stop()`` and ``start()`` it at will."""
    stack = services.Stack(root=tmp_path / "server", mlflow_port=services.free_port())
    stack.root.mkdir()

    class Server:
        url = stack.mlflow_url

        def start(self) -> None:
            services.start(services.mlflow_server(stack), stack.state, timeout=120)

        def stop(self) -> None:
            services.stop(stack.state)

    server = Server()
    server.start()
    yield server
    server.stop()
    mlflow.set_tracking_uri(None)


def test_a_tracking_outage_mid_run_loses_no_metrics(
    ci_settings: Settings, tmp_path: Path, mlflow_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared_tiny_digits(tmp_path / "prepared", train=256, validation=32, test=32)
    tiny_project(ci_settings, tmp_path, "mnist-mlp", epochs=3, early_stopping=None)
    settings = load_settings(
        tmp_path / "params.yaml", environ=store_env(tmp_path, mlflow_server.url)
    )
    send = training_run.send_epochs

    def outage_after_epoch_1(progress, *, patient: bool) -> None:
        send(progress, patient=patient)
        if progress.epochs_done == 1 and not patient:
            mlflow_server.stop()  # the server is killed; training goes on

    monkeypatch.setattr(training_run, "send_epochs", outage_after_epoch_1)
    with pytest.raises(health.TrackingUnavailableError, match=r"finished \(3 epochs\)"):
        train_mlp(settings, tmp_path)
    progress = checkpoint_progress(tmp_path, "mnist-mlp")
    assert progress["finished"] and progress["logged_epochs"] == 1
    assert not (tmp_path / "models").exists()

    # The server is back: the rerun trains nothing and sends what is missing.
    monkeypatch.setattr(training_run, "send_epochs", send)
    mlflow_server.start()
    summary = train_mlp(settings, tmp_path)
    client = MlflowClient(tracking_uri=mlflow_server.url)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.run_id == progress["mlflow_run_id"]  # the same run, continued
    assert run.info.status == "FINISHED"
    assert steps(client, run.info.run_id, "val_loss") == [1, 2, 3]
    logged = [m.value for m in client.get_metric_history(run.info.run_id, "val_loss")]
    assert np.allclose(sorted(logged), sorted(progress["history"]["val_loss"]))
    assert run.data.metrics["epochs_run"] == 3
    assert (tmp_path / "models" / "mnist-mlp" / "model.keras").is_file()


def test_a_full_disk_while_writing_leaves_the_previous_outputs(
    ci_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared_tiny_digits(tmp_path / "prepared", train=64, validation=16, test=16)
    settings = tiny_project(ci_settings, tmp_path, "mnist-mlp", epochs=1)
    train_mlp(settings, tmp_path)
    outputs = [tmp_path / "models" / "mnist-mlp", tmp_path / "out" / "mnist-mlp" / "train"]
    before = snapshot(outputs)

    def disk_full(history: pd.DataFrame, title: str, path: Path) -> None:
        path.write_bytes(b"\x89PNG half an image")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(training_outputs, "learning_curves_png", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train_mlp(settings, tmp_path)
    assert snapshot(outputs) == before  # every file as it was, no temporary left
    client = MlflowClient(tracking_uri=settings.env.tracking_uri)
    experiment = client.get_experiment_by_name("convbench/mnist").experiment_id
    failed = [r for r in client.search_runs([experiment]) if r.info.status == "FAILED"]
    assert len(failed) == 1 and "No space left" in failed[0].data.tags[tracking.FAILURE_TAG]


def snapshot(folders: list[Path]) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder.parent)): path.read_bytes()
        for folder in folders
        for path in sorted(folder.parent.rglob("*"))
        if path.is_file()
    }


def test_all_or_nothing_puts_back_what_it_replaced_when_a_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights").write_text("old weights")
    (tmp_path / "metrics.json").write_text("old metrics")
    real_replace, calls = os.replace, []

    def refuse_the_third(src: str | Path, dst: str | Path) -> None:
        calls.append(dst)
        if len(calls) == 3:
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        real_replace(src, dst)

    with pytest.raises(PermissionError), all_or_nothing() as outputs:
        (outputs.folder(tmp_path / "model") / "weights").write_text("new weights")
        outputs.file(tmp_path / "metrics.json").write_text("new metrics")
        monkeypatch.setattr(os, "replace", refuse_the_third)
    monkeypatch.setattr(os, "replace", real_replace)
    assert (tmp_path / "model" / "weights").read_text() == "old weights"
    assert (tmp_path / "metrics.json").read_text() == "old metrics"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "model"]
