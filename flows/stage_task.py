"""A DVC stage as a Prefect task: ``dvc repro --single-item``, its log streamed into the
task's, its outcome ("ran", "up to date", "unavailable: <why>") for the flows to act on.

Both flows run their stages through it: the experiment flow on this checkout, the
fan-out's units on theirs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect import Task, get_run_logger, task

from convbench.ops import planning, repro, unavailable
from convbench.settings import read_environment
from convbench.stages.entry import EXIT_UNAVAILABLE

DOWNLOAD_RETRIES = 2


@task(name="stage", task_run_name="{stage}")
def run_stage(
    root: Path,
    stage: str,
    stale: bool,
    env: dict[str, str] | None = None,
    retry_unavailable: bool = False,
) -> str:
    """``dvc repro --single-item STAGE``, its output streamed into the task's log; DVC
    waits for its lock, held by another stage only while it records its results.

    Returns "ran", "up to date", or "unavailable: <why>" when the stage's input cannot be
    had here (the stage exited with EX_UNAVAILABLE and said why and how to provide it).
    A download found unavailable before is not run again while nothing that decides it
    changed (``ops.unavailable``), unless ``retry_unavailable``. ``env`` adds to the
    stage's environment (e.g. the MLflow server, the experiment name).
    """
    logger = get_run_logger()
    if not stale:
        logger.info("%s is up to date", stage)
        end_abandoned(root, stage, "is up to date", env)
        return "up to date"
    state = unavailable.download_state(root, stage, {**os.environ, **(env or {})})
    known = (
        None
        if retry_unavailable or state is None
        else unavailable.known_unavailable(root, stage, state)
    )
    if known is not None:
        why = unavailable.NOT_RETRIED
        logger.warning("%s: input not available here (%s):\n%s", stage, why, known)
        return f"{planning.UNAVAILABLE}: {known}"
    command = [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", stage]
    env = repro.stage_environment(root, env)
    process = subprocess.Popen(
        command,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
        bufsize=1,
    )
    tail: list[str] = []
    cached = False
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip()
        if line:
            logger.info(line)
            tail = [*tail[-19:], line]
            cached = cached or repro.RESTORED in line
    if process.wait() != 0:
        if repro.exit_status(tail) == EXIT_UNAVAILABLE:
            why = repro.unavailable_message(tail)
            logger.warning(
                "%s: input not available here, skipping what depends on it:\n%s", stage, why
            )
            if state is not None:
                unavailable.remember(root, stage, state, why)
            return f"{planning.UNAVAILABLE}: {why}"
        raise RuntimeError(f"stage {stage} failed (exit {process.returncode}):\n" + "\n".join(tail))
    if cached:
        end_abandoned(root, stage, "was restored from DVC's run cache", env)
    if state is not None:
        unavailable.forget(root, stage)
    return "ran"


def end_abandoned(root: Path, stage: str, why: str, env: dict[str, str] | None) -> None:
    """A training stage with a current result: end what its killed trainings left."""
    key = planning.trained_run_key(stage)
    if key is not None:
        # Here, not at the top: it loads MLflow and Keras (5 s), which a no-op never needs.
        from convbench.tracking.abandoned import sweep_abandoned

        environment = read_environment({**os.environ, **(env or {})}, cwd=root)
        sweep_abandoned(environment, key, f"{stage} {why}")


def stage_task(stage: str) -> Task[..., str]:
    """``run_stage``, retried for downloads: transfers that fail can succeed again, while an
    input that is not there at all returns "unavailable" instead of failing (no retries)."""
    if planning.stage_kind(stage) in planning.DOWNLOAD_STAGES:
        return run_stage.with_options(retries=DOWNLOAD_RETRIES, retry_delay_seconds=5)
    return run_stage


def skip_if_blocked(
    stage: str, dependents: dict[str, list[str]], outcome: dict[str, str]
) -> str | None:
    """``planning.skip_reason``, said in the flow run's log when the stage is skipped."""
    reason = planning.skip_reason(stage, dependents, outcome)
    if reason:
        get_run_logger().warning("%s %s", stage, reason)
    return reason
