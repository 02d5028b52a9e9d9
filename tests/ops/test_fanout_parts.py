"""The fan-out's parts without servers: units, inputs, taking an experiment's stages, the
deployments file. (The whole fan-out, on real servers and workers, is in test_team.)"""

import inspect
import subprocess
from pathlib import Path

import pytest
import yaml

from convbench.ops import workspace as ws
from convbench.ops.planning import select_stages, selection_environment, stage_order, unit_groups
from convbench.reporting.compare import gather
from convbench.reporting.missing import InputFolders
from convbench.settings import Settings, load_settings
from convbench.stages.compare import selection
from tests.conftest import ROOT


def test_each_run_is_a_unit_and_a_transfer_entry_is_one_chain() -> None:
    order, graph = stage_order(ROOT)
    units = unit_groups(order)
    assert units["mnist-cnn"] == ["train@mnist-cnn", "evaluate@mnist-cnn"]
    assert units["cats_and_dogs-vgg16"] == [
        "extract_features@cats_and_dogs-vgg16",
        "train_head@cats_and_dogs-vgg16",
        "evaluate_head@cats_and_dogs-vgg16",
        "finetune@cats_and_dogs-vgg16",
        "evaluate_finetune@cats_and_dogs-vgg16",
    ]
    assert not any(
        stage.startswith(("prepare", "compare", "register")) for s in units.values() for stage in s
    )
    # What a unit pulls first: the outputs its stages read, from outside the unit.
    assert ws.upstream_of(graph, units["mnist-cnn"]) == ["prepare@mnist"]
    assert ws.upstream_of(graph, units["cats_and_dogs-vgg16"]) == [
        "download_weights@vgg16_imagenet",
        "prepare@cats_and_dogs",
    ]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


LOCK = {
    "schema": "2.0",
    "stages": {
        "prepare@mnist": {"cmd": "prepare", "outs": [{"path": "data/prepared/mnist"}]},
        "train@a": {"cmd": "train a", "outs": [{"path": "models/a"}, {"path": "results/a/m.json"}]},
    },
}


