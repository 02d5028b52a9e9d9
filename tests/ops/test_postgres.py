"""The PostgreSQL cluster of ``make ui DB=postgres``, started for real from the wheel."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from convbench.ops import postgres, services
from convbench.ops.processes import ServiceError, read_state, start, stop


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[postgres.Cluster]:
    cluster = postgres.Cluster(tmp_path / "state" / "postgres", port=services.free_port())
    yield cluster
    stop(tmp_path / "state")


def _start(cluster: postgres.Cluster) -> None:
    start(cluster.service(), cluster.folder.parent, timeout=60)


def test_a_new_cluster_has_the_databases_a_private_password_and_keeps_its_data(
    cluster: postgres.Cluster,
) -> None:
    assert cluster.initialise()
    assert not cluster.initialise()  # there already: left as it is
    assert stat.S_IMODE(cluster.password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cluster.folder.stat().st_mode) == 0o700
    _start(cluster)
    assert sorted(cluster.ensure_databases()) == sorted(postgres.DATABASES)
    assert cluster.ensure_databases() == []
    cluster.psql("CREATE TABLE kept (value text); INSERT INTO kept VALUES ('yes')", "mlflow")
    assert cluster.psql("SHOW server_version", "mlflow").startswith(f"{postgres.MAJOR}.")

    # The password is nowhere a process list or the log shows.
    (running,) = read_state(cluster.folder.parent)
    assert running.stop_signal == "SIGINT"  # PostgreSQL's fast, clean shutdown
    command = Path(f"/proc/{running.pid}/cmdline").read_bytes().decode()
    assert cluster.password() not in command
    assert cluster.password() not in Path(running.log).read_text()

    # Stopped and started again: the data are still there.
    assert stop(cluster.folder.parent) == ["postgres"]
    assert "database system is shut down" in Path(running.log).read_text()
    _start(cluster)
    assert cluster.psql("SELECT value FROM kept", "mlflow").strip() == "yes"


def test_the_password_is_required(cluster: postgres.Cluster) -> None:
    cluster.initialise()
    _start(cluster)
    wrong = {**os.environ, **cluster.client_env(), "PGPASSWORD": "not-the-password"}
    result = subprocess.run(
        [str(postgres.bin_dir() / "psql"), "-U", postgres.USER, "-d", "postgres", "-c", "SELECT 1"],
        env=wrong,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0 and "password authentication failed" in result.stderr
    with pytest.raises(ServiceError, match="no_such_table"):
        cluster.psql("SELECT * FROM no_such_table")


def test_the_uri_names_the_user_and_never_the_password(cluster: postgres.Cluster) -> None:
    uri = cluster.uri("mlflow")
    assert uri == f"postgresql+psycopg2://convbench@127.0.0.1:{cluster.port}/mlflow"
    assert cluster.password() not in uri
