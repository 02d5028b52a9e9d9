"""A throwaway copy of the project for the end-to-end tests, and the tools they drive."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from convbench.settings import Settings, load_settings
from tests.conftest import ROOT, SHARED_DATASETS


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


def prefect_query(env: dict[str, str], body: str, imports: str = "") -> Any:
    """What ``body`` (statements with ``client`` open, setting ``result``) reads from the
    Prefect API ``env`` points to, in a process of its own; ``result`` comes back as JSON."""
    indented = "".join(f"        {line}\n" for line in body.strip().splitlines())
    script = (
        f"import asyncio, json\nfrom prefect.client.orchestration import get_client\n{imports}"
        "async def main():\n"
        "    async with get_client() as client:\n"
        f"{indented}"
        "    print(json.dumps(result))\n"
        "asyncio.run(main())\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def task_states(env: dict[str, str]) -> dict[str, str]:
    """Task-run names and states from the Prefect database the flow used."""
    return prefect_query(
        env,
        "runs = await client.read_task_runs(limit=200, sort=TaskRunSort.EXPECTED_START_TIME_ASC)\n"
        "result = {r.name: r.state.type.value for r in runs}",
        imports="from prefect.client.schemas.sorting import TaskRunSort\n",
    )


def task_spans(env: dict[str, str]) -> dict[str, tuple[float, float]]:
    """Task-run names and their (start, end) times in seconds, for those that ran."""
    return prefect_query(
        env,
        "runs = await client.read_task_runs(limit=200)\n"
        "result = {r.name: (r.start_time.timestamp(), r.end_time.timestamp()) for r in runs"
        " if r.start_time and r.end_time}",
    )


# Tiny projects for the fault tests: params.yaml in a folder, the real stage commands.


def tiny_project(
    settings: Settings, root: Path, run: str, epochs: int, **changes: object
) -> Settings:
    """A project in ``root``: params.yaml with run ``run`` changed, tracking in root/mlflow.db."""
    runs = dict(settings.params.runs)
    runs[run] = runs[run].model_copy(update={"epochs": epochs, **changes})
    profiles = dict(settings.params.profiles)
    profiles["ci"] = profiles["ci"].model_copy(update={"max_epochs": None})
    params = settings.params.model_copy(update={"runs": runs, "profiles": profiles})
    (root / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))
    return load_settings(root / "params.yaml", environ=store_env(root))


def store_env(root: Path, uri: str | None = None) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": uri or f"sqlite:///{root}/mlflow.db"}


def stage(root: Path, run: str, env: dict[str, str]) -> subprocess.Popen:
    """The DVC stage's command for ``run``, as its own process."""
    command = [sys.executable, "-m", "pipelines.train", run, str(root / "prepared")]
    command += [str(root / "models" / run), str(root / "out" / run / "train")]
    command += ["--params", str(root / "params.yaml")]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env, "TF_CPP_MIN_LOG_LEVEL": "3"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


# The team tests: a project copy, its bare origin, and a stack of servers on free ports.


@dataclass(frozen=True)
class TeamSetup:
    stack: Any  # convbench.ops.services.Stack
    workspace: Path
    origin: Path  # the bare repository runners clone and push to
    remote: Path  # the local-folder DVC remote they share
    env: dict[str, str]  # a shell of the user's (not yet pointed at the servers)
    worker_env: dict[str, str]  # what the workers inherit


def team_setup(tmp: Path, **stack_options: Any) -> TeamSetup:
    from convbench.ops import services

    workspace, env = make_workspace(tmp)
    origin = tmp / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(workspace), str(origin)], check=True)
    stack = services.Stack(
        root=workspace,
        mlflow_port=services.free_port(),
        prefect_port=services.free_port(),
        state_dir=tmp / "services",
        prefect_home=tmp / "prefect",
        **stack_options,
    )
    # What the workers inherit (their flow runs and stages do in turn): among it where
    # the fan-out clones from and shares data through, never passed as flow parameters.
    worker_env = {k: v for k, v in env.items() if k.startswith(("CONVBENCH_", "GIT_", "TF_"))}
    worker_env |= {
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_WORKER_PREFETCH_SECONDS": "2",
        "CONVBENCH_WORKSPACES": str(tmp / "checkouts"),
        "CONVBENCH_REPOSITORY": str(origin),
        "CONVBENCH_DVC_REMOTE": str(tmp / "dvc-remote"),
    }
    return TeamSetup(stack, workspace, origin, tmp / "dvc-remote", env, worker_env)


def git_text(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout
