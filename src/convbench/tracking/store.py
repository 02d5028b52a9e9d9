"""MLflow: one run per (dataset, variant), tagged so MLflow, git and DVC views link up.

The default store is a SQLite database and an artifact folder in the project, addressed
by absolute paths so runs started from DVC's temporary experiment workspaces land in
the same store; ``MLFLOW_TRACKING_URI`` points it at a server instead.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import mlflow
import sqlalchemy
from filelock import FileLock, Timeout
from mlflow.entities import Run, RunStatus
from mlflow.tracking import MlflowClient

from convbench.core.hashing import fingerprint
from convbench.core.redact import redact
from convbench.settings import Environment, Settings
from convbench.tracking.health import (
    FALLBACK_TAG,
    TrackingStoreError,
    TrackingUnavailableError,
    quick_requests,
    reachable_store,
)

log = logging.getLogger(__name__)

COMPARISON_EXPERIMENT = "convbench/comparison"
CONTINUES_TAG = "convbench.continues_run"  # the run a resumed training could not continue
FAILURE_TAG = "convbench.failure"  # why a FAILED run failed, as its stage reported it
FLOW_RUN_TAG = "convbench.flow_run_id"  # the Prefect flow run whose stage made the run
MAX_TAG_LENGTH = 5000
# MLflow 3's UI opens an experiment as its kind says: this kind on its training runs, not
# on the GenAI overview it may show an experiment without the tag.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# How long a process waits for another to finish creating a new SQLite store.
STORE_CREATION_TIMEOUT_S = 300.0


def experiment_name(dataset: str) -> str:
    return f"convbench/{dataset}"


def is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:`` tracking URI; None for any other store."""
    try:
        url = sqlalchemy.engine.make_url(uri)
    except sqlalchemy.exc.ArgumentError:
        return None
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


@functools.cache
def prepare_store(uri: str) -> None:
    """Create (and migrate) a new SQLite store one process at a time; once per process.

    MLflow's tracking store creates the tables of an empty database and runs its
    migrations without a lock, so stages opening a new store at once fail ("duplicate
    column name: step", "table experiments already exists"). Writes to an existing
    store are safe: MLflow gives each session a 20 s SQLite busy timeout.
    """
    path = sqlite_file(uri)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f"{path.name}.lock")
    try:
        with FileLock(lock, timeout=STORE_CREATION_TIMEOUT_S):
            # The first query opens the store, creating and migrating it if needed.
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Timeout:
        raise TrackingStoreError(
            f"waited {STORE_CREATION_TIMEOUT_S:.0f} s for another process to create the "
            f"MLflow store {path} (lock {lock}): stop the one that is stuck and try again"
        ) from None


def configure(env: Environment) -> None:
    prepare_store(env.tracking_uri)
    mlflow.set_tracking_uri(env.tracking_uri)


def ensure_experiment(name: str, env: Environment) -> str:
    """The experiment's id, creating it (artifacts beside a local store) if needed.

    Either way it is marked a model-training experiment, so MLflow's UI opens it on its
    runs.
    """
    prepare_store(env.tracking_uri)
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
        kind = existing.tags.get(EXPERIMENT_KIND_TAG)
        if kind != EXPERIMENT_KIND and existing.lifecycle_stage == "active":
            _set_kind(client, existing.experiment_id)
        return existing.experiment_id
    location = None
    if is_local_store(env.tracking_uri):
        # Without this MLflow puts artifacts under ./mlruns of whatever folder runs it.
        location = (env.project_root / "mlartifacts" / name.replace("/", "-")).as_uri()
    try:
        return client.create_experiment(
            name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )
    except mlflow.exceptions.MlflowException:
        # Another stage created it between our lookup and our create.
        if client.get_experiment_by_name(name) is None:
            raise
        return ensure_experiment(name, env)


def _set_kind(client: MlflowClient, experiment_id: str) -> None:
    """Mark an experiment made before convbench tagged its kind; only the UI needs it."""
    try:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    except mlflow.exceptions.MlflowException as error:  # another stage's at the same time
        log.warning(
            "could not tag MLflow experiment %s as %s: %s", experiment_id, EXPERIMENT_KIND, error
        )


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
    if env.flow_run_id:
        tags[FLOW_RUN_TAG] = env.flow_run_id
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
    if_missing: Literal["fail", "new"] = "fail",
) -> Iterator[Run]:
    """Start (or, with ``run_id``, continue) a run; a failure marks it FAILED with its reason.

    A tracking server that does not answer stops this before any work (or, where
    configured, the run goes to the local store instead, with a warning). A ``run_id``
    the store does not have fails, or with ``if_missing="new"`` starts a new run that
    names it in ``convbench.continues_run``.
    """
    env = reachable_store(settings.env)
    configure(env)
    experiment_id = ensure_experiment(experiment, env)
    if run_id and if_missing == "new" and not _has_run(env, run_id):
        log.warning("MLflow run %s is not in %s: starting a new one", run_id, env.tracking_uri)
        tags = {**tags, CONTINUES_TAG: run_id}
        run_id = None
    run = mlflow.start_run(run_id=run_id, experiment_id=experiment_id, run_name=run_name)
    try:
        mlflow.set_tags(tags)
        if env.tracking_uri != settings.env.tracking_uri:
            mlflow.set_tag(FALLBACK_TAG, redact(settings.env.tracking_uri))
        yield run
    except BaseException as error:
        _end_failed(error)
        raise
    mlflow.end_run()


def _has_run(env: Environment, run_id: str) -> bool:
    try:
        MlflowClient(tracking_uri=env.tracking_uri).get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return False
    return True


def log_params_kept(params: dict[str, Any]) -> None:
    """Log params; where the run already has one (a resumed run), its first value stays.

    MLflow refuses to change a param; a value that differs on resuming (the runner's
    device, say) is kept as a ``convbench.resumed_with.<param>`` tag instead.
    """
    run = mlflow.active_run()
    assert run is not None, "log_params_kept needs an active run"
    existing = MlflowClient().get_run(run.info.run_id).data.params
    mlflow.log_params({k: v for k, v in params.items() if k not in existing})
    changed = {
        f"convbench.resumed_with.{k}": str(v)
        for k, v in params.items()
        if k in existing and existing[k] != str(v)
    }
    if changed:
        mlflow.set_tags(changed)


def _end_failed(error: BaseException) -> None:
    """Mark the active run FAILED, saying why; quickly, as the server may be the problem."""
    reason = f"{type(error).__name__}: {error}"[:MAX_TAG_LENGTH]
    with quick_requests():
        try:
            if not isinstance(error, TrackingUnavailableError):
                mlflow.set_tag(FAILURE_TAG, reason)
            mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
        except Exception as unreported:  # the run's own error is the one to raise
            log.warning("could not mark the MLflow run FAILED: %s", unreported)
