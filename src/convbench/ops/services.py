"""The local team stack: an MLflow server, a Prefect server and workers, on 127.0.0.1.

``make ui`` (``convbench services up``) starts them in the background, each with its
log under ``.services/``, waits until each answers its health check and prints the
URLs; ``make ui-stop`` (``convbench services down``) stops them. ``make deploy``
creates the work pools and deploys ``flows/prefect.yaml`` to that server. The
integration tests start the same stack on free ports through these functions.

Everything binds to 127.0.0.1 unless ``--host`` says otherwise: the servers have no
authentication of their own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from convbench.ops.processes import (
    Running,
    Service,
    ServiceError,
    alive,
    read_state,
    start,
    stop,
)
from convbench.ops.workspace import default_repository
from convbench.settings import read_environment

__all__ = [
    "GPU_POOL",
    "LOCAL_POOL",
    "POOLS",
    "Running",
    "Service",
    "ServiceError",
    "Stack",
    "alive",
    "deploy",
    "free_port",
    "mlflow_server",
    "prefect_cli",
    "prefect_server",
    "read_state",
    "runner_env",
    "start",
    "stop",
    "up",
    "worker",
]

LOCAL_POOL = "convbench-local"
GPU_POOL = "convbench-gpu"
POOLS = (LOCAL_POOL, GPU_POOL)
DEPLOYMENTS_FILE = Path("flows") / "prefect.yaml"


@dataclass(frozen=True)
class Stack:
    """Where the local stack listens and keeps its state."""

    root: Path
    host: str = "127.0.0.1"
    mlflow_port: int = 5000
    prefect_port: int = 4200
    state_dir: Path | None = None
    prefect_home: Path | None = None

    @property
    def state(self) -> Path:
        return self.state_dir or self.root / ".services"

    @property
    def home(self) -> Path:
        return self.prefect_home or self.root / ".prefect"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def prefect_url(self) -> str:
        return f"http://{self.host}:{self.prefect_port}"

    @property
    def api_url(self) -> str:
        return f"{self.prefect_url}/api"

    def client_env(self) -> dict[str, str]:
        """What a client (a worker, the prefect CLI, a flow) needs to use the stack."""
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.home),
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _tool(name: str) -> str:
    """A console script of this environment (mlflow, prefect)."""
    return str(Path(sys.executable).parent / name)


def mlflow_server(stack: Stack) -> Service:
    """MLflow's tracking server over the project's own store (mlflow.db, mlartifacts/).

    Artifacts stay plain files in mlartifacts/ (file:// locations, not proxied
    mlflow-artifacts:/ ones), so `make run` without the server still logs to and reads
    every experiment the server created. The compose stack, for several machines, serves
    artifacts over HTTP instead.
    """
    return Service(
        "mlflow",
        [
            _tool("mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{(stack.root / 'mlflow.db').as_posix()}",
            "--default-artifact-root",
            (stack.root / "mlartifacts").as_uri(),
            "--no-serve-artifacts",
            "--host",
            stack.host,
            "--port",
            str(stack.mlflow_port),
            "--workers",
            "1",
        ],
        url=stack.mlflow_url,
        health=f"{stack.mlflow_url}/health",
    )


def prefect_server(stack: Stack) -> Service:
    return Service(
        "prefect",
        [
            _tool("prefect"),
            "server",
            "start",
            "--host",
            stack.host,
            "--port",
            str(stack.prefect_port),
        ],
        env={"PREFECT_HOME": str(stack.home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
        url=stack.prefect_url,
        health=f"{stack.api_url}/health",
    )


def runner_env(stack: Stack) -> dict[str, str]:
    """Where the fan-out's flow runs clone from, push to and share data through.

    The shell's ``CONVBENCH_REPOSITORY`` and ``CONVBENCH_DVC_REMOTE`` where set, else this
    checkout's origin (or the checkout itself) and the repository's default remote. The
    flows read them from their worker's environment: flow parameters would show them,
    credentials and all, in the Prefect UI.
    """
    env = read_environment(cwd=stack.root)
    shared = {"CONVBENCH_REPOSITORY": env.repository or default_repository(stack.root)}
    if env.dvc_remote:
        shared["CONVBENCH_DVC_REMOTE"] = env.dvc_remote
    return shared


def worker(stack: Stack, name: str, pool: str = LOCAL_POOL, limit: int | None = None) -> Service:
    """A process worker: its flow runs inherit its environment (MLflow server, repository,
    DVC remote, runner name)."""
    port = free_port(stack.host)
    command = [_tool("prefect"), "worker", "start", "--pool", pool, "--type", "process"]
    command += ["--name", name, "--with-healthcheck"]
    if limit:
        command += ["--limit", str(limit)]
    return Service(
        f"worker-{name}",
        command,
        env={
            **stack.client_env(),
            **runner_env(stack),
            "CONVBENCH_RUNNER": name,
            "PREFECT_WORKER_WEBSERVER_HOST": stack.host,
            "PREFECT_WORKER_WEBSERVER_PORT": str(port),
        },
        health=f"http://{stack.host}:{port}/health",
    )


def up(stack: Stack, workers: list[tuple[str, str, int | None]] | None = None) -> list[Running]:
    """MLflow server, Prefect server, then the workers ``(name, pool, limit)``."""
    workers = workers if workers is not None else [("local-1", LOCAL_POOL, None)]
    running = [r for r in read_state(stack.state) if alive(r.pid)]
    if running:
        names = ", ".join(r.name for r in running)
        raise ServiceError(f"already running ({names}): stop them first (make ui-stop)")
    started = []
    try:
        started.append(start(mlflow_server(stack), stack.state))
        started.append(start(prefect_server(stack), stack.state))
        for name, pool, limit in workers:
            started.append(start(worker(stack, name, pool, limit), stack.state))
    except ServiceError:
        stop(stack.state)
        raise
    return started


def prefect_cli(stack: Stack, *args: str, cwd: Path | None = None) -> str:
    """The prefect CLI against the stack's server."""
    result = subprocess.run(
        [_tool("prefect"), "--no-prompt", *args],
        cwd=cwd or stack.root,
        env={**os.environ, **stack.client_env()},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ServiceError(
            f"prefect {' '.join(args)} failed (exit {result.returncode}):\n"
            f"{(result.stdout + result.stderr)[-3000:]}"
        )
    return result.stdout


def deploy(stack: Stack) -> str:
    """Create the work pools (process type) where missing; deploy flows/prefect.yaml."""
    for pool in POOLS:
        try:
            prefect_cli(stack, "work-pool", "inspect", pool)
        except ServiceError:  # not there yet; one that is keeps what was set on it
            prefect_cli(stack, "work-pool", "create", pool, "--type", "process")
    return prefect_cli(stack, "deploy", "--all", "--prefect-file", str(DEPLOYMENTS_FILE))
