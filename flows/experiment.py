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

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import networkx as nx
import typer
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from convbench.ops import runlock
from convbench.ops.workspace import stage_graph
from convbench.settings import PROFILE_NAMES, load_settings
from convbench.stages.entry import EXIT_UNAVAILABLE

DOWNLOAD_RETRIES = 2
DOWNLOAD_STAGES = ("download", "download_weights")
DATA_STAGES = ("download", "validate", "prepare")
# Stages with one item per dataset: selected with the dataset.
DATASET_STAGES = (*DATA_STAGES, "register")
# Runs whatever is missing: it is the report that says what is missing and why. What
# follows it (the registry) is held back only by its own dataset's inputs.
REPORT_STAGE = "compare"
UNAVAILABLE = "unavailable"
# How `dvc repro` reports a stage command's exit status.
_EXITED = re.compile(r"exited with (\d+)")


@task(name="apply-overrides")
def apply_overrides(root: Path, overrides: list[str]) -> None:
    """Write ``key=value`` overrides into params.yaml the way ``dvc exp run -S`` does."""
    from dvc.utils.hydra import apply_overrides as dvc_apply

    if overrides:
        dvc_apply(root / "params.yaml", overrides)
        get_run_logger().info("params.yaml overrides: %s", " ".join(overrides))
    load_settings(root / "params.yaml")  # fail here, with the key named, not in a stage


def stage_order(root: Path) -> tuple[list[str], nx.DiGraph]:
    """Stage names, dependencies first, and the DAG (edges point to dependencies)."""
    names = stage_graph(root)
    # Dependencies first; among the ready ones, group by item so each run's train and
    # evaluate tasks sit side by side in the UI.
    order = nx.lexicographical_topological_sort(
        names.reverse(copy=False), key=lambda name: (name.partition("@")[2], name)
    )
    return list(order), names


def select_stages(
    root: Path, order: list[str], datasets: Iterable[str] | None, variants: Iterable[str] | None
) -> list[str]:
    """The stages a (datasets, variants) selection needs; ``None`` selects everything.

    A transfer entry's stages come as a whole when either of its runs is selected
    (fine-tuning starts from the head trained on features).
    """
    settings = load_settings(root / "params.yaml")
    params, specs = settings.params, settings.run_specs()
    for kind, given, known in (
        ("datasets", datasets, set(params.datasets)),
        ("variants", variants, {spec.variant for spec in specs.values()}),
    ):
        unknown = set(given or ()) - known
        if unknown:
            raise ValueError(f"{kind}: unknown {sorted(unknown)}; allowed: {sorted(known)}")
    wanted = [
        spec
        for spec in specs.values()
        if (datasets is None or spec.dataset in set(datasets))
        and (variants is None or spec.variant in set(variants))
    ]
    items = {spec.key for spec in wanted} | {spec.transfer for spec in wanted if spec.transfer}
    needed_data = {spec.dataset for spec in wanted} | set(datasets or ())
    bases = {params.transfer[spec.transfer].base for spec in wanted if spec.transfer}
    selected = []
    for name in order:
        stage, _, item = name.partition("@")
        if (
            not item
            or (stage in DATASET_STAGES and item in needed_data)
            or (stage == "download_weights" and item in bases)
            or (stage not in (*DATASET_STAGES, "download_weights") and item in items)
        ):
            selected.append(name)
    return selected


def stale_stages(root: Path, selected: list[str], graph: nx.DiGraph) -> list[str]:
    """The selected stages DVC finds changed, and those downstream of one, in order."""
    from dvc.repo import Repo

    # DVC resolves targets, and names what changed, relative to the current folder.
    with contextlib.chdir(root), Repo(str(root)) as repo:
        changed = set(repo.status(targets=selected))
    stale = set(changed)
    for name in changed:
        stale |= nx.ancestors(graph, name)  # every stage that depends on it
    return [s for s in selected if s in stale]


def download_dependents(selected: list[str], graph: nx.DiGraph) -> dict[str, list[str]]:
    """For each selected download stage, the selected stages its input holds back: all
    that depend on it other than through the report (which says what is missing)."""
    beside_report = graph.subgraph(n for n in graph if n != REPORT_STAGE)
    return {
        name: [s for s in selected if s in nx.ancestors(beside_report, name)]
        for name in selected
        if name.partition("@")[0] in DOWNLOAD_STAGES
    }


@task(name="plan")
def plan(
    root: Path, datasets: list[str] | None, variants: list[str] | None
) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """(selected stages in order, those that are stale or downstream of a stale one,
    and for each download stage the selected stages that depend on it)."""
    order, graph = stage_order(root)
    selected = select_stages(root, order, datasets, variants)
    stale = stale_stages(root, selected, graph)
    get_run_logger().info(
        "%d stages selected, %d to check: %s",
        len(selected),
        len(stale),
        ", ".join(stale) or "none",
    )
    return selected, stale, download_dependents(selected, graph)


