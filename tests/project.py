"""A throwaway copy of the project for the end-to-end tests, and the tools they drive."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, SHARED_DATASETS


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
