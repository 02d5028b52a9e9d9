"""MLflow: one run per (dataset, variant), tagged so MLflow, git and DVC views link up.

The default store is a SQLite database and an artifact folder in the project, addressed
by absolute paths so runs started from DVC's temporary experiment workspaces land in
the same store; ``MLFLOW_TRACKING_URI`` points it at a server instead.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from convbench.config import Environment, Settings, fingerprint

log = logging.getLogger(__name__)

COMPARISON_EXPERIMENT = "convbench/comparison"


class TrackingStoreError(RuntimeError):
    """The tracking store cannot hold this run as configured; the message says what to do."""


def experiment_name(dataset: str) -> str:
    return f"convbench/{dataset}"


def is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def configure(env: Environment) -> None:
    mlflow.set_tracking_uri(env.tracking_uri)


def ensure_experiment(name: str, env: Environment) -> str:
    """The experiment's id, creating it (artifacts beside a local store) if needed."""
    client = MlflowClient(tracking_uri=env.tracking_uri)
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        if is_local_store(env.tracking_uri) and existing.artifact_location.startswith(
            "mlflow-artifacts:"
        ):
            raise TrackingStoreError(
                f"MLflow experiment {name!r} in {env.tracking_uri} keeps its artifacts "
                f"behind a server ({existing.artifact_location}): set MLFLOW_TRACKING_URI "
                "to that server, or use another store"
            )
        return existing.experiment_id
    location = None
    if is_local_store(env.tracking_uri):
        # Without this MLflow puts artifacts under ./mlruns of whatever folder runs it.
        location = (env.project_root / "mlartifacts" / name.replace("/", "-")).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        # Another stage created it between our lookup and our create.
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def base_tags(settings: Settings, stage: str, dataset_sha256: str) -> dict[str, str]:
    env = settings.env
    commit = git_commit(env.project_root)
    tags = {
        "convbench.profile": settings.params.profile,
        "convbench.params_sha256": fingerprint(settings.params.model_dump(mode="json")),
        "dataset_sha256": dataset_sha256,
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "dvc_stage": env.dvc_stage or stage,
    }
    if env.dvc_exp_name:
        tags["dvc_exp_name"] = env.dvc_exp_name
    return tags


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as MLflow's flat ``a.b`` keys."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


@contextlib.contextmanager
def start_run(
    settings: Settings,
    experiment: str,
    run_name: str,
    tags: dict[str, str],
    run_id: str | None = None,
) -> Iterator[Run]:
    """Start (or, with ``run_id``, continue) a run; a failure marks it FAILED."""
    configure(settings.env)
    experiment_id = ensure_experiment(experiment, settings.env)
    with mlflow.start_run(run_id=run_id, experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.set_tags(tags)
        yield run
