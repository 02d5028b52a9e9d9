"""The team stack on PostgreSQL: many workers at once, and one of them lost mid-unit.

PostgreSQL (from the wheel), the MLflow and Prefect servers on it, four workers of the
GPU pool and the dispatcher's worker, all started here on free localhost ports as
``make ui DB=postgres`` starts them, and stopped afterwards. The fan-out sends nine
units (six MNIST runs, three Cats vs Dogs ones, ci profile) to the four workers; once a
Keras training is under way, its worker and every process under it get SIGKILL. Prefect
must mark that flow run Crashed (heartbeats stop), the dispatcher run the unit again on
another worker, the lost attempt's MLflow run end KILLED, and the comparison hold every
unit once. The figures are printed (pytest -s) and written to <tmp>/team-figures.json.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd
import psutil
import pytest
from mlflow.tracking import MlflowClient

from convbench.ops import services
from tests.conftest import needs_mirror
from tests.project import git_text, prefect_query, team_setup
from tests.project import run as run_command

pytestmark = [needs_mirror, pytest.mark.slow]

DATASETS = ["mnist", "cats_and_dogs"]
VARIANTS = ["mlp", "cnn", "lenet5", "random_forest", "cnn_bn", "small_cnn", "small_cnn_bn"]
UNITS = {
    "mnist-mlp",
    "mnist-mlp-raw",
    "mnist-cnn",
    "mnist-lenet5",
    "mnist-random_forest",
    "mnist-cnn_bn",
    "cats_and_dogs-small_cnn",
    "cats_and_dogs-small_cnn-blog",
    "cats_and_dogs-small_cnn_bn",
}
GPU_WORKERS = 4
# What a store or pool under concurrent writers says when it gives way.
STORE_ERRORS = (
    "database is locked",
    "QueuePool limit",
    "too many clients",
    "remaining connection slots",
    "TimeoutError: QueuePool",
)


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[services.Stack, dict]]:
    tmp = tmp_path_factory.mktemp("team-pg")
    setup = team_setup(tmp, db="postgres", postgres_port=services.free_port())
    stack, env, origin = setup.stack, setup.env, setup.origin
    workers = [("local-1", services.LOCAL_POOL, None)]
    workers += [(f"gpu-{i}", services.GPU_POOL, 1) for i in range(1, GPU_WORKERS + 1)]
    with pytest.MonkeyPatch.context() as patch:
        for key, value in setup.worker_env.items():
            patch.setenv(key, value)
        try:
            services.up(stack, workers)
            services.deploy(stack)  # pools, deployments, the zombie automation
            yield stack, {**env, **stack.client_env(), "TEAM_TMP": str(tmp), "ORIGIN": str(origin)}
        finally:
            services.stop(stack.state)


def _running_keras_training(client: MlflowClient) -> tuple[str, str, str] | None:
    """(run key, runner, MLflow run id) of a unit's Keras training under way, if any."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return None
    for run in client.search_runs(experiments, "attributes.status = 'RUNNING'"):
        tags = run.data.tags
        key = tags.get("convbench.run", "")
        if tags.get("convbench.flow_run_id") and key in UNITS and "random_forest" not in key:
            return key, tags["convbench.runner"], run.info.run_id
    return None


def _kill_tree(pid: int) -> list[int]:
    """SIGKILL a process and everything under it, all at once (no chance to clean up)."""
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
    return [process.pid for process in processes]


