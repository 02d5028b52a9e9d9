"""The processes of the local stack: the MLflow server, the Prefect server, workers.

On SQLite, MLflow keeps the project's own store (mlflow.db, mlartifacts/) and Prefect its
database under PREFECT_HOME. On PostgreSQL (``Stack.db == "postgres"``) both run with
docker/compose.yaml's settings: the store URIs, the database settings in parts, MLflow
serving the artifacts; the password reaches them through their environment only.
"""

from __future__ import annotations

import sys
from pathlib import Path

from convbench.ops import postgres
from convbench.ops.processes import Service
from convbench.ops.stack import Stack, free_port
from convbench.ops.workspace import default_repository
from convbench.settings import read_environment

LOCAL_POOL = "convbench-local"
GPU_POOL = "convbench-gpu"
# Seconds between a flow run's heartbeats (Prefect's least; its default is 180): the
# automation in flows/automations.yaml crashes a flow run 90 s after its last one.
HEARTBEAT_SECONDS = "30"
# Seconds a worker's stages wait for an MLflow server that does not answer (a restart).
TRACKING_PATIENCE = "120"


def console_script(name: str) -> str:
    """A console script of this environment (mlflow, prefect)."""
    return str(Path(sys.executable).parent / name)


def mlflow_server(stack: Stack) -> Service:
    """MLflow's tracking server over the project's own store (mlflow.db, mlartifacts/).

    Artifacts stay plain files in mlartifacts/ (file:// locations, not proxied
    mlflow-artifacts:/ ones), so `make run` without the server still logs to and reads
    every experiment the server created. On PostgreSQL it runs as in compose, serving the
    artifacts over HTTP to workers on other machines.
    """
    artifacts = stack.root / "mlartifacts"
    cluster = stack.postgres
    if cluster is not None:
        store = ["--backend-store-uri", cluster.uri("mlflow")]
        store += ["--artifacts-destination", str(artifacts), "--serve-artifacts"]
        env = {"PGPASSWORD": cluster.password(), "MLFLOW_DISABLE_TELEMETRY": "true"}
    else:  # SQLite takes one writer at a time: one server process
        store = ["--backend-store-uri", f"sqlite:///{(stack.root / 'mlflow.db').as_posix()}"]
        store += ["--default-artifact-root", artifacts.as_uri(), "--no-serve-artifacts"]
        store += ["--workers", "1"]
        env = {}
    address = ["--host", stack.host, "--port", str(stack.mlflow_port)]
    return Service(
        "mlflow",
        [console_script("mlflow"), "server", *store, *address],
        env=env,
        url=stack.mlflow_url,
        health=f"{stack.mlflow_url}/health",
    )


def prefect_server(stack: Stack) -> Service:
    return Service(
        "prefect",
        [
            console_script("prefect"),
            "server",
            "start",
            "--host",
            stack.host,
            "--port",
            str(stack.prefect_port),
        ],
        env={
            "PREFECT_HOME": str(stack.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **prefect_database(stack),
        },
        url=stack.prefect_url,
        health=f"{stack.api_url}/health",
    )


def prefect_database(stack: Stack) -> dict[str, str]:
    """Prefect's store on PostgreSQL, in parts as compose gives it (no URL to escape)."""
    cluster = stack.postgres
    if cluster is None:
        return {}
    return {
        "PREFECT_SERVER_DATABASE_DRIVER": "postgresql+asyncpg",
        "PREFECT_SERVER_DATABASE_HOST": cluster.host,
        "PREFECT_SERVER_DATABASE_PORT": str(cluster.port),
        "PREFECT_SERVER_DATABASE_NAME": "prefect",
        "PREFECT_SERVER_DATABASE_USER": postgres.USER,
        "PREFECT_SERVER_DATABASE_PASSWORD": cluster.password(),
    }


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
    command = [console_script("prefect"), "worker", "start", "--pool", pool, "--type", "process"]
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
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": HEARTBEAT_SECONDS,
            "CONVBENCH_TRACKING_PATIENCE": TRACKING_PATIENCE,
            "PREFECT_WORKER_WEBSERVER_HOST": stack.host,
            "PREFECT_WORKER_WEBSERVER_PORT": str(port),
        },
        health=f"http://{stack.host}:{port}/health",
    )
