"""The experiment flow: the DVC stages as Prefect tasks, in DAG order.

Each stage is a task with its own state, duration and logs; DVC decides what is stale,
so a run with nothing changed finishes in seconds. Flow parameters become DVC
parameter overrides (the ``key=value`` syntax of ``dvc exp run -S``), applied to
params.yaml exactly as DVC applies them, so ``dvc.lock`` records what ran.

Runs on Prefect's ephemeral local API with no server started:
    python -m flows.experiment --profile ci
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import networkx as nx
import typer
from prefect import flow, get_run_logger, task

from convbench.config import PROFILE_NAMES, load_settings

DOWNLOAD_RETRIES = 2


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
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph
        names = nx.relabel_nodes(graph, {stage: stage.addressing for stage in graph.nodes})
    # Dependencies first; among the ready ones, group by item so each run's train and
    # evaluate tasks sit side by side in the UI.
    order = nx.lexicographical_topological_sort(
        names.reverse(copy=False), key=lambda name: (name.partition("@")[2], name)
    )
    return list(order), names


def select_stages(
    root: Path, order: list[str], datasets: Iterable[str] | None, variants: Iterable[str] | None
) -> list[str]:
    """The stages a (datasets, variants) selection needs; ``None`` selects everything."""
    params = load_settings(root / "params.yaml").params
    known_variants = {run.variant for run in params.runs.values()}
    for kind, given, known in (
        ("datasets", datasets, set(params.datasets)),
        ("variants", variants, known_variants),
    ):
        unknown = set(given or ()) - known
        if unknown:
            raise ValueError(f"{kind}: unknown {sorted(unknown)}; allowed: {sorted(known)}")
    wanted_datasets = set(datasets or params.datasets)
    runs = {
        key
        for key, run in params.runs.items()
        if run.dataset in wanted_datasets and (variants is None or run.variant in set(variants))
    }
    selected = []
    for name in order:
        stage, _, item = name.partition("@")
        if (
            not item
            or item in runs
            or (item in wanted_datasets and stage in ("download", "validate", "prepare"))
        ):
            selected.append(name)
    return selected


@task(name="plan")
def plan(
    root: Path, datasets: list[str] | None, variants: list[str] | None
) -> tuple[list[str], list[str]]:
    """(selected stages in order, those that are stale or downstream of a stale one)."""
    from dvc.repo import Repo

    order, graph = stage_order(root)
    selected = select_stages(root, order, datasets, variants)
    with Repo(str(root)) as repo:
        changed = set(repo.status(targets=selected))
    stale = set(changed)
    for name in changed:
        stale |= nx.ancestors(graph, name)  # every stage that depends on it
    logger = get_run_logger()
    logger.info(
        "%d stages selected, %d to check: %s",
        len(selected),
        len(stale & set(selected)),
        ", ".join(s for s in selected if s in stale) or "none",
    )
    return selected, [s for s in selected if s in stale]


@task(name="stage", task_run_name="{stage}")
def run_stage(root: Path, stage: str, stale: bool) -> str:
    """``dvc repro --single-item STAGE``, its output streamed into the task's log."""
    logger = get_run_logger()
    if not stale:
        logger.info("%s is up to date", stage)
        return "up to date"
    command = [sys.executable, "-m", "dvc", "repro", "--single-item", stage]
    # Stage commands say `python`: make it this environment's interpreter.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
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
        raise RuntimeError(f"stage {stage} failed (exit {process.returncode}):\n" + "\n".join(tail))
    return "ran"


@flow(name="convbench-experiment")
def experiment(
    profile: str = "quick",
    datasets: list[str] | None = None,
    variants: list[str] | None = None,
    overrides: list[str] | None = None,
    project_dir: str = ".",
) -> dict[str, str]:
    """Run (or bring up to date) the selected experiments and their comparison."""
    if profile not in PROFILE_NAMES:
        raise ValueError(f"profile: unknown profile {profile!r}; allowed: {list(PROFILE_NAMES)}")
    root = Path(project_dir).resolve()
    apply_overrides(root, [f"profile={profile}", *(overrides or [])])
    selected, stale = plan(root, datasets, variants)
    outcome = {}
    for stage in selected:
        task_fn = (
            run_stage.with_options(retries=DOWNLOAD_RETRIES, retry_delay_seconds=5)
            if stage.startswith("download@")
            else run_stage
        )
        outcome[stage] = task_fn(root, stage, stage in stale)
    report = root / "reports" / "compare" / "comparison.md"
    if report.exists():
        get_run_logger().info("comparison:\n%s", report.read_text())
    return outcome


def main(
    profile: Annotated[str, typer.Option(help=f"one of {', '.join(PROFILE_NAMES)}")] = "quick",
    dataset: Annotated[list[str] | None, typer.Option(help="only these datasets")] = None,
    variant: Annotated[list[str] | None, typer.Option(help="only these variants")] = None,
    set_param: Annotated[
        list[str] | None,
        typer.Option("--set-param", "-S", help="params.yaml override key=value (repeatable)"),
    ] = None,
    project_dir: Annotated[Path, typer.Option(help="the convbench checkout")] = Path("."),
) -> None:
    experiment(
        profile=profile,
        datasets=dataset or None,
        variants=variant or None,
        overrides=set_param or [],
        project_dir=str(project_dir),
    )


if __name__ == "__main__":
    typer.run(main)
