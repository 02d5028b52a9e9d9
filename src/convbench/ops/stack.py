"""Where the local stack (``make ui``) listens and keeps its state."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from convbench.ops.postgres import Cluster

__all__ = ["Stack", "free_port"]


@dataclass(frozen=True)
class Stack:
    """Where the local stack listens and keeps its state."""

    root: Path
    host: str = "127.0.0.1"
    mlflow_port: int = 5000
    prefect_port: int = 4200
    state_dir: Path | None = None
    prefect_home: Path | None = None
    db: Literal["sqlite", "postgres"] = "sqlite"
    postgres_port: int = 5433

    @property
    def postgres(self) -> Cluster | None:
        """The PostgreSQL cluster both servers use; None on SQLite."""
        if self.db != "postgres":
            return None
        return Cluster(self.state / "postgres", self.host, self.postgres_port)

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