def test_taking_a_units_stages_merges_their_lock_entries_and_results(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    _git(checkout, "init", "-q")
    (checkout / ".gitignore").write_text("/models/\n")
    (checkout / "dvc.lock").write_text(yaml.safe_dump(LOCK))
    _git(checkout, "add", "-A")
    _git(checkout, "commit", "-qm", "baseline")
    # A unit's experiment commit: its own lock entry and result, on a ref of its own.
    _git(checkout, "switch", "-q", "-c", "unit")
    theirs = {**LOCK["stages"]["train@a"], "cmd": "train a (unit)"}
    lock = {"schema": "2.0", "stages": {**LOCK["stages"], "train@a": theirs}}
    (checkout / "dvc.lock").write_text(yaml.safe_dump(lock))
    (checkout / "results" / "a").mkdir(parents=True)
    (checkout / "results" / "a" / "m.json").write_text('{"accuracy": 0.9}')
    _git(checkout, "add", "-A")
    _git(checkout, "commit", "-qm", "unit")
    _git(checkout, "switch", "-q", "-")

    assert ws.stage_git_outputs(checkout, ["train@a"]) == ["results/a/m.json"]  # not models/
    taken = ws.take_experiment_stages(checkout, "unit", ["train@a"])
    assert taken == ["results/a/m.json"]
    assert (checkout / "results" / "a" / "m.json").read_text() == '{"accuracy": 0.9}'
    merged = yaml.safe_load((checkout / "dvc.lock").read_text())
    assert merged["stages"]["train@a"]["cmd"] == "train a (unit)"
    assert merged["stages"]["prepare@mnist"] == LOCK["stages"]["prepare@mnist"]
    with pytest.raises(ws.WorkspaceError, match=r"unit: dvc.lock has no entry for train@b"):
        ws.take_experiment_stages(checkout, "unit", ["train@b"])


def test_a_clone_at_a_commit_and_a_missing_remote_said_plainly(tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    _git(origin, "init", "-q")
    (origin / "a.txt").write_text("one")
    _git(origin, "add", "-A")
    _git(origin, "commit", "-qm", "one")
    first = _git(origin, "rev-parse", "HEAD").strip()
    (origin / "a.txt").write_text("two")
    _git(origin, "commit", "-qam", "two")
    dest = ws.new_workspace(tmp_path / "work", "unit")
    assert ws.clone(str(origin), first, dest / "repo") == first
    assert (dest / "repo" / "a.txt").read_text() == "one"
    assert ws.default_repository(dest / "repo") == str(origin)
    ws.dvc(dest / "repo", "init", "-q")
    with pytest.raises(ws.WorkspaceError, match="no DVC remote to share data through"):
        ws.use_remote(dest / "repo", None)
    ws.use_remote(dest / "repo", str(tmp_path / "remote"))
    assert ws.dvc(dest / "repo", "remote", "default").strip() == ws.FANOUT_REMOTE


def test_the_deployments_file_matches_the_flows() -> None:
    spec = yaml.safe_load((ROOT / "flows" / "prefect.yaml").read_text())
    assert spec["pull"] == [{"convbench.ops.workspace.enter_project": {}}]
    names = set()
    for deployment in spec["deployments"]:
        path, _, function = deployment["entrypoint"].partition(":")
        module = path.removesuffix(".py").replace("/", ".")
        flow = getattr(__import__(module, fromlist=[function]), function)
        names.add(f"{flow.name}/{deployment['name']}")
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(deployment.get("parameters", {})) <= accepted, deployment["name"]
        assert all(not s["active"] for s in deployment.get("schedules", []))  # off until asked
    assert {"convbench-experiment/quick", "convbench-fanout/gpu", "convbench-unit/gpu"} <= names
    fanout = next(d for d in spec["deployments"] if d["entrypoint"].endswith(":fanout"))
    assert fanout["parameters"]["unit_deployment"] in names
    pools = {d["entrypoint"].partition(":")[2]: d["work_pool"]["name"] for d in spec["deployments"]}
    assert pools == {
        "experiment": "convbench-local",
        "fanout": "convbench-local",
        "train_unit": "convbench-gpu",
    }
    # Connection settings come from the workers' environment, never as parameters: the
    # Prefect UI shows parameters unredacted.
    from flows.fanout import fanout as dispatcher
    from flows.fanout import train_unit

    for flow in (dispatcher, train_unit):
        accepted = set(inspect.signature(flow.fn).parameters)
        assert not accepted & {"tracking_uri", "dvc_remote", "repository"}, flow.name


def test_a_fanout_needs_a_tracking_server_from_the_environment(tmp_path: Path) -> None:
    from flows.fanout import shared_tracking_uri

    local = load_settings(ROOT / "params.yaml", environ={}).env
    with pytest.raises(ValueError, match="set MLFLOW_TRACKING_URI in the workers' environment"):
        shared_tracking_uri(local)
    server = {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "CONVBENCH_REPOSITORY": "/srv/git/c"}
    env = load_settings(ROOT / "params.yaml", environ=server).env
    assert shared_tracking_uri(env) == "http://mlflow:5000"
    assert env.repository == "/srv/git/c" and env.selected_downloads is None


def _statuses(settings: Settings, root: Path) -> dict[str, str]:
    inputs = InputFolders(root / "raw", root / "weights")
    frame = gather(settings, root / "runs", inputs, selection(settings.env.selected_downloads))
    return dict(zip(frame["run"], frame["status"], strict=True))


def test_a_fanouts_comparison_says_not_selected_for_what_it_did_not_select(
    tmp_path: Path,
) -> None:
    order, _ = stage_order(ROOT)
    plain = load_settings(ROOT / "params.yaml", environ={})
    selected = select_stages(plain, order, datasets=["mnist"], variants=["cnn"])
    # What the dispatcher hands its compare stage, as the stage reads it.
    environ = selection_environment(selected)
    assert environ == {"CONVBENCH_SELECTED_DOWNLOADS": "download@mnist"}
    fanned = load_settings(ROOT / "params.yaml", environ=environ)
    statuses = _statuses(fanned, tmp_path)
    for run, status in statuses.items():
        if run.startswith("mnist-"):  # selected dataset: its data is what is missing here
            assert status == "not run: mnist data unavailable", run
        else:
            assert status == "not run: not selected", run
    assert {"cifar10-cnn", "cats_and_dogs-vgg16_features"} <= set(statuses)
    # Without a selection (make run, dvc repro) every run's missing input is named.
    unselected = _statuses(plain, tmp_path)
    assert unselected["cifar10-cnn"] == "not run: cifar10 data unavailable"
    assert unselected["cats_and_dogs-vgg16_features"] == ("not run: cats_and_dogs data unavailable")
    # A transfer run whose dataset was selected but whose weights were not: not selected.
    both = selection_environment(select_stages(plain, order, ["cats_and_dogs"], ["small_cnn"]))
    transfer = _statuses(load_settings(ROOT / "params.yaml", environ=both), tmp_path)
    assert transfer["cats_and_dogs-vgg16_finetune"] == "not run: not selected"
    assert transfer["cats_and_dogs-small_cnn"] == "not run: cats_and_dogs data unavailable"
