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

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "services.json"
LOCAL_POOL = "convbench-local"
GPU_POOL = "convbench-gpu"
POOLS = (LOCAL_POOL, GPU_POOL)
DEPLOYMENTS_FILE = Path("flows") / "prefect.yaml"


class ServiceError(RuntimeError):
    """A service did not start, or a command against it failed; the message says why."""


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    url: str | None = None  # what a person opens
    health: str | None = None  # answers 2xx once the service is ready


@dataclass(frozen=True)
class Running:
    name: str
    pid: int
    url: str | None
    log: str


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


def worker(stack: Stack, name: str, pool: str = LOCAL_POOL, limit: int | None = None) -> Service:
    """A process worker: its flow runs inherit its environment (MLflow server, runner name)."""
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
            "CONVBENCH_RUNNER": name,
            "PREFECT_WORKER_WEBSERVER_HOST": stack.host,
            "PREFECT_WORKER_WEBSERVER_PORT": str(port),
        },
        health=f"http://{stack.host}:{port}/health",
    )


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def start(service: Service, state_dir: Path, timeout: float = 180) -> Running:
    """Start ``service`` in its own process group and wait until it is healthy."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir / f"{service.name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            service.command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **service.env},
            start_new_session=True,  # survives the caller; stopped as a group
        )
    running = Running(service.name, process.pid, service.url, str(log))
    _record(state_dir, running)
    deadline = time.monotonic() + timeout
    while service.health and not _healthy(service.health):
        if process.poll() is not None:
            raise ServiceError(
                f"{service.name} exited with {process.returncode} while starting; "
                f"{log}:\n{_tail(log)}"
            )
        if time.monotonic() > deadline:
            raise ServiceError(
                f"{service.name} not healthy after {timeout:.0f} s ({service.health}); "
                f"{log}:\n{_tail(log)}"
            )
        time.sleep(0.5)
    return running


def _record(state_dir: Path, running: Running) -> None:
    entries = [r for r in read_state(state_dir) if r.name != running.name]
    path = state_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(r) for r in [*entries, running]], indent=2))
    os.replace(tmp, path)


def read_state(state_dir: Path) -> list[Running]:
    path = state_dir / STATE_FILE
    if not path.exists():
        return []
    return [Running(**entry) for entry in json.loads(path.read_text())]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(state_dir: Path, grace: float = 20) -> list[str]:
    """Stop every recorded service (workers first), each with its process group."""
    stopped = []
    for running in sorted(read_state(state_dir), key=lambda r: not r.name.startswith("worker")):
        if not alive(running.pid):
            continue
        try:
            os.killpg(running.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + grace
        while alive(running.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
            _reap(running.pid)
        if alive(running.pid):
            os.killpg(running.pid, signal.SIGKILL)
        stopped.append(running.name)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return stopped


def _reap(pid: int) -> None:
    """Collect the exit status when we are the parent (tests), so the pid goes away."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


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
