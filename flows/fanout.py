"""Fan-out: one flow run per (dataset, variant), on whichever workers serve the pool.

``fanout`` prepares the data once, then asks Prefect for one ``convbench-unit`` flow run
per selected run (``run_deployment``), so every worker polling the unit deployment's
work pool (one per GPU machine, say) trains in parallel. Prefect's work pools and
workers do the scheduling, git and the DVC remote carry code, metadata and data between
machines, and every run logs to the shared MLflow server; nothing here queues or
schedules by itself.

The repository, the MLflow server and the DVC remote come from each worker's environment
(``CONVBENCH_REPOSITORY``, ``MLFLOW_TRACKING_URI``, ``CONVBENCH_DVC_REMOTE``), never from
flow parameters, which the Prefect UI shows as they are.

1. The dispatcher clones the repository into its own checkout, on a new branch
   ``convbench/fanout-<id>``, applies the overrides, pulls the data stages' outputs
   from the DVC remote, runs what is stale of them, pushes their outputs and the commit.
2. Each unit clones that commit into its own checkout; its first task pulls the
   outputs its stages read (``dvc pull``), then it runs its stages, saves the result as
   a DVC experiment, pushes the experiment's ref to the repository and its outputs to
   the DVC remote.
3. The dispatcher fetches the experiments, takes each unit's stages into its checkout,
   builds the comparison and the registry decisions, and pushes the branch.

    python -m flows.fanout --profile ci --dataset mnist   # needs a Prefect server + workers
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any

import networkx as nx
import typer
from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run as current_run

from convbench.core.redact import redact
from convbench.ops import planning
from convbench.ops import workspace as ws
from convbench.settings import PROFILE_NAMES, Environment, load_settings, read_environment
from convbench.tracking.store import is_local_store
from flows.experiment import (
    DatasetOption,
    ProfileOption,
    SetParamOption,
    VariantOption,
    apply_overrides,
    publish_comparison,
)
from flows.stage_task import run_stage, skip_if_blocked, stage_task
from flows.units import dispatch

UNIT_DEPLOYMENT = "convbench-unit/gpu"


def _short_id() -> str:
    return (current_run.get_id() or "local")[:8]


def shared_tracking_uri(env: Environment) -> str:
    """The MLflow server this worker's runs log to; a local store cannot be shared."""
    if is_local_store(env.tracking_uri):
        raise ValueError(
            "a fan-out needs an MLflow server every runner can reach: set MLFLOW_TRACKING_URI"
            " in the workers' environment (make ui starts one and hands it to its workers)"
        )
    return env.tracking_uri


@task(name="checkout")
def checkout(ref: str, label: str, branch: str | None = None) -> Path:
    """A checkout of its own for this flow run: the shared repository at ``ref``."""
    env = read_environment()
    repository = env.repository or ws.default_repository(env.project_root)
    folder = ws.new_workspace(env.workspaces, label)
    sha = ws.clone(repository, ref, folder)
    if branch:
        ws.git(folder, "switch", "--quiet", "--create", branch)
    get_run_logger().info("%s at %s in %s", redact(repository), sha[:12], folder)
    return folder


@task(name="dvc-pull")
def pull_outputs(checkout_dir: Path, stages: list[str]) -> None:
    """Pull the outputs of ``stages`` from the shared DVC remote (what it has of them)."""
    ws.use_remote(checkout_dir, read_environment().dvc_remote)
    if stages:
        get_run_logger().info("pulling the outputs of %s", ", ".join(stages))
        ws.dvc(checkout_dir, "pull", "--allow-missing", *stages)


