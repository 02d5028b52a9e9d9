"""docker/compose.yaml follows the native stack the team tests run (``make ui DB=postgres``):
the same PostgreSQL, MLflow and Prefect versions, the same store URIs but for the host,
the same database settings, ports on 127.0.0.1, the same worker heartbeat."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from convbench.ops import postgres, servers
from convbench.ops.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    state = tmp_path_factory.mktemp("state")
    return Stack(ROOT, state_dir=state, db="postgres")  # the Makefile's ports


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: str(value) for key, value in env.items()}


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def _flags(command: list[str]) -> set[str]:
    return {part for part in command if part.startswith("--")}


def _locked(package: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == package)


def _uri_shape(uri: str) -> tuple[str, str, str]:
    """(scheme, user, database) of a SQLAlchemy URI; the host and port are the setup's."""
    match = re.fullmatch(r"(?P<scheme>[\w+]+)://(?P<user>[^@:]+)@[^/]+/(?P<db>\w+)", uri)
    assert match, uri
    return match["scheme"], match["user"], match["db"]


def test_postgres_is_the_version_the_native_stack_runs():
    assert COMPOSE["postgres"]["image"] == f"postgres:{postgres.server_version()}-bookworm"
    env = _env(COMPOSE["postgres"])
    assert env["POSTGRES_DB"] in postgres.DATABASES
    assert env["POSTGRES_USER"] == f"${{POSTGRES_USER:-{postgres.USER}}}"
    init = (ROOT / "docker" / "postgres" / "init-databases.sql").read_text()
    created = set(re.findall(r"CREATE DATABASE (\w+)", init, re.IGNORECASE))
    assert {env["POSTGRES_DB"], *created} == set(postgres.DATABASES)


def test_mlflow_server_runs_alike(native: Stack):
    service = servers.mlflow_server(native)
    compose = COMPOSE["mlflow"]["command"]
    assert compose[:2] == ["mlflow", "server"] and Path(service.command[0]).name == "mlflow"
    assert _flags(service.command) == _flags(compose)  # serving artifacts, as compose does
    native_uri = _option(service.command, "--backend-store-uri")
    compose_uri = _option(compose, "--backend-store-uri").replace(
        f"${{POSTGRES_USER:-{postgres.USER}}}", postgres.USER
    )
    assert _uri_shape(native_uri) == _uri_shape(compose_uri)
    assert native_uri.startswith(f"postgresql+psycopg2://{postgres.USER}@127.0.0.1:")
    # The password: through PGPASSWORD, never in the command.
    assert "PGPASSWORD" in service.env and "PGPASSWORD" in _env(COMPOSE["mlflow"])
    assert service.env["PGPASSWORD"] not in " ".join(service.command)
    assert COMPOSE["mlflow"]["image"] == f"convbench-mlflow:{_locked('mlflow')}"


def test_prefect_server_runs_alike(native: Stack):
    service = servers.prefect_server(native)
    compose = COMPOSE["prefect-server"]
    assert compose["image"] == f"prefecthq/prefect:{_locked('prefect')}-python3.11"
    assert compose["command"][:3] == ["prefect", "server", "start"]
    assert service.command[1:3] == ["server", "start"]
    assert _flags(service.command) == _flags(compose["command"])
    ours = {k: v for k, v in service.env.items() if k.startswith("PREFECT_SERVER_DATABASE_")}
    theirs = {k: v for k, v in _env(compose).items() if k.startswith("PREFECT_SERVER_DATABASE_")}
    assert set(ours) == set(theirs)
    for key in ("DRIVER", "NAME"):
        assert ours[f"PREFECT_SERVER_DATABASE_{key}"] == theirs[f"PREFECT_SERVER_DATABASE_{key}"]
    assert ours["PREFECT_SERVER_DATABASE_USER"] == postgres.USER
    assert service.env["PREFECT_SERVER_DATABASE_PASSWORD"] not in " ".join(service.command)


def test_ports_are_the_same_on_127_0_0_1(native: Stack):
    makefile = (ROOT / "Makefile").read_text()
    for name, port, default in (
        ("mlflow", native.mlflow_port, "MLFLOW_PORT"),
        ("prefect-server", native.prefect_port, "PREFECT_PORT"),
    ):
        (published,) = COMPOSE[name]["ports"]
        assert published == f"127.0.0.1:${{{default}:-{port}}}:{port}"
        assert re.search(rf"^{default} \?= {port}$", makefile, re.MULTILINE)
    assert native.host == "127.0.0.1"
    assert "ports" not in COMPOSE["postgres"]  # compose: network only; native: 127.0.0.1


def test_workers_send_the_same_heartbeat_and_wait_as_long_for_mlflow(native: Stack):
    worker = servers.worker(native, "gpu-1", servers.GPU_POOL, limit=1)
    makefile = (ROOT / "Makefile").read_text()  # `make worker`, for workers on other hosts
    for key, value in (
        ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", servers.HEARTBEAT_SECONDS),
        ("CONVBENCH_TRACKING_PATIENCE", servers.TRACKING_PATIENCE),
    ):
        for name in ("worker", "worker-gpu"):
            assert _env(COMPOSE[name])[key] == value, name
        assert worker.env[key] == value
        assert f"{key}={value} " in makefile
    automations = yaml.safe_load((ROOT / "flows" / "automations.yaml").read_text())
    (zombies,) = automations["automations"]
    # A crash needs three heartbeats missed, so a busy machine is not taken for a dead one.
    assert zombies["trigger"]["within"] >= 3 * int(servers.HEARTBEAT_SECONDS)
