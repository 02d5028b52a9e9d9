"""The experiment flow: the DVC stages as Prefect tasks, in DAG order.

Each stage is a task with its own state, duration and logs; DVC decides what is stale,
so a run with nothing changed finishes in seconds. Independent stages run side by side,
up to ``runtime.stages_at_once`` (``ops.scheduling``). Flow parameters become DVC
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

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.futures import as_completed

from convbench.ops import noop, planning, repro, runlock, scheduling, warm
from convbench.ops import overrides as overrides_module
from convbench.settings import PROFILE_NAMES, keras_backend_variable, load_settings
from flows.stage_task import skip_if_blocked, stage_task


@task(name="apply-overrides")
def apply_overrides(root: Path, overrides: list[str]) -> None:
    """Write ``key=value`` overrides into params.yaml the way ``dvc exp run -S`` does."""
    overrides_module.write_overrides(root, overrides)
    if overrides:
        get_run_logger().info("params.yaml overrides: %s", " ".join(overrides))


@dataclass(frozen=True)
class Plan:
    selected: list[str]  # in DAG order
    stale: list[str]  # stale, or downstream of a stale one
    dependents: dict[str, list[str]]  # per download stage: the selected stages it holds back
    upstream: dict[str, list[str]]  # per stage: the selected stages it depends on
    limits: scheduling.Limits
    backend: str  # the Keras backend the model stages load (``training.backend``)
    warm: bool  # runtime.warm_stages


@task(name="plan")
def plan(root: Path, datasets: list[str] | None, variants: list[str] | None) -> Plan:
    """The selected stages, which are stale, what holds what back, how many at once."""
    order, graph = planning.stage_order(root)
    settings = load_settings(root / "params.yaml")
    selected = planning.select_stages(settings, order, datasets, variants)
    stale = planning.stale_stages(root, selected, graph)
    limits = scheduling.limits(settings.params.runtime)
    get_run_logger().info(
        "%d stages selected, %d to check (%d at once, %d training): %s",
        len(selected),
        len(stale),
        limits.stages,
        limits.trainings,
        ", ".join(stale) or "none",
    )
    dependents = planning.download_dependents(selected, graph)
    runtime = settings.params.runtime
    return Plan(
        selected,
        stale,
        dependents,
        scheduling.upstream_of(selected, graph),
        limits,
        keras_backend_variable() or runtime.backend,
        runtime.warm_stages,
    )


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
    planned = plan(root, datasets, variants)
    on = planned.warm and bool(planned.stale)
    with warm.interpreter(root, repro.stage_environment(root), planned.backend, on) as env:
        outcome = run_planned(root, planned, env, retry_unavailable)
    publish_comparison(root, outcome)
    return outcome


def run_planned(
    root: Path, planned: Plan, env: dict[str, str], retry_unavailable: bool
) -> dict[str, str]:
    """Each selected stage as a task once its upstream ones have an outcome, within the
    limits; the first failure lets the running ones finish and starts nothing more."""
    outcome: dict[str, str] = {}
    pending, running = list(planned.selected), {}
    failed: BaseException | None = None
    while pending or running:
        while not failed and (
            starts := scheduling.ready(pending, planned.upstream, outcome, running, planned.limits)
        ):
            for stage in starts:
                pending.remove(stage)
                reason = skip_if_blocked(stage, planned.dependents, outcome)
                if reason:
                    outcome[stage] = reason
                    continue
                running[stage] = stage_task(stage).submit(
                    root, stage, stage in planned.stale, env, retry_unavailable
                )
        if not running:
            break
        done = next(as_completed(list(running.values())))
        stage = next(name for name, future in running.items() if future is done)
        del running[stage]
        try:
            outcome[stage] = done.result()
        except Exception as error:  # the running ones finish; nothing else starts
            failed = failed or error
    if failed:
        raise failed
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
