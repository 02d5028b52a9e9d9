"""What comes from the environment rather than params.yaml: where the project is, the
tracking store, the mirror, the runner's name. Read here and nowhere else."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field

from convbench.settings.params import SettingsError
from convbench.settings.strict import Strict

# Set by a fan-out's dispatcher for its report stage only (never by a person): the download
# stages its selection includes, comma-separated.
SELECTED_DOWNLOADS = "CONVBENCH_SELECTED_DOWNLOADS"


class Environment(Strict):
    """What comes from the environment rather than params.yaml (never a tunable)."""

    project_root: Path
    mirror: str | None = None
    tracking_uri: str
    dvc_stage: str | None = None
    dvc_exp_name: str | None = None
    # Which machine (or worker) ran it, recorded with every run: CONVBENCH_RUNNER or the host.
    runner: str = Field(default_factory=socket.gethostname)
    # Fan-out: the git repository runners clone and push to (else the checkout's origin),
    # the DVC remote they share (else the repository's default remote), and where flow
    # runs make their own checkouts (else the system's temporary folder). From the
    # worker's environment, never flow parameters: the Prefect UI shows those unredacted.
    repository: str | None = None
    dvc_remote: str | None = None
    workspaces: Path | None = None
    # The download stages a fan-out selected (None: no selection, every run counts): a
    # run whose downloads are not among them was not selected, rather than unavailable.
    selected_downloads: frozenset[str] | None = None
    # A tracking server that does not answer: fail the stage (none), or record into the
    # project's own store with a warning (local). CONVBENCH_TRACKING_FALLBACK.
    tracking_fallback: Literal["none", "local"] = "none"
    # Seconds a stage waits for a tracking server that does not answer (a restart) before
    # it fails: before its work, and for a finished training's epochs.
    # CONVBENCH_TRACKING_PATIENCE; 0 (fail at once) unless set, as the team's workers
    # (make ui, make worker, compose) set it.
    tracking_patience: float = 0.0
    # The Prefect flow run this process belongs to (PREFECT__FLOW_RUN_ID, set by the
    # worker that started it): a unit whose worker died has its MLflow runs found by it.
    flow_run_id: str | None = None


def keras_backend_variable(environ: Mapping[str, str] | None = None) -> str | None:
    """``KERAS_BACKEND`` when someone set it: Keras reads it once, at its import."""
    return (os.environ if environ is None else environ).get("KERAS_BACKEND") or None


def find_project_root(start: Path) -> Path:
    """The folder holding params.yaml; from a DVC temp workspace, the real project.

    ``dvc exp run --temp`` and queued experiments run in ``<root>/.dvc/tmp/exps/<tmp>``:
    tracking must land in the project's own store, not in that throwaway copy.
    """
    start = start.resolve()
    parts = start.parts
    for index in range(len(parts) - 3):
        if parts[index : index + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:index])
    for folder in (start, *start.parents):
        if (folder / "params.yaml").exists():
            return folder
    return start


def default_tracking_uri(root: Path) -> str:
    return f"sqlite:///{(root / 'mlflow.db').as_posix()}"


def read_environment(environ: dict[str, str] | None = None, cwd: Path | None = None) -> Environment:
    environ = dict(os.environ if environ is None else environ)
    root = find_project_root(cwd or Path.cwd())
    mirror = environ.get("CONVBENCH_MIRROR") or None
    if mirror and "://" not in mirror:
        mirror = str(Path(mirror).expanduser().resolve())
    return Environment(
        project_root=root,
        mirror=mirror,
        tracking_uri=environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(root),
        dvc_stage=environ.get("DVC_STAGE") or None,
        dvc_exp_name=environ.get("DVC_EXP_NAME") or None,
        runner=environ.get("CONVBENCH_RUNNER") or socket.gethostname(),
        repository=environ.get("CONVBENCH_REPOSITORY") or None,
        dvc_remote=environ.get("CONVBENCH_DVC_REMOTE") or None,
        workspaces=Path(environ["CONVBENCH_WORKSPACES"])
        if environ.get("CONVBENCH_WORKSPACES")
        else None,
        tracking_fallback=_tracking_fallback(environ),
        selected_downloads=_selected_downloads(environ),
        flow_run_id=environ.get("PREFECT__FLOW_RUN_ID") or None,
        tracking_patience=_seconds(environ, "CONVBENCH_TRACKING_PATIENCE", 0.0),
    )


def _selected_downloads(environ: dict[str, str]) -> frozenset[str] | None:
    # Set but empty is a selection too (of no download), unlike unset.
    value = environ.get(SELECTED_DOWNLOADS)
    if value is None:
        return None
    return frozenset(name.strip() for name in value.split(",") if name.strip())


def _seconds(environ: dict[str, str], name: str, default: float) -> float:
    value = environ.get(name)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise SettingsError(f"{name}: got {value!r}; expected a number of seconds, 0 or more")
    return seconds


def _tracking_fallback(environ: dict[str, str]) -> Literal["none", "local"]:
    value = environ.get("CONVBENCH_TRACKING_FALLBACK") or "none"
    if value not in ("none", "local"):
        raise SettingsError(f"CONVBENCH_TRACKING_FALLBACK: got {value!r}; allowed: none, local")
    return value  # type: ignore[return-value]
