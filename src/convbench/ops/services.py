"""The local team stack: an MLflow server, a Prefect server and workers, on 127.0.0.1.

``make ui`` (``convbench services up``) starts them in the background, each with its
log under ``.services/``, waits until each answers its health check and prints the
URLs; ``make ui-stop`` (``convbench services down``) stops them. ``make deploy``
creates the work pools and the automations of ``flows/automations.yaml`` and deploys
``flows/prefect.yaml`` to that server. The
integration tests start the same stack on free ports through these functions.

Everything binds to 127.0.0.1 unless ``--host`` says otherwise: the servers have no
authentication of their own.

The store is SQLite (``mlflow.db``, Prefect's own database) unless ``db="postgres"``
(``make ui DB=postgres``): then a PostgreSQL cluster under the state folder holds both
servers' data, and the servers run with docker/compose.yaml's settings (MLflow serves
the artifacts), the team setup on one host.
"""

from __future__ import annotations

import os
import subprocess
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
from convbench.ops.servers import (
    GPU_POOL,
    HEARTBEAT_SECONDS,
    LOCAL_POOL,
    console_script,
    mlflow_server,
    prefect_server,
    runner_env,
    worker,
)
from convbench.ops.stack import Stack, free_port

__all__ = [
    "GPU_POOL",
    "HEARTBEAT_SECONDS",
    "LOCAL_POOL",
    "POOLS",
    "Running",
    "Service",
    "ServiceError",
    "Stack",
    "alive",
    "create_automations",
    "deploy",
    "free_port",
    "mlflow_server",
    "prefect_cli",
    "prefect_server",
    "read_state",
    "restart",
    "runner_env",
    "start",
    "stop",
    "up",
    "worker",
]

POOLS = (LOCAL_POOL, GPU_POOL)
DEPLOYMENTS_FILE = Path("flows") / "prefect.yaml"
AUTOMATIONS_FILE = Path("flows") / "automations.yaml"


def up(stack: Stack, workers: list[tuple[str, str, int | None]] | None = None) -> list[Running]:
    """PostgreSQL (on ``db="postgres"``: created at the first start, its databases where
    missing), the MLflow server, the Prefect server, then the workers ``(name, pool,
    limit)``; all stopped again if one does not start."""
    workers = workers if workers is not None else [("local-1", LOCAL_POOL, None)]
    running = [r for r in read_state(stack.state) if alive(r.pid)]
    if running:
        names = ", ".join(r.name for r in running)
        raise ServiceError(f"already running ({names}): stop them first (make ui-stop)")
    started = []
    try:
        if stack.postgres is not None:
            started.append(stack.postgres.up(stack.state))
        started.append(start(mlflow_server(stack), stack.state))
        started.append(start(prefect_server(stack), stack.state))
        for name, pool, limit in workers:
            started.append(start(worker(stack, name, pool, limit), stack.state))
    except ServiceError:
        stop(stack.state)
        raise
    return started


def restart(stack: Stack, name: str) -> Running:
    """Stop server ``name`` (postgres, mlflow or prefect) and start it again, on the same
    port and store: what a crash and a supervisor's restart do to the clients."""
    builders = {"mlflow": mlflow_server, "prefect": prefect_server}
    cluster = stack.postgres
    if name == "postgres" and cluster is not None:
        service = cluster.service()
    elif name in builders:
        service = builders[name](stack)
    else:
        raise ServiceError(f"restart: no server named {name!r} (postgres, mlflow, prefect)")
    stop(stack.state, only=name)
    return start(service, stack.state)


def prefect_cli(stack: Stack, *args: str, cwd: Path | None = None) -> str:
    """The prefect CLI against the stack's server."""
    result = subprocess.run(
        [console_script("prefect"), "--no-prompt", *args],
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
    """Create the work pools (process type) and the automations where missing; deploy
    flows/prefect.yaml."""
    for pool in POOLS:
        try:
            prefect_cli(stack, "work-pool", "inspect", pool)
        except ServiceError:  # not there yet; one that is keeps what was set on it
            prefect_cli(stack, "work-pool", "create", pool, "--type", "process")
    create_automations(stack)
    return prefect_cli(stack, "deploy", "--all", "--prefect-file", str(DEPLOYMENTS_FILE))


def create_automations(stack: Stack) -> list[str]:
    """The automations of AUTOMATIONS_FILE the server lacks (by name); those created."""
    import json

    import yaml

    missing = []
    for automation in yaml.safe_load((stack.root / AUTOMATIONS_FILE).read_text())["automations"]:
        try:
            prefect_cli(stack, "automation", "inspect", automation["name"])
        except ServiceError:  # not found; one that is keeps what was changed in the UI
            missing.append(automation)
    if missing:
        prefect_cli(stack, "automation", "create", "--from-json", json.dumps(missing))
    return [automation["name"] for automation in missing]
