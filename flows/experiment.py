"""The experiment flow: the DVC stages as Prefect tasks, in DAG order.

Each stage is a task with its own state, duration and logs; DVC decides what is stale,
so a run with nothing changed finishes in seconds. Flow parameters become DVC
parameter overrides (the ``key=value`` syntax of ``dvc exp run -S``), applied to
params.yaml exactly as DVC applies them, so ``dvc.lock`` records what ran.

A data set or weights file that cannot be had here (its download stage exits with
``EX_UNAVAILABLE``) does not fail the flow: every stage that depends on it is skipped,
and the flow's log and its ``comparison`` artifact say what is missing and how to
provide it. Any other failure fails the flow.

Runs on Prefect's ephemeral local API with no server started:
    python -m flows.experiment --profile ci
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from prefect import Task, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from convbench.ops import noop, planning, repro, runlock, unavailable
from convbench.ops import overrides as overrides_module
from convbench.settings import PROFILE_NAMES, load_settings, read_environment
from convbench.stages.entry import EXIT_UNAVAILABLE

DOWNLOAD_RETRIES = 2


@task(name="apply-overrides")
def apply_overrides(root: Path, overrides: list[str]) -> None:
    """Write ``key=value`` overrides into params.yaml the way ``dvc exp run -S`` does."""
    overrides_module.write_overrides(root, overrides)
    if overrides:
        get_run_logger().info("params.yaml overrides: %s", " ".join(overrides))


@task(name="plan")
def plan(
    root: Path, datasets: list[str] | None, variants: list[str] | None
) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """(selected stages in order, those that are stale or downstream of a stale one,
    and for each download stage the selected stages that depend on it)."""
    order, graph = planning.stage_order(root)
    settings = load_settings(root / "params.yaml")
    selected = planning.select_stages(settings, order, datasets, variants)
    stale = planning.stale_stages(root, selected, graph)
    get_run_logger().info(
        "%d stages selected, %d to check: %s",
        len(selected),
        len(stale),
        ", ".join(stale) or "none",
    )
    return selected, stale, planning.download_dependents(selected, graph)


@task(name="stage", task_run_name="{stage}")
def run_stage(
    root: Path,
    stage: str,
    stale: bool,
    env: dict[str, str] | None = None,
    retry_unavailable: bool = False,
) -> str:
    """``dvc repro --single-item STAGE``, its output streamed into the task's log.

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
    command = [sys.executable, "-m", "dvc", "repro", "--single-item", stage]
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


@flow(name="convbench-experiment")
def experiment(
    profile: str = "quick",
    datasets: list[str] | None = None,
    variants: list[str] | None = None,
    overrides: list[str] | None = None,
    project_dir: str = ".",
    wait_for_lock: bool = False,
    retry_unavailable: bool = False,
) -> dict[str, str]:
    """Run (or bring up to date) the selected experiments and their comparison.

    One run per checkout: another one running here fails this one at once, or with
    ``wait_for_lock`` this one waits for it (the deployments wait). Downloads found
    unavailable before are tried again only if their source or the mirror changed, or
    with ``retry_unavailable``.
    """
    if profile not in PROFILE_NAMES:
        raise ValueError(f"profile: unknown profile {profile!r}; allowed: {list(PROFILE_NAMES)}")
    root = Path(project_dir).resolve()
    # A no-op under `main`, which took the lock before Prefect started.
    label, logger = _flow_run_label(), get_run_logger()
    with runlock.hold(root, profile, wait=wait_for_lock, command=label, logger=logger):
        return run_experiments(root, profile, datasets, variants, overrides, retry_unavailable)


def _flow_run_label() -> str:
    from prefect.runtime import deployment, flow_run

    source = f"deployment {deployment.name}" if deployment.name else "started from Python"
    return f"Prefect flow run {flow_run.name} ({source})"


def run_experiments(
    root: Path,
    profile: str,
    datasets: list[str] | None,
    variants: list[str] | None,
    overrides: list[str] | None,
    retry_unavailable: bool = False,
) -> dict[str, str]:
    """The experiment flow's work, in a flow run holding the checkout's lock."""
    apply_overrides(root, [f"profile={profile}", *(overrides or [])])
    selected, stale, dependents = plan(root, datasets, variants)
    outcome: dict[str, str] = {}
    for stage in selected:
        reason = skip_if_blocked(stage, dependents, outcome)
        outcome[stage] = reason or stage_task(stage)(
            root, stage, stage in stale, retry_unavailable=retry_unavailable
        )
    publish_comparison(root, outcome)
    return outcome


def publish_comparison(root: Path, outcome: dict[str, str]) -> None:
    """The comparison and what could not run, in the log and as a Prefect artifact."""
    logger = get_run_logger()
    report = root / "reports" / "compare" / "comparison.md"
    text = report.read_text() if report.exists() else "No comparison yet."
    missing = {stage: why for stage, why in outcome.items() if planning.is_unavailable(why)}
    skipped = [stage for stage, why in outcome.items() if why.startswith("skipped")]
    if missing:
        lines = ["", "## Not run here", ""]
        for stage, why in missing.items():
            body = why.removeprefix(f"{planning.UNAVAILABLE}: ").replace("\n", "\n    ")
            lines.append(f"- `{stage}`:\n    {body}")
        lines.append(
            f"\n{len(skipped)} stages depending on them were skipped: {', '.join(skipped)}."
        )
        text += "\n".join(lines) + "\n"
        logger.warning("not run here:\n%s", "\n".join(lines))
    logger.info("comparison:\n%s", text)
    create_markdown_artifact(key="comparison", markdown=text, description="convbench comparison")


# The command-line options both flows take (python -m flows.experiment / flows.fanout).
ProfileOption = Annotated[str, typer.Option(help=f"one of {', '.join(PROFILE_NAMES)}")]
DatasetOption = Annotated[list[str] | None, typer.Option(help="only these datasets")]
VariantOption = Annotated[list[str] | None, typer.Option(help="only these variants")]
SetParamOption = Annotated[
    list[str] | None,
    typer.Option("--set-param", "-S", help="params.yaml override key=value (repeatable)"),
]


def main(
    profile: ProfileOption = "quick",
    dataset: DatasetOption = None,
    variant: VariantOption = None,
    set_param: SetParamOption = None,
    project_dir: Annotated[Path, typer.Option(help="the convbench checkout")] = Path("."),
    wait: Annotated[
        bool, typer.Option(help="if another run holds this checkout, wait for it (else stop)")
    ] = False,
    retry_unavailable: Annotated[
        bool, typer.Option(help="try downloads found unavailable before, changed or not")
    ] = False,
) -> None:
    # The lock before Prefect: a busy checkout stops in a second, not after a server start.
    with runlock.held_or_exit(project_dir, profile, wait=wait):
        overrides = [f"profile={profile}", *(set_param or [])]
        done = not retry_unavailable and nothing_changed(project_dir, overrides, dataset, variant)
        if done:  # no stage, no download, no Prefect server to start
            return typer.echo(done)
        experiment(
            profile=profile,
            datasets=dataset or None,
            variants=variant or None,
            overrides=set_param or [],
            project_dir=str(project_dir),
            retry_unavailable=retry_unavailable,
        )


def nothing_changed(
    root: Path, overrides: list[str], datasets: list[str] | None, variants: list[str] | None
) -> str | None:
    """The overrides written, then what a run with nothing to do says (else None)."""
    overrides_module.write_overrides(root.resolve(), overrides)
    return noop.nothing_to_do(root.resolve(), datasets, variants)


if __name__ == "__main__":
    typer.run(main)