def _start_fanout(stack: services.Stack, env: dict, params: list[str]) -> subprocess.Popen:
    """`prefect deployment run convbench-fanout/gpu --param … --watch`, as a user types it."""
    prefect = str(Path(sys.executable).parent / "prefect")
    command = [prefect, "deployment", "run", "convbench-fanout/gpu", *params, "--watch"]
    command += ["--watch-interval", "5", "--watch-timeout", "2700"]
    return subprocess.Popen(
        command,
        cwd=stack.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _unit_flow_runs(env: dict[str, str]) -> list[dict]:
    return prefect_query(
        env,
        "flows = {f.id: f.name for f in await client.read_flows(limit=50)}\n"
        "runs = await client.read_flow_runs(limit=200)\n"
        "result = []\n"
        "for r in runs:\n"
        "    if flows[r.flow_id] != 'convbench-unit':\n"
        "        continue\n"
        "    states = await client.read_flow_run_states(r.id)\n"
        "    result.append({'id': str(r.id), 'unit': r.parameters['unit'],\n"
        "        'state': r.state.type.value, 'parameters': r.parameters,\n"
        "        'start': r.start_time.timestamp() if r.start_time else None,\n"
        "        'end': r.end_time.timestamp() if r.end_time else None,\n"
        "        'states': [(s.type.value, s.timestamp.timestamp()) for s in states]})",
    )


@pytest.mark.timeout(3000)
def test_fanout_on_postgres_survives_a_lost_worker(team: tuple[services.Stack, dict]) -> None:
    stack, env = team
    client = MlflowClient(stack.mlflow_url)
    params = ["--param", f"datasets={json.dumps(DATASETS)}"]
    params += ["--param", f"variants={json.dumps(VARIANTS)}", "--param", 'profile="ci"']
    params += ["--param", 'overrides=["registry.min_test_accuracy.mnist=0.5"]']
    started = time.time()
    watch = _start_fanout(stack, env, params)

    # A Keras unit under way: its worker and what runs under it, killed at once.
    target = None
    while target is None and watch.poll() is None and time.time() - started < 1800:
        target = _running_keras_training(client)
        time.sleep(0.5)
    assert target is not None, "no Keras training seen running"
    unit, runner, lost_run = target
    worker = next(r for r in services.read_state(stack.state) if r.name == f"worker-{runner}")
    killed_at = time.time()
    killed = _kill_tree(worker.pid)
    print(f"\nSIGKILL at +{killed_at - started:.0f} s: {runner} ({len(killed)} processes), {unit}")

    output, _ = watch.communicate(timeout=2900)
    finished = time.time()
    assert watch.returncode == 0 and "Completed" in output, output[-4000:]

    # Prefect: the lost attempt Crashed, the unit ran again elsewhere; every unit once.
    runs = _unit_flow_runs(env)
    by_unit: dict[str, list[dict]] = {}
    for run in runs:
        by_unit.setdefault(run["unit"], []).append(run)
    assert set(by_unit) == UNITS
    completed = {u for u, rs in by_unit.items() if [r["state"] for r in rs].count("COMPLETED") == 1}
    assert completed == UNITS, {u: [r["state"] for r in rs] for u, rs in by_unit.items()}
    crashed = [r for r in runs if r["state"] == "CRASHED"]
    assert [r["unit"] for r in crashed] == [unit], [(r["unit"], r["state"]) for r in runs]
    retry = next(r for r in by_unit[unit] if r["state"] == "COMPLETED")
    crashed_at = next(t for state, t in crashed[0]["states"] if state == "CRASHED")
    assert retry["start"] > crashed_at

    # MLflow: the lost attempt KILLED with its reason, every unit's training FINISHED.
    lost = client.get_run(lost_run)
    assert lost.info.status == "KILLED", lost.info.status
    assert "crashed" in lost.data.tags["convbench.failure"]
    trainings = _trainings(client)
    assert not [r.info.run_id for r in trainings if r.info.status == "RUNNING"]
    finished_units = {
        r.data.tags["convbench.run"] for r in trainings if r.info.status == "FINISHED"
    }
    assert finished_units >= UNITS
    retried_runner = next(
        r.data.tags["convbench.runner"]
        for r in trainings
        if r.info.status == "FINISHED" and r.data.tags["convbench.run"] == unit
    )
    assert retried_runner != runner  # the dead worker did not come back

    # The comparison on the fan-out's branch: every unit ok, each once.
    origin = Path(env["ORIGIN"])
    branches = git_text(
        origin, "for-each-ref", "--format=%(refname:short)", "refs/heads/convbench/"
    ).split()
    csv = git_text(origin, "show", f"{branches[0]}:reports/compare/comparison.csv")
    table = pd.read_csv(io.StringIO(csv))
    assert table["run"].is_unique
    rows = table.set_index("run").loc[sorted(UNITS)]
    assert (rows["status"] == "ok").all(), rows["status"]
    assert len(set(rows["runner"])) >= 3, rows["runner"]  # spread over the workers

    # The logs: no store or pool giving way, and the password nowhere.
    password = stack.postgres.password()
    logs = {path.name: path.read_text(errors="replace") for path in stack.state.glob("*.log")}
    for name, text in logs.items():
        assert not [e for e in STORE_ERRORS if e in text], name
        assert password not in text, name
    assert password not in json.dumps([r["parameters"] for r in runs])
    for run in trainings:
        assert password not in json.dumps([run.data.tags, run.data.params])

    figures = {
        "units": len(UNITS),
        "workers": GPU_WORKERS,
        "flow_runs_submitted": len(runs),
        "completed": len(completed),
        "retried": len(crashed),
        "lost": len(UNITS - completed),
        "killed_unit": unit,
        "seconds_kill_to_crashed": round(crashed_at - killed_at, 1),
        "seconds_kill_to_rerun_start": round(retry["start"] - killed_at, 1),
        "seconds_kill_to_rerun_done": round(retry["end"] - killed_at, 1),
        "seconds_fanout": round(finished - started, 1),
        "date": datetime.now().isoformat(timespec="seconds"),
    }
    Path(env["TEAM_TMP"], "team-figures.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


RESTART_UNITS = {"mnist-mlp", "mnist-mlp-raw", "mnist-cnn"}
RESTART_EPOCHS = 3


@pytest.mark.timeout(2400)
def test_servers_restarted_mid_fanout_lose_nothing(team: tuple[services.Stack, dict]) -> None:
    """The MLflow server, then the Prefect server, restarted while units train: the
    fan-out completes, no unit crashes, and every epoch's metrics arrive."""
    stack, env = team
    client = MlflowClient(stack.mlflow_url)
    before = {r.info.run_id for r in _trainings(client)}
    before_flow_runs = {r["id"] for r in _unit_flow_runs(env)}
    params = ["--param", 'datasets=["mnist"]', "--param", 'variants=["mlp", "cnn"]']
    params += ["--param", 'profile="ci"', "--param"]
    params += [
        'overrides=["registry.min_test_accuracy.mnist=0.5", '
        f'"profiles.ci.max_epochs={RESTART_EPOCHS}"]'
    ]
    # Not `--watch`: the CLI stops watching when the Prefect server restarts (its event
    # stream closes), while the flow run goes on. Its state is read from the API instead.
    prefect = str(Path(sys.executable).parent / "prefect")
    created = run_command(
        [prefect, "deployment", "run", "convbench-fanout/gpu", *params], stack.root, env
    )
    match = re.search(r"UUID: ([0-9a-f-]{36})", created)
    assert match, created
    fanout_run = match.group(1)
    started = checked = time.time()
    while time.time() - started < 1500:  # a training under way: restart the servers now
        if [r for r in _trainings(client, "RUNNING") if r.info.run_id not in before]:
            break
        if time.time() - checked > 15:  # the fan-out did not end without training
            assert _flow_run_state(env, fanout_run) not in FINAL
            checked = time.time()
        time.sleep(0.5)
    began = time.time()
    services.restart(stack, "mlflow")
    mlflow_down = time.time() - began
    began = time.time()
    services.restart(stack, "prefect")
    prefect_down = time.time() - began
    print(f"\nrestarted MLflow ({mlflow_down:.0f} s) and Prefect ({prefect_down:.0f} s)")

    state = _flow_run_state(env, fanout_run)
    while state not in FINAL and time.time() - started < 2100:
        time.sleep(5)
        state = _flow_run_state(env, fanout_run)
    assert state == "COMPLETED", state
    runs = [r for r in _unit_flow_runs(env) if r["id"] not in before_flow_runs]
    assert sorted(r["unit"] for r in runs) == sorted(RESTART_UNITS)  # none ran twice
    assert {r["state"] for r in runs} == {"COMPLETED"}
    new = [r for r in _trainings(client) if r.info.run_id not in before]
    assert sorted(r.data.tags["convbench.run"] for r in new) == sorted(RESTART_UNITS)
    points = 0
    for run in new:
        assert run.info.status == "FINISHED", run.data.tags["convbench.run"]
        epochs = int(run.data.metrics["epochs_run"])
        for key in ("loss", "val_loss"):
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(1, epochs + 1)), key
            points += len(history)
    print(
        json.dumps(
            {
                "mlflow_restart_s": round(mlflow_down, 1),
                "prefect_restart_s": round(prefect_down, 1),
                "units_completed": len(runs),
                "epoch_points_found": points,
            }
        )
    )


FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _flow_run_state(env: dict[str, str], flow_run_id: str) -> str | None:
    """The flow run's state, None while the API does not answer (a restart)."""
    try:
        return prefect_query(
            env,
            f"result = (await client.read_flow_run(UUID({flow_run_id!r}))).state.type.value",
            imports="from uuid import UUID\n",
        )
    except subprocess.CalledProcessError:
        return None


def _trainings(client: MlflowClient, status: str | None = None) -> list:
    """The training runs flow runs made (their stage train@…), in every experiment."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    query = f"attributes.status = '{status}'" if status else ""
    return [
        r
        for r in client.search_runs(experiments, query)
        if r.data.tags.get("convbench.flow_run_id")
        and r.data.tags.get("dvc_stage", "").startswith("train@")
    ]
