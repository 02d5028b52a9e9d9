"""Starting and stopping background services (what `make ui` does), on a tiny HTTP server."""

import sys
from pathlib import Path

import pytest

from convbench.ops import processes, servers, services


def http_server(port: int) -> processes.Service:
    return processes.Service(
        "web",
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        url=f"http://127.0.0.1:{port}",
        health=f"http://127.0.0.1:{port}/",
    )


def test_start_waits_for_health_records_and_stops(tmp_path: Path) -> None:
    port = services.free_port()
    running = processes.start(http_server(port), tmp_path, timeout=30)
    assert processes.alive(running.pid)
    assert processes._healthy(f"http://127.0.0.1:{port}/")
    assert [r.name for r in processes.read_state(tmp_path)] == ["web"]
    assert processes.stop(tmp_path) == ["web"]
    assert not processes.alive(running.pid)
    assert processes.read_state(tmp_path) == []
    assert processes.stop(tmp_path) == []  # twice is fine


def test_a_service_that_dies_at_start_says_why(tmp_path: Path) -> None:
    broken = processes.Service(
        "broken",
        [sys.executable, "-c", "import sys; print('port 1 is taken'); sys.exit(3)"],
        health="http://127.0.0.1:9/",
    )
    with pytest.raises(processes.ServiceError, match=r"(?s)broken exited with 3.*port 1 is taken"):
        processes.start(broken, tmp_path, timeout=30)


def test_up_refuses_to_start_twice(tmp_path: Path) -> None:
    stack = services.Stack(root=tmp_path, state_dir=tmp_path / "state")
    running = processes.start(http_server(services.free_port()), stack.state, timeout=30)
    try:
        with pytest.raises(services.ServiceError, match=r"already running \(web\)"):
            services.up(stack, workers=[])
    finally:
        services.stop(stack.state)
    assert not services.alive(running.pid)


def test_the_stack_binds_to_localhost_and_tells_clients_where_it_is(tmp_path: Path) -> None:
    stack = services.Stack(root=tmp_path, mlflow_port=5055, prefect_port=4255)
    mlflow, prefect = services.mlflow_server(stack), services.prefect_server(stack)
    for service in (mlflow, prefect):
        assert service.command[service.command.index("--host") + 1] == "127.0.0.1"
    assert f"sqlite:///{tmp_path}/mlflow.db" in mlflow.command
    # Artifacts as files in the project, readable without the server too.
    assert (tmp_path / "mlartifacts").as_uri() in mlflow.command
    assert "--no-serve-artifacts" in mlflow.command
    worker = services.worker(stack, "gpu-7", services.GPU_POOL, limit=1)
    assert worker.env["PREFECT_API_URL"] == "http://127.0.0.1:4255/api"
    assert worker.env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5055"
    assert worker.env["CONVBENCH_RUNNER"] == "gpu-7"
    assert worker.env["PREFECT_WORKER_WEBSERVER_HOST"] == "127.0.0.1"
    assert worker.command[worker.command.index("--pool") + 1] == services.GPU_POOL


def test_workers_carry_where_the_fanout_clones_and_shares_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fan-out reads them from its worker's environment, not from flow parameters."""
    monkeypatch.delenv("CONVBENCH_REPOSITORY", raising=False)
    monkeypatch.delenv("CONVBENCH_DVC_REMOTE", raising=False)
    stack = services.Stack(root=tmp_path)
    # Nothing set: this checkout (its origin, or itself) and the repository's own remote.
    worker = services.worker(stack, "gpu-1", services.GPU_POOL, limit=1)
    assert worker.env["CONVBENCH_REPOSITORY"] == str(tmp_path.resolve())
    assert "CONVBENCH_DVC_REMOTE" not in worker.env
    assert worker.env["MLFLOW_TRACKING_URI"] == stack.mlflow_url
    # Set in the shell that starts the stack: handed on as they are.
    monkeypatch.setenv("CONVBENCH_REPOSITORY", "https://git.example/convbench.git")
    monkeypatch.setenv("CONVBENCH_DVC_REMOTE", "s3://bucket/convbench")
    worker = services.worker(stack, "gpu-1", services.GPU_POOL, limit=1)
    assert worker.env["CONVBENCH_REPOSITORY"] == "https://git.example/convbench.git"
    assert worker.env["CONVBENCH_DVC_REMOTE"] == "s3://bucket/convbench"


def test_every_server_and_worker_listens_where_told_and_127_0_0_1_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from convbench.cli import app

    # Probing a free port would bind the given address; the worker gets this one instead.
    monkeypatch.setattr(servers, "free_port", lambda host="127.0.0.1": 8765)
    host = "10.1.2.3"
    stack = services.Stack(root=tmp_path, host=host, mlflow_port=5055, prefect_port=4255)
    for service in (services.mlflow_server(stack), services.prefect_server(stack)):
        assert service.command[service.command.index("--host") + 1] == host
        assert service.url and service.url.startswith(f"http://{host}:")
    worker = services.worker(stack, "local-1")
    assert "--with-healthcheck" in worker.command  # its webserver: bound by the env below
    assert worker.env["PREFECT_WORKER_WEBSERVER_HOST"] == host
    assert worker.health == f"http://{host}:8765/health"

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["services", "env"])  # no --host given
    assert result.exit_code == 0, result.output
    assert "export PREFECT_API_URL=http://127.0.0.1:4200/api" in result.output
    assert "export MLFLOW_TRACKING_URI=http://127.0.0.1:5000" in result.output