@task(name="dvc-push")
def push_experiment(checkout_dir: Path, stages: list[str], experiment: str) -> str:
    """Save the stages' results as DVC experiment ``experiment``; push its ref and outputs."""
    logger = get_run_logger()
    # The results git keeps (metrics, tables) are new files: stage them so the experiment
    # commit carries them; the cached outputs travel through the DVC remote.
    ws.git(checkout_dir, "add", "--all", "--", *ws.stage_git_outputs(checkout_dir, stages))
    ws.dvc(checkout_dir, "exp", "save", "--force", "--name", experiment, *stages)
    ws.dvc(checkout_dir, "push", *stages)
    ws.dvc(checkout_dir, "exp", "push", "--force", "--no-cache", "origin", experiment)
    baseline = ws.git(checkout_dir, "rev-parse", "HEAD").strip()
    ref = ws.experiment_ref(baseline, experiment)
    logger.info("pushed experiment %s (%s) and the outputs of %s", experiment, ref, stages)
    return ref


@flow(name="convbench-unit", flow_run_name="{unit}")
def train_unit(
    ref: str, unit: str, stages: list[str], experiment: str, keep_workspace: bool = False
) -> dict[str, Any]:
    """One run (or one transfer entry's chain) in a checkout of its own, on this worker."""
    env = read_environment()
    shared_tracking_uri(env)  # before cloning: its stages log there (they inherit it)
    folder = checkout(ref, f"unit-{unit}")
    # Its first task: the outputs its stages read, from the DVC remote.
    pull_outputs(folder, ws.upstream_of(ws.stage_graph(folder), stages))
    outcome = {
        stage: run_stage(folder, stage, True, {"DVC_EXP_NAME": experiment}) for stage in stages
    }
    experiment_ref = push_experiment(folder, stages, experiment)
    if not keep_workspace:
        shutil.rmtree(folder, ignore_errors=True)
    get_run_logger().info("%s done on %s: %s", unit, env.runner, outcome)
    return {"unit": unit, "runner": env.runner, "experiment": experiment, "ref": experiment_ref}


@task(name="gather")
def gather_units(
    checkout_dir: Path, units: dict[str, list[str]], experiments: dict[str, str]
) -> None:
    """Each finished unit's stages into this checkout: lock entries, results, outputs."""
    logger = get_run_logger()
    if not units:
        return
    names = [experiments[unit] for unit in units]
    ws.dvc(checkout_dir, "exp", "pull", "--force", "--no-cache", "origin", *names)
    baseline = ws.git(checkout_dir, "rev-parse", "HEAD").strip()
    for unit, stages in units.items():
        ref = ws.experiment_ref(baseline, experiments[unit])
        taken = ws.take_experiment_stages(checkout_dir, ref, stages)
        logger.info("%s: took %s from %s", unit, ", ".join(taken), ref)
    every_stage = [stage for stages in units.values() for stage in stages]
    ws.dvc(checkout_dir, "pull", *every_stage)


@task(name="git-push")
def publish_branch(checkout_dir: Path, message: str, push_outputs: list[str]) -> str:
    """Push the outputs of ``push_outputs`` to the DVC remote, commit, push the branch."""
    if push_outputs:
        ws.dvc(checkout_dir, "push", *push_outputs)
    sha = ws.commit_all(checkout_dir, message)
    branch = ws.git(checkout_dir, "branch", "--show-current").strip()
    ws.git(checkout_dir, "push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}")
    get_run_logger().info("pushed %s (%s)", branch, sha[:12])
    return sha


@flow(name="convbench-fanout")
def fanout(
    profile: str = "quick",
    datasets: list[str] | None = None,
    variants: list[str] | None = None,
    overrides: list[str] | None = None,
    ref: str = "HEAD",
    unit_deployment: str = UNIT_DEPLOYMENT,
    keep_workspaces: bool = False,
) -> dict[str, str]:
    """Prepare the data, train every selected run on the pool's workers, then compare."""
    logger = get_run_logger()
    if profile not in PROFILE_NAMES:
        raise ValueError(f"profile: unknown profile {profile!r}; allowed: {list(PROFILE_NAMES)}")
    shared_tracking_uri(read_environment())  # the units' runs must meet in one place
    branch = f"convbench/fanout-{_short_id()}"
    root = checkout(ref, "fanout", branch=branch)
    apply_overrides(root, [f"profile={profile}", *(overrides or [])])
    order, graph = planning.stage_order(root)
    settings = load_settings(root / "params.yaml")
    selected = planning.select_stages(settings, order, datasets, variants)
    dependents = planning.download_dependents(selected, graph)
    outcome: dict[str, str] = {}

    ready = prepare_inputs(root, selected, graph, dependents, outcome)
    baseline = publish_branch(root, f"{branch}: data for profile {profile}", ready)
    units = planning.unit_groups(selected)
    done = train_units(baseline, units, dependents, unit_deployment, keep_workspaces, outcome)
    gather_units(root, {unit: units[unit] for unit in done}, done)
    gathered = compare_and_register(root, selected, dependents, outcome)
    publish_branch(root, f"{branch}: {len(done)} of {len(units)} runs gathered", gathered)
    publish_comparison(root, outcome)
    if not keep_workspaces:
        shutil.rmtree(root, ignore_errors=True)
    failed = {unit: state for unit, state in outcome.items() if state.startswith("failed")}
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(units)} units failed: {failed}")
    logger.info("fan-out done: %d units on the pool; results on branch %s", len(done), branch)
    return outcome


