"""Fan-out: one flow run per (dataset, variant), on whichever workers serve the pool.

``fanout`` prepares the data once, then asks Prefect for one ``convbench-unit`` flow run
per selected run (``run_deployment``), so every worker polling the unit deployment's
work pool (one per GPU machine, say) trains in parallel. Prefect's work pools and
workers do the scheduling, git and the DVC remote carry code, metadata and data between
machines, and every run logs to the shared MLflow server; nothing here queues or
schedules by itself.

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
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

import typer
from prefect import flow, get_run_logger, task
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.runtime import flow_run as current_run

from convbench.ops import workspace as ws
from convbench.settings import PROFILE_NAMES, read_environment
from convbench.tracking.store import is_local_store
from flows.experiment import (
    DATA_STAGES,
    DOWNLOAD_STAGES,
    REPORT_STAGE,
    DatasetOption,
    ProfileOption,
    SetParamOption,
    VariantOption,
    apply_overrides,
    blocked_by,
    download_dependents,
    publish_comparison,
    run_stage,
    select_stages,
    stage_order,
    stale_stages,
)

UNIT_DEPLOYMENT = "convbench-unit/gpu"
INPUT_STAGES = (*DATA_STAGES, "download_weights")
GATHER_STAGES = (REPORT_STAGE, "register")


def _short_id() -> str:
    return (current_run.get_id() or "local")[:8]


def unit_groups(selected: list[str]) -> dict[str, list[str]]:
    """The selected training stages by run (or transfer entry), in DAG order: one unit each."""
    units: dict[str, list[str]] = defaultdict(list)
    for name in selected:
        stage, _, item = name.partition("@")
        if stage not in (*INPUT_STAGES, *GATHER_STAGES):
            units[item].append(name)
    return dict(units)


@task(name="checkout")
def checkout(repository: str, ref: str, label: str, branch: str | None = None) -> Path:
    """A checkout of its own for this flow run: ``repository`` at ``ref``."""
    env = read_environment()
    folder = ws.new_workspace(env.workspaces, label)
    sha = ws.clone(repository, ref, folder)
    if branch:
        ws.git(folder, "switch", "--quiet", "--create", branch)
    get_run_logger().info("%s at %s in %s", repository, sha[:12], folder)
    return folder


@task(name="dvc-pull")
def pull_outputs(checkout_dir: Path, stages: list[str], remote: str | None) -> None:
    """Pull the outputs of ``stages`` from the DVC remote (what it has of them)."""
    ws.use_remote(checkout_dir, remote)
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
    repository: str,
    ref: str,
    unit: str,
    stages: list[str],
    experiment: str,
    tracking_uri: str,
    dvc_remote: str | None = None,
    keep_workspace: bool = False,
) -> dict[str, Any]:
    """One run (or one transfer entry's chain) in a checkout of its own, on this worker."""
    runner = read_environment().runner
    folder = checkout(repository, ref, f"unit-{unit}")
    # Its first task: the outputs its stages read, from the DVC remote.
    pull_outputs(folder, ws.upstream_of(ws.stage_graph(folder), stages), dvc_remote)
    env = {"MLFLOW_TRACKING_URI": tracking_uri, "DVC_EXP_NAME": experiment}
    outcome = {stage: run_stage(folder, stage, True, env) for stage in stages}
    experiment_ref = push_experiment(folder, stages, experiment)
    if not keep_workspace:
        shutil.rmtree(folder, ignore_errors=True)
    get_run_logger().info("%s done on %s: %s", unit, runner, outcome)
    return {"unit": unit, "runner": runner, "experiment": experiment, "ref": experiment_ref}


@task(name="dispatch", task_run_name="dispatch-{unit}")
def dispatch(deployment: str, unit: str, parameters: dict[str, Any]) -> str:
    """One unit as a flow run of ``deployment``, for whichever worker takes it; its state."""
    flow_run: FlowRun = run_deployment(
        name=deployment, parameters=parameters, timeout=None, flow_run_name=unit
    )
    state = flow_run.state
    name = state.type.value if state else "UNKNOWN"
    message = f": {state.message}" if state and state.message else ""
    get_run_logger().info("%s: flow run %s ended %s%s", unit, flow_run.name, name, message)
    return name if name == "COMPLETED" else f"failed: {name}{message}"


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
    repository: str | None = None,
    ref: str = "HEAD",
    unit_deployment: str = UNIT_DEPLOYMENT,
    tracking_uri: str | None = None,
    dvc_remote: str | None = None,
    keep_workspaces: bool = False,
) -> dict[str, str]:
    """Prepare the data, train every selected run on the pool's workers, then compare."""
    logger = get_run_logger()
    if profile not in PROFILE_NAMES:
        raise ValueError(f"profile: unknown profile {profile!r}; allowed: {list(PROFILE_NAMES)}")
    env = read_environment()
    if tracking_uri is None and not is_local_store(env.tracking_uri):
        tracking_uri = env.tracking_uri
    if not tracking_uri:
        raise ValueError(
            "a fan-out needs an MLflow server every runner can reach: set "
            "MLFLOW_TRACKING_URI (make ui starts one) or pass tracking_uri"
        )
    dvc_remote = dvc_remote or env.dvc_remote
    repository = repository or ws.default_repository(env.project_root)
    branch = f"convbench/fanout-{_short_id()}"
    root = checkout(repository, ref, "fanout", branch=branch)
    apply_overrides(root, [f"profile={profile}", *(overrides or [])])
    stage_env = {"MLFLOW_TRACKING_URI": tracking_uri}

    # 1. The data, once: pulled where the remote has it, made where it does not.
    order, graph = stage_order(root)
    selected = select_stages(root, order, datasets, variants)
    inputs = [s for s in selected if s.partition("@")[0] in INPUT_STAGES]
    pull_outputs(root, inputs, dvc_remote)
    stale = stale_stages(root, inputs, graph)  # after the pull: what the remote lacked
    dependents = download_dependents(selected, graph)
    outcome: dict[str, str] = {}
    for stage in inputs:
        missing = blocked_by(stage, dependents, outcome)
        if missing:
            outcome[stage] = f"skipped: {missing} is unavailable"
            continue
        runner = run_stage
        if stage.partition("@")[0] in DOWNLOAD_STAGES:  # transfers can fail and be retried
            runner = run_stage.with_options(retries=2, retry_delay_seconds=5)
        outcome[stage] = runner(root, stage, stage in stale, stage_env)
    ready = [s for s in inputs if outcome[s] in ("ran", "up to date")]
    baseline = publish_branch(root, f"{branch}: data for profile {profile}", ready)

    # 2. One flow run per unit whose inputs are here, all dispatched at once.
    units = unit_groups(selected)
    experiments = {unit: f"fanout-{_short_id()}-{unit}" for unit in units}
    futures = {}
    for unit, stages in units.items():
        missing = blocked_by(stages[0], dependents, outcome)
        if missing:
            outcome[unit] = f"skipped: {missing} is unavailable"
            logger.warning("%s skipped: its input %s is not available", unit, missing)
            continue
        parameters = {
            "repository": repository,
            "ref": baseline,
            "unit": unit,
            "stages": stages,
            "experiment": experiments[unit],
            "tracking_uri": tracking_uri,
            "dvc_remote": dvc_remote,
            "keep_workspace": keep_workspaces,
        }
        futures[unit] = dispatch.submit(unit_deployment, unit, parameters)
    for unit, future in futures.items():
        outcome[unit] = future.result()
    done = {unit: units[unit] for unit in futures if outcome[unit] == "COMPLETED"}

    # 3. Gather the finished units, compare, register, publish.
    gather_units(root, done, experiments)
    gathered = []
    for stage in (s for s in selected if s.partition("@")[0] in GATHER_STAGES):
        missing = blocked_by(stage, dependents, outcome)
        if missing and stage != REPORT_STAGE:
            outcome[stage] = f"skipped: {missing} is unavailable"
            continue
        outcome[stage] = run_stage(root, stage, True, stage_env)
        gathered.append(stage)
    publish_branch(root, f"{branch}: {len(done)} of {len(units)} runs gathered", gathered)
    publish_comparison(root, outcome)
    if not keep_workspaces:
        shutil.rmtree(root, ignore_errors=True)
    failed = {unit: state for unit, state in outcome.items() if state.startswith("failed")}
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(units)} units failed: {failed}")
    logger.info("fan-out done: %d units on the pool; results on branch %s", len(done), branch)
    return outcome


def main(
    profile: ProfileOption = "quick",
    dataset: DatasetOption = None,
    variant: VariantOption = None,
    set_param: SetParamOption = None,
    repository: Annotated[str | None, typer.Option(help="git URL runners clone")] = None,
    ref: Annotated[str, typer.Option(help="commit or branch to run")] = "HEAD",
    unit_deployment: Annotated[str, typer.Option(help="deployment of the units")] = UNIT_DEPLOYMENT,
    dvc_remote: Annotated[str | None, typer.Option(help="DVC remote URL or folder")] = None,
) -> None:
    fanout(
        profile=profile,
        datasets=dataset or None,
        variants=variant or None,
        overrides=set_param or [],
        repository=repository,
        ref=ref,
        unit_deployment=unit_deployment,
        dvc_remote=dvc_remote,
    )


if __name__ == "__main__":
    typer.run(main)
