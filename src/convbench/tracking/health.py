"""Is the tracking store there? A server's health check, the local fallback, and MLflow
HTTP calls without their minutes of retries.

A stage asks before it trains or writes anything: a server that does not answer stops it
at once (or, with ``CONVBENCH_TRACKING_FALLBACK=local``, the run goes to the project's
own store, with a warning).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests

from convbench.core.errors import ConvbenchError
from convbench.core.redact import redact
from convbench.settings import Environment, Settings, default_tracking_uri

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 5.0
FALLBACK_TAG = "convbench.tracking_fallback"  # the server a fallback run could not reach


class TrackingStoreError(ConvbenchError, RuntimeError):
    """The tracking store cannot hold this run as configured; the message says what to do."""


class TrackingUnavailableError(TrackingStoreError):
    """The tracking server does not answer."""


def unreachable_reason(uri: str, timeout: float = HEALTH_TIMEOUT_S) -> str | None:
    """Why the tracking server at ``uri`` does not answer its health check; None if it does."""
    if urlsplit(uri).scheme not in ("http", "https"):
        return None  # a local store (or a plugin's): nothing to reach
    try:
        response = requests.get(uri.rstrip("/") + "/health", timeout=timeout)
    except requests.RequestException as error:
        return type(error).__name__
    if response.status_code >= 500:
        return f"HTTP {response.status_code} from /health"
    return None


def wait_reachable(uri: str, patience: float, every: float = 2.0) -> str | None:
    """For a server that just did not answer (a restart): ``unreachable_reason`` asked
    again every ``every`` seconds until it answers (None) or ``patience`` seconds pass
    (the last reason)."""
    deadline = time.monotonic() + patience
    while True:
        time.sleep(every)
        reason = unreachable_reason(uri)
        if reason is None or time.monotonic() >= deadline:
            return reason


def reachable_store(env: Environment) -> Environment:
    """``env``, or with CONVBENCH_TRACKING_FALLBACK=local the local store if the server is down.

    Raises TrackingUnavailableError before any work when the server does not answer.
    """
    reason = unreachable_reason(env.tracking_uri)
    if reason is not None and env.tracking_patience > 0:  # a team worker: a restart passes
        log.warning(
            "MLflow server %s not reachable (%s): waiting up to %.0f s for it",
            redact(env.tracking_uri),
            reason,
            env.tracking_patience,
        )
        reason = wait_reachable(env.tracking_uri, env.tracking_patience)
    if reason is None:
        return env
    shown = redact(env.tracking_uri)
    if env.tracking_fallback == "local":
        local = default_tracking_uri(env.project_root)
        log.warning(
            "!!! MLflow server %s is not reachable (%s): this run is recorded in the LOCAL "
            "store %s instead (CONVBENCH_TRACKING_FALLBACK=local); it is tagged %s. !!!",
            shown,
            reason,
            local,
            FALLBACK_TAG,
        )
        return env.model_copy(update={"tracking_uri": local})
    raise TrackingUnavailableError(
        f"MLflow tracking server {shown} is not reachable ({reason}); nothing was run. "
        "Start it (make ui), point MLFLOW_TRACKING_URI elsewhere, or set "
        "CONVBENCH_TRACKING_FALLBACK=local to record into the project's own store."
    )


def checked_up_front(settings: Settings) -> Settings:
    """``settings`` with a store that answers (or the local fallback), for a stage that
    writes files before it logs: it stops before writing anything."""
    env = reachable_store(settings.env)
    return settings if env is settings.env else settings.model_copy(update={"env": env})


@contextlib.contextmanager
def quick_requests(timeout_s: int = 10) -> Iterator[None]:
    """MLflow HTTP calls without their retries (minutes against a server that is down)."""
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s)}
    saved = {name: os.environ.get(name) for name in quick}
    os.environ.update(quick)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