def prepare_inputs(
    root: Path,
    selected: list[str],
    graph: nx.DiGraph,
    dependents: dict[str, list[str]],
    outcome: dict[str, str],
) -> list[str]:
    """1. The data, once: pulled where the remote has it, made where it does not. The
    input stages whose outputs are here now (to push for the units)."""
    inputs = planning.of_kinds(selected, planning.INPUT_STAGES)
    pull_outputs(root, inputs)
    stale = planning.stale_stages(root, inputs, graph)  # after the pull: what the remote lacked
    for stage in inputs:
        reason = skip_if_blocked(stage, dependents, outcome)
        outcome[stage] = reason or stage_task(stage)(root, stage, stage in stale)
    return [s for s in inputs if outcome[s] in ("ran", "up to date")]


def train_units(
    baseline: str,
    units: dict[str, list[str]],
    dependents: dict[str, list[str]],
    unit_deployment: str,
    keep_workspaces: bool,
    outcome: dict[str, str],
) -> dict[str, str]:
    """2. One flow run per unit whose inputs are here, all dispatched at once. The DVC
    experiment of each unit that finished."""
    experiments = {unit: f"fanout-{_short_id()}-{unit}" for unit in units}
    futures = {}
    for unit, stages in units.items():
        reason = skip_if_blocked(stages[0], dependents, outcome)
        if reason:
            outcome[unit] = reason
            continue
        parameters = {
            "ref": baseline,
            "unit": unit,
            "stages": stages,
            "experiment": experiments[unit],
            "keep_workspace": keep_workspaces,
        }
        futures[unit] = dispatch.submit(unit_deployment, unit, parameters)
    for unit, future in futures.items():
        outcome[unit] = future.result()
    return {unit: experiments[unit] for unit in futures if outcome[unit] == "COMPLETED"}


def compare_and_register(
    root: Path, selected: list[str], dependents: dict[str, list[str]], outcome: dict[str, str]
) -> list[str]:
    """3. The comparison and the registry decisions over what was gathered; those run."""
    # The report names the runs outside the selection as such, not as unavailable.
    report_env = planning.selection_environment(selected)
    gathered = []
    for stage in planning.of_kinds(selected, planning.GATHER_STAGES):
        reason = skip_if_blocked(stage, dependents, outcome)
        outcome[stage] = reason or run_stage(root, stage, True, report_env)
        if not reason:
            gathered.append(stage)
    return gathered


def main(
    profile: ProfileOption = "quick",
    dataset: DatasetOption = None,
    variant: VariantOption = None,
    set_param: SetParamOption = None,
    ref: Annotated[str, typer.Option(help="commit or branch to run")] = "HEAD",
    unit_deployment: Annotated[str, typer.Option(help="deployment of the units")] = UNIT_DEPLOYMENT,
) -> None:
    """The fan-out, dispatched from here (connection settings: see the module's doc)."""
    fanout(
        profile=profile,
        datasets=dataset or None,
        variants=variant or None,
        overrides=set_param or [],
        ref=ref,
        unit_deployment=unit_deployment,
    )


if __name__ == "__main__":
    typer.run(main)
