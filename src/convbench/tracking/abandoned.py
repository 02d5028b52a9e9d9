"""Trainings that were killed and never resumed: their MLflow runs ended, their
checkpoints removed.

A killed training leaves its MLflow run RUNNING (nothing could end it) and its
checkpoint behind, to be resumed by a rerun with the same settings. Once the run key has
a finished result under other settings (its stage finished, or DVC restored it from its
run cache), those leftovers will never be resumed: the run is ended KILLED with the
reason, and the checkpoint goes. A checkpoint a live training holds is left alone.

A fan-out unit whose worker died is run again elsewhere, in a new checkout: its runs
are found by the flow run that made them and ended KILLED by the dispatcher.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from convbench.settings import Environment
from convbench.tracking import store as tracking
from convbench.tracking.health import reachable_store
from convbench.training.checkpoints import Checkpoint, checkpoints_of, in_use, remove_checkpoint

log = logging.getLogger(__name__)


def end_killed(env: Environment, run_id: str, reason: str) -> bool:
    """End run ``run_id`` as KILLED with ``reason`` if it is still RUNNING; True if it was."""
    client = MlflowClient(tracking_uri=reachable_store(env).tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return False  # not in this store (another server's, or deleted)
    if run.info.status != RunStatus.to_string(RunStatus.RUNNING):
        return False
    client.set_tag(run_id, tracking.FAILURE_TAG, reason[: tracking.MAX_TAG_LENGTH])
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
    return True


def sweep_abandoned(env: Environment, run_key: str, why: str, keep: Path | None = None) -> int:
    """End the runs and remove the checkpoints of ``run_key``'s killed trainings.

    ``keep`` is the caller's own checkpoint; checkpoints held by a live training stay.
    Returns how many checkpoints went.
    """
    removed = 0
    for folder in checkpoints_of(env.project_root, run_key):
        if folder == keep or in_use(folder):
            continue
        progress = Checkpoint(folder, "").load_any()
        if progress is not None and progress.mlflow_run_id:
            reason = (
                f"killed: the training stopped after {progress.epochs_done} epochs and was "
                f"never resumed; {why}"
            )
            if end_killed(env, progress.mlflow_run_id, reason):
                log.warning(
                    "%s: MLflow run %s ended KILLED (%s)", run_key, progress.mlflow_run_id, why
                )
        remove_checkpoint(folder)
        removed += 1
    return removed


def end_flow_run(env: Environment, flow_run_id: str, reason: str) -> list[str]:
    """End KILLED every RUNNING run that flow run ``flow_run_id`` made (its worker died,
    so nothing else will); the ids of those ended."""
    client = MlflowClient(tracking_uri=reachable_store(env).tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    query = f"tags.`{tracking.FLOW_RUN_TAG}` = '{flow_run_id}' and attributes.status = 'RUNNING'"
    runs = client.search_runs(experiments, query)
    return [run.info.run_id for run in runs if end_killed(env, run.info.run_id, reason)]