def stage_environment(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a stage command runs in: this interpreter, the checkout's code."""
    return {
        **os.environ,
        # Stage commands say `python`: make it this environment's interpreter.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        # The checkout's own library, not the one the environment was installed from: a
        # runner's checkout may be at another commit than the worker's.
        "PYTHONPATH": str(root / "src"),
        **(extra or {}),
    }


@task(name="stage", task_run_name="{stage}")
def run_stage(root: Path, stage: str, stale: bool, env: dict[str, str] | None = None) -> str:
    """``dvc repro --single-item STAGE``, its output streamed into the task's log.

    Returns "ran", "up to date", or "unavailable: <why>" when the stage's input cannot be
    had here (the stage exited with EX_UNAVAILABLE and said why and how to provide it).
    ``env`` adds to the stage's environment (e.g. the MLflow server, the experiment name).
    """
    logger = get_run_logger()
    if not stale:
        logger.info("%s is up to date", stage)
        return "up to date"
    command = [sys.executable, "-m", "dvc", "repro", "--single-item", stage]
    env = stage_environment(root, env)
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
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip()
        if line:
            logger.info(line)
            tail = [*tail[-19:], line]
    if process.wait() != 0:
        exits = _EXITED.findall("\n".join(tail))
        if exits and int(exits[-1]) == EXIT_UNAVAILABLE:
            why = _unavailable_message(tail)
            logger.warning(
                "%s: input not available here, skipping what depends on it:\n%s", stage, why
            )
            return f"{UNAVAILABLE}: {why}"
        raise RuntimeError(f"stage {stage} failed (exit {process.returncode}):\n" + "\n".join(tail))
    return "ran"


def _unavailable_message(tail: list[str]) -> str:
    """The stage's own error message: from its ERROR line to DVC's."""
    start = max((i for i, line in enumerate(tail) if " ERROR convbench" in line), default=0)
    lines = [line for line in tail[start:] if not line.startswith("ERROR: failed to reproduce")]
    return "\n".join(lines).split(" ERROR convbench: ", 1)[-1]


@flow(name="convbench-experiment")
def experiment(
    profile: str = "quick",
    datasets: list[str] | None = None,
    variants: list[str] | None = None,
    overrides: list[str] | None = None,
    project_dir: str = ".",
    wait_for_lock: bool = False,
) -> dict[str, str]:
    """Run (or bring up to date) the selected experiments and their comparison.

    One run per checkout: another one running here fails this one at once, or with
    ``wait_for_lock`` this one waits for it (the deployments wait).
    """
    if profile not in PROFILE_NAMES:
        raise ValueError(f"profile: unknown profile {profile!r}; allowed: {list(PROFILE_NAMES)}")
    root = Path(project_dir).resolve()
    # A no-op under `main`, which took the lock before Prefect started.
    label, logger = _flow_run_label(), get_run_logger()
    with runlock.hold(root, profile, wait=wait_for_lock, command=label, logger=logger):
        return run_experiments(root, profile, datasets, variants, overrides)


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
) -> dict[str, str]:
    """The experiment flow's work, in a flow run holding the checkout's lock."""
    apply_overrides(root, [f"profile={profile}", *(overrides or [])])
    selected, stale, dependents = plan(root, datasets, variants)
    logger = get_run_logger()
    outcome: dict[str, str] = {}
    for stage in selected:
        missing = blocked_by(stage, dependents, outcome)
        if missing and stage != REPORT_STAGE:
            outcome[stage] = f"skipped: {missing} is unavailable"
            logger.warning("%s skipped: its input %s is not available", stage, missing)
            continue
        # Transfers that fail are retried; an input that is not here at all returns
        # "unavailable" instead of failing, so it is not retried in vain.
        task_fn = (
            run_stage.with_options(retries=DOWNLOAD_RETRIES, retry_delay_seconds=5)
            if stage.partition("@")[0] in DOWNLOAD_STAGES
            else run_stage
        )
        outcome[stage] = task_fn(root, stage, stage in stale)
    publish_comparison(root, outcome)
    return outcome


def _unavailable(result: str | None) -> bool:
    return bool(result) and result.startswith(UNAVAILABLE)


def blocked_by(stage: str, dependents: dict[str, list[str]], outcome: dict[str, str]) -> str | None:
    """The download stage whose input is unavailable and that ``stage`` depends on, if any."""
    return next(
        (d for d, after in dependents.items() if stage in after and _unavailable(outcome.get(d))),
        None,
    )


def publish_comparison(root: Path, outcome: dict[str, str]) -> None:
    """The comparison and what could not run, in the log and as a Prefect artifact."""
    logger = get_run_logger()
    report = root / "reports" / "compare" / "comparison.md"
    text = report.read_text() if report.exists() else "No comparison yet."
    missing = {stage: why for stage, why in outcome.items() if _unavailable(why)}
    skipped = [stage for stage, why in outcome.items() if why.startswith("skipped")]
    if missing:
        lines = ["", "## Not run here", ""]
        for stage, why in missing.items():
            body = why.removeprefix(f"{UNAVAILABLE}: ").replace("\n", "\n    ")
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
) -> None:
    # The lock before Prefect: a busy checkout stops in a second, not after a server start.
    try:
        with runlock.hold(project_dir, profile, wait=wait):
            experiment(
                profile=profile,
                datasets=dataset or None,
                variants=variant or None,
                overrides=set_param or [],
                project_dir=str(project_dir),
            )
    except runlock.RunLockBusyError as busy:
        typer.echo(f"error: {busy}", err=True)
        raise typer.Exit(runlock.EXIT_BUSY) from None


if __name__ == "__main__":
    typer.run(main)
