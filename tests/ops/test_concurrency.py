"""Concurrency: one `make run` per checkout, and many runs writing to one MLflow store."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from convbench.ops import runlock
from tests.conftest import ROOT

WRITERS = 4
STEPS = 15  # bursts of metrics per run, as epochs are


def write_run(folder: str, index: str) -> None:
    """One 'training run' logging into ``folder``'s store, started when ``go`` appears."""
    import mlflow

    from convbench.settings import Environment
    from convbench.tracking import store as tracking

    root = Path(folder)
    env = Environment(project_root=root, tracking_uri=f"sqlite:///{root}/mlflow.db")
    (root / f"ready-{index}").touch()
    while not (root / "go").exists():  # all at once: the store's creation races too
        time.sleep(0.01)
    tracking.configure(env)
    experiment = tracking.ensure_experiment("convbench/concurrency", env)
    with mlflow.start_run(experiment_id=experiment, run_name=f"writer-{index}"):
        mlflow.set_tags({f"tag{i}": str(i) for i in range(10)})
        mlflow.log_params({f"param{i}": i for i in range(20)})
        for step in range(STEPS):
            metrics = {"loss": 1 / (step + 1), **{f"metric{i}": step * i for i in range(5)}}
            mlflow.log_metrics(metrics, step=step)


def _writers(folder: Path, count: int) -> list[subprocess.Popen[str]]:
    code = "import sys; from tests.ops.test_concurrency import write_run; write_run(*sys.argv[1:])"
    return [
        subprocess.Popen(
            [sys.executable, "-c", code, str(folder), str(i)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(count)
    ]


def test_runs_writing_to_one_new_store_at_once_all_land(tmp_path: Path) -> None:
    writers = _writers(tmp_path, WRITERS)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < WRITERS and time.monotonic() < deadline:
        time.sleep(0.05)
    (tmp_path / "go").touch()
    outputs = [w.communicate(timeout=120)[0] for w in writers]
    failed = [out[-2000:] for w, out in zip(writers, outputs, strict=True) if w.returncode]
    assert not failed, "\n---\n".join(failed)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("convbench/concurrency")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == WRITERS
    for run in runs:
        assert len(run.data.params) == 20 and len(run.data.tags) >= 10
        assert len(client.get_metric_history(run.info.run_id, "loss")) == STEPS


def _holder(root: Path, profile: str = "full") -> subprocess.Popen[str]:
    """Another process holding ``root``'s run lock until its stdin closes."""
    code = (
        "import sys; from pathlib import Path; from convbench.ops import runlock\n"
        "with runlock.hold(Path(sys.argv[1]), sys.argv[2], command='make run'):\n"
        "    print('held', flush=True); sys.stdin.read()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(root), profile],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "held\n"
    return process


@pytest.fixture
def flow_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """`main` with the Prefect flow replaced by a recorder (the lock is the subject here)."""
    import flows.experiment

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(flows.experiment, "experiment", lambda **kwargs: calls.append(kwargs))
    # The no-op check before Prefect reads the project: these checkouts have none.
    monkeypatch.setattr(flows.experiment, "nothing_changed", lambda *args: None)
    return calls


def _main(*args: str) -> tuple[int, str]:
    import typer

    from flows.experiment import main

    app = typer.Typer()
    app.command()(main)
    result = CliRunner().invoke(app, ["--profile", "ci", *args])
    return result.exit_code, result.output


def test_a_second_run_stops_at_once_saying_who_holds_the_checkout(
    tmp_path: Path, flow_calls: list[dict[str, object]]
) -> None:
    holder = _holder(tmp_path)
    try:
        started = time.monotonic()
        code, output = _main("--project-dir", str(tmp_path))
        assert time.monotonic() - started < 5
    finally:
        holder.communicate("")
    assert code == runlock.EXIT_BUSY and not flow_calls  # Prefect never started
    lock = runlock.lock_path(tmp_path)
    assert str(lock) in output
    assert f"pid {holder.pid} on " in output and "profile full: make run" in output
    assert "make run WAIT=1" in output
    # Released: the next run goes ahead, and leaves no note of itself behind.
    assert _main("--project-dir", str(tmp_path))[0] == 0 and len(flow_calls) == 1
    assert not runlock.holder_path(lock).exists()


def test_with_wait_a_second_run_waits_for_the_first(
    tmp_path: Path, flow_calls: list[dict[str, object]], caplog: pytest.LogCaptureFixture
) -> None:
    holder = _holder(tmp_path)
    threading.Timer(1.0, holder.communicate, [""]).start()  # the first run ends in 1 s
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="convbench.ops.runlock"):
        code, output = _main("--project-dir", str(tmp_path), "--wait")
    assert code == 0, output
    assert time.monotonic() - started >= 0.9 and len(flow_calls) == 1  # after the first
    assert "waiting for" in caplog.text and f"pid {holder.pid}" in caplog.text
    holder.wait(timeout=10)


def test_a_killed_run_leaves_no_stale_lock(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert runlock.read_holder(runlock.lock_path(tmp_path)) is None  # its note is ignored
    with runlock.hold(tmp_path, "ci") as me, runlock.hold(tmp_path, "ci") as again:
        assert me == again and me.pid == os.getpid()  # re-entrant: main, then the flow


def _locked(root: Path, *command: str) -> tuple[int, str]:
    """`python -m convbench.ops.runlock -- COMMAND` (what `make repro` runs), in-process."""
    result = CliRunner().invoke(runlock.app, ["--project-dir", str(root), "--", *command])
    return result.exit_code, result.output


def test_make_repro_takes_the_same_lock_as_make_run(tmp_path: Path) -> None:
    # The command checks that the lock is held while it runs, then exits with its own status.
    probe = (
        "import sys; from pathlib import Path; from convbench.ops import runlock\n"
        "try:\n"
        "    with runlock.hold(Path(sys.argv[1]), 'ci'): sys.exit(0)\n"
        "except runlock.RunLockBusyError: sys.exit(3)\n"
    )
    command = (sys.executable, "-c", probe, str(tmp_path))
    holder = _holder(tmp_path)
    try:
        started = time.monotonic()
        code, output = _locked(tmp_path, *command)
        assert time.monotonic() - started < 5
    finally:
        holder.communicate("")
    # Busy: the message and exit status of `make run`'s, and the command never started.
    assert code == runlock.EXIT_BUSY
    assert str(runlock.lock_path(tmp_path)) in output
    assert f"pid {holder.pid} on " in output and "profile full: make run" in output
    assert "make run WAIT=1" in output
    # Free: the command runs holding the lock (the probe found it busy) and its status is
    # the wrapper's; afterwards no note is left behind.
    assert _locked(tmp_path, *command)[0] == 3
    assert _locked(tmp_path, sys.executable, "-c", "pass")[0] == 0
    assert not runlock.holder_path(runlock.lock_path(tmp_path)).exists()
    recipe = (ROOT / "Makefile").read_text().partition("\nrepro:")[2].partition("\n\n")[0]
    assert "-m convbench.ops.runlock" in recipe and "-- $(VENV)/bin/dvc repro" in recipe


def test_the_lock_files_stay_out_of_git_and_dvc() -> None:
    paths = [".convbench/run.lock", ".convbench/run.lock.json", "mlflow.db.lock"]
    ignored = subprocess.run(
        ["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert ignored.stdout.split() == paths
    dvcignore = (ROOT / ".dvcignore").read_text().splitlines()
    assert "/.convbench/" in dvcignore and "/mlflow.db.lock" in dvcignore
