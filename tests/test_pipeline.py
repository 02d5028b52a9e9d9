"""End to end on the real MNIST files with the `ci` profile: `dvc repro` and the flow.

These copy the project into a temporary git repository, point CONVBENCH_MIRROR at the
shared dataset mirror and run the real tools; they skip when the mirror is absent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from .conftest import ROOT, SHARED_DATASETS, needs_mirror

pytestmark = [needs_mirror, pytest.mark.slow]
RAN = re.compile(r"Running stage '([^']+)'")


def make_workspace(tmp_path: Path, profile: str = "ci") -> tuple[Path, dict[str, str]]:
    """A git checkout of the project's files (no outputs, no caches) under tmp_path."""
    workspace = tmp_path / "convbench"
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in listed:
        # Start from a project that never ran: no lock file, no results of earlier runs.
        if name == "dvc.lock" or name.startswith(("results/", "reports/")):
            continue
        if (ROOT / name).is_file():
            (workspace / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, workspace / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "DVC_"))}
    env |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        "CONVBENCH_MIRROR": str(SHARED_DATASETS),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    set_param(workspace, f"profile={profile}")
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "ws"]):
        subprocess.run(command, cwd=workspace, env=env, check=True)
    return workspace, env


def set_param(workspace: Path, override: str) -> None:
    from dvc.utils.hydra import apply_overrides

    apply_overrides(workspace / "params.yaml", [override])


def run(command: list[str], workspace: Path, env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


def dvc(workspace: Path, env: dict[str, str], *args: str) -> str:
    return run([sys.executable, "-m", "dvc", *args], workspace, env)


def test_dvc_repro_ci_profile(tmp_path: Path) -> None:
    workspace, env = make_workspace(tmp_path)
    runs = list(yaml.safe_load((workspace / "params.yaml").read_text())["runs"])

    first = dvc(workspace, env, "repro")
    assert set(RAN.findall(first)) >= {f"train@{key}" for key in runs}
    assert (workspace / "dvc.lock").exists()
    table = pd.read_csv(workspace / "reports" / "compare" / "comparison.csv")
    assert set(table["run"]) == set(runs) and (table["status"] == "ok").all()
    assert (table["test_accuracy"] > 0.3).all()  # 1,000 images, one epoch: well above chance
    summary = json.loads((workspace / "reports/validation/mnist/summary.json").read_text())
    assert summary["success"] and summary["rows"] == 70_000

    client = MlflowClient(f"sqlite:///{workspace}/mlflow.db")
    experiment = client.get_experiment_by_name("convbench/mnist")
    tracked = client.search_runs([experiment.experiment_id])
    assert {r.info.run_name for r in tracked} == set(runs)
    assert all(
        "test_accuracy" in r.data.metrics and "training_seconds" in r.data.metrics for r in tracked
    )
    assert all(r.data.tags["dvc_stage"].startswith("train@") for r in tracked)

    assert "up to date" in dvc(workspace, env, "status")
    assert RAN.findall(dvc(workspace, env, "repro")) == []

    set_param(workspace, "runs.mnist-mlp.epochs=19")
    assert set(RAN.findall(dvc(workspace, env, "repro"))) == {
        "train@mnist-mlp",
        "evaluate@mnist-mlp",
        "compare",
    }


def test_prefect_flow_runs_the_stages_as_tasks(tmp_path: Path) -> None:
    workspace, env = make_workspace(tmp_path, profile="quick")
    flow = [
        sys.executable,
        "-m",
        "flows.experiment",
        "--profile",
        "ci",
        "--variant",
        "cnn",
        "--variant",
        "random_forest",
        "--project-dir",
        str(workspace),
    ]
    run(flow, workspace, env)
    assert "profile: ci" in (workspace / "params.yaml").read_text()  # the override applied
    table = pd.read_csv(workspace / "reports" / "compare" / "comparison.csv").set_index("run")
    assert table.loc["mnist-cnn", "status"] == "ok"
    assert table.loc["mnist-mlp", "status"] == "not run"  # not selected

    states = task_states(env)
    expected = {
        "download@mnist",
        "validate@mnist",
        "prepare@mnist",
        "train@mnist-cnn",
        "evaluate@mnist-cnn",
        "train@mnist-random_forest",
        "compare",
    }
    assert expected <= set(states) and "train@mnist-mlp" not in states
    assert all(state == "COMPLETED" for state in states.values()), states

    again = run(flow, workspace, env)
    assert "Running stage" not in again
    assert again.count("is up to date") >= len(expected)


def task_states(env: dict[str, str]) -> dict[str, str]:
    """Task-run names and states from the Prefect database the flow used."""
    script = (
        "import asyncio, json\n"
        "from prefect.client.orchestration import get_client\n"
        "from prefect.client.schemas.sorting import TaskRunSort\n"
        "async def main():\n"
        "    async with get_client() as client:\n"
        "        runs = await client.read_task_runs(\n"
        "            limit=200, sort=TaskRunSort.EXPECTED_START_TIME_ASC)\n"
        "    print(json.dumps({r.name: r.state.type.value for r in runs}))\n"
        "asyncio.run(main())\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])
