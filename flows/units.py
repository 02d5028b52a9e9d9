"""The fan-out's units as flow runs of the unit deployment, each run again if its worker
is lost.

A worker killed in the middle of a unit (or its machine lost) leaves the unit's flow run
Running: nothing is left to say otherwise. Flow runs send heartbeats, and the automation
in flows/automations.yaml (created by ``make deploy``) marks one Crashed 90 s after its
last. The dispatcher, waiting on the flow run, then ends KILLED the MLflow runs that
attempt left RUNNING and asks for the unit again, for whichever worker of the pool takes
it. A unit that failed (its code raised) is not run again: it would fail the same way.

The new attempt starts in a checkout of its own: the lost attempt's checkpoint stayed in
the dead worker's checkout, so its training starts over.

The Prefect server restarting while units run: the dispatcher keeps asking for their
state, waiting up to API_PATIENCE seconds for the API to answer again, and otherwise
fails, naming the unit and its flow run, whose outcome it then cannot know: a unit is
reported done only once Prefect said so.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import httpx
from prefect import get_client, get_run_logger, task
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import PrefectHTTPStatusError

from convbench.settings import read_environment

# Attempts per unit when its flow run crashes (its worker died); failures are final.
UNIT_ATTEMPTS = 3
# How long the dispatcher waits for a Prefect API that stopped answering (a restart).
API_PATIENCE = 600
POLL_SECONDS = 5


def wait_for(flow_run_id: UUID, unit: str) -> FlowRun:
    """The flow run once it is in a final state; a Prefect API that stops answering is
    waited for, up to API_PATIENCE seconds."""
    logger = get_run_logger()
    silent_since: float | None = None
    with get_client(sync_client=True) as client:
        while True:
            try:
                flow_run = client.read_flow_run(flow_run_id)
            except (httpx.HTTPError, PrefectHTTPStatusError) as error:
                now = time.monotonic()
                if silent_since is None:
                    silent_since = now
                    logger.warning("%s: the Prefect API does not answer (%s); waiting", unit, error)
                if now - silent_since > API_PATIENCE:
                    raise RuntimeError(
                        f"{unit}: the Prefect API has not answered for {API_PATIENCE} s "
                        f"({error}); the outcome of flow run {flow_run_id} is unknown, so "
                        "the unit is not reported done"
                    ) from error
            else:
                if silent_since is not None:
                    logger.info("%s: the Prefect API answers again", unit)
                    silent_since = None
                if flow_run.state is not None and flow_run.state.is_final():
                    return flow_run
            time.sleep(POLL_SECONDS)


def _describe(flow_run: FlowRun) -> tuple[str, str]:
    state = flow_run.state
    name = state.type.value if state else "UNKNOWN"
    return name, f": {state.message}" if state and state.message else ""


def end_lost_attempt(flow_run: FlowRun, why: str) -> list[str]:
    """The MLflow runs a crashed flow run left RUNNING, ended KILLED with ``why``."""
    from convbench.tracking.abandoned import end_flow_run

    return end_flow_run(read_environment(), str(flow_run.id), why)


@task(name="dispatch", task_run_name="dispatch-{unit}")
def dispatch(deployment: str, unit: str, parameters: dict[str, Any]) -> str:
    """One unit as a flow run of ``deployment``, for whichever worker takes it, again
    after a crash (at most UNIT_ATTEMPTS in all); the last attempt's state."""
    logger = get_run_logger()
    for attempt in range(1, UNIT_ATTEMPTS + 1):
        run_name = unit if attempt == 1 else f"{unit} (attempt {attempt})"
        created: FlowRun = run_deployment(
            name=deployment, parameters=parameters, timeout=0, flow_run_name=run_name
        )
        flow_run = wait_for(created.id, unit)
        name, message = _describe(flow_run)
        logger.info("%s: flow run %s ended %s%s", unit, flow_run.name, name, message)
        if name != "CRASHED" or attempt == UNIT_ATTEMPTS:
            break
        why = f"killed: flow run {flow_run.name} ({flow_run.id}) crashed{message}"
        ended = end_lost_attempt(flow_run, why)
        logger.warning(
            "%s: its flow run crashed (its worker is gone); %d MLflow run(s) of it ended "
            "KILLED; running it again (attempt %d of %d)",
            unit,
            len(ended),
            attempt + 1,
            UNIT_ATTEMPTS,
        )
    return name if name == "COMPLETED" else f"failed: {name}{message}"
