"""End to end on the real files with the `ci` profile: `dvc repro` and the flow.

These copy the project into a temporary git repository, point CONVBENCH_MIRROR at the
shared dataset mirror (MNIST and cats_and_dogs_filtered.zip) and run the real tools;
they skip when the mirror is absent. CIFAR-10, the full Kaggle set and the VGG16
weights are not in the mirror: their stages must say so, and nothing else may suffer.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import needs_mirror
from tests.project import dvc, make_workspace, run, task_spans, task_states

pytestmark = [needs_mirror, pytest.mark.slow]
RAN = re.compile(r"Running stage '([^']+)'")


# Everything the mirror can feed; CIFAR-10, the Kaggle set and VGG16 weights it cannot.
AVAILABLE = ("evaluate@mnist-*", "evaluate@cats_and_dogs-*")


def repro_available(workspace: Path, env: dict[str, str]) -> str:
    """`dvc repro` of every stage the mirror can feed, then the comparison."""
    ran = dvc(workspace, env, "repro", "--glob", *AVAILABLE)
    return ran + dvc(workspace, env, "repro", "--single-item", "compare")


def test_dvc_repro_ci_profile(tmp_path: Path) -> None:
    workspace, env = make_workspace(tmp_path)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    available = [k for k, r in params["runs"].items() if r["dataset"] in ("mnist", "cats_and_dogs")]

    first = repro_available(workspace, env)
    assert set(RAN.findall(first)) >= {f"train@{key}" for key in available}
    assert (workspace / "dvc.lock").exists()
    table = pd.read_csv(workspace / "reports" / "compare" / "comparison.csv").set_index("run")
    assert (table.loc[available, "status"] == "ok").all()
    # One epoch: above chance. Not the batch-norm variants: their moving statistics
    # have not settled after the ci profile's 8 MNIST steps.
    settled = [k for k in available if not params["runs"][k]["variant"].endswith("_bn")]
    assert (table.loc[settled, "test_accuracy"] > 0.3).all(), table.loc[available, "test_accuracy"]
    assert table.loc["cats_and_dogs-small_cnn", "image_size"] == "64x64"
    assert table.loc["cifar10-deep_cnn", "status"] == "not run: cifar10 data unavailable"
    assert table.loc["cats_and_dogs-vgg16_finetune", "status"] == (
        "not run: ImageNet weights unavailable"
    )
    report = (workspace / "reports" / "compare" / "comparison.md").read_text()
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 not downloaded" in report
    summary = json.loads((workspace / "reports/validation/mnist/summary.json").read_text())
    assert summary["success"] and summary["rows"] == 70_000
    cats = json.loads((workspace / "reports/validation/cats_and_dogs/summary.json").read_text())
    assert cats["success"] and cats["files"]["accepted"] == 3000
    assert cats["ignored"] == [
        {"file": "cats_and_dogs_filtered/vectorize.py", "reason": "not in a class folder"}
    ]
    shards = list((workspace / "data" / "prepared" / "cats_and_dogs").glob("*.tfrecord"))
    assert 3 <= len(shards) <= 6  # a handful of files for DVC, not thousands

    client = MlflowClient(f"sqlite:///{workspace}/mlflow.db")
    for dataset in ("mnist", "cats_and_dogs"):
        experiment = client.get_experiment_by_name(f"convbench/{dataset}")
        tracked = client.search_runs([experiment.experiment_id])
        assert {r.info.run_name for r in tracked} == {
            k for k in available if params["runs"][k]["dataset"] == dataset
        }
        assert all("test_accuracy" in r.data.metrics for r in tracked)
        assert all(r.data.tags["dvc_stage"].startswith("train@") for r in tracked)
    cnn = client.search_runs(
        [client.get_experiment_by_name("convbench/cats_and_dogs").experiment_id],
        "tags.`convbench.run` = 'cats_and_dogs-small_cnn'",
    )[0]
    assert "input_preview.png" in {a.path for a in client.list_artifacts(cnn.info.run_id)}

    assert RAN.findall(repro_available(workspace, env)) == []

    # A DVC experiment with an override reruns that run alone, and its MLflow run says which
    # experiment and commit it belongs to; `dvc exp show` lists it.
    commit = run(["git", "rev-parse", "HEAD"], workspace, env).strip()
    override = ("-S", "runs.mnist-mlp.epochs=19")
    exp = dvc(workspace, env, "exp", "run", "-n", "mlp-19", *override, "evaluate@mnist-mlp")
    assert set(RAN.findall(exp)) == {"train@mnist-mlp", "evaluate@mnist-mlp"}, exp[-3000:]
    shown = json.loads(dvc(workspace, env, "exp", "show", "--json"))
    assert "mlp-19" in {e["name"] for b in shown for e in b.get("experiments") or []}, shown
    mlp = client.search_runs(
        [client.get_experiment_by_name("convbench/mnist").experiment_id],
        "tags.dvc_exp_name = 'mlp-19'",
    )
    assert len(mlp) == 1 and mlp[0].data.tags["convbench.run"] == "mnist-mlp"
    assert mlp[0].data.tags["git_commit"] == commit
    assert mlp[0].data.params["epochs"] == "19"
    assert RAN.findall(repro_available(workspace, env)) == ["compare"]

    # Reproducible on CPU: forced again, same params and seed, the same test metrics.
    repeated = ("cats_and_dogs-small_cnn",)  # augmented, shuffled, dropout: all seeded
    before = {key: scores(workspace, key) for key in repeated}
    stages = [f"{name}@{key}" for key in repeated for name in ("train", "evaluate")]
    forced = dvc(workspace, env, "repro", "--force", "--single-item", *stages)
    assert sorted(RAN.findall(forced)) == sorted(stages)
    assert {key: scores(workspace, key) for key in repeated} == before

    # A source the mirror lacks stops its own stage, naming the file and how to provide it.
    missing = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "download@cifar10"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0
    output = missing.stdout + missing.stderr
    assert "could not fetch cifar-10-python.tar.gz" in output
    assert "set CONVBENCH_MIRROR" in output and "exited with 69" in output


def scores(workspace: Path, key: str) -> dict:
    """A run's test metrics, without its speed."""
    metrics = json.loads((workspace / "results/runs" / key / "eval/metrics.json").read_text())
    metrics.pop("inference_images_per_second")
    return metrics


def test_prefect_flow_runs_the_stages_as_tasks(tmp_path: Path) -> None:
    workspace, env = make_workspace(tmp_path, profile="quick")
    flow = [
        sys.executable,
        "-m",
        "flows.experiment",
        "--profile",
        "ci",
        "--variant",
        "cnn",
        "--variant",
        "random_forest",
        "--variant",
        "vgg16_features",
        "--project-dir",
        str(workspace),
    ]
    output = run(flow, workspace, env)
    assert "profile: ci" in (workspace / "params.yaml").read_text()  # the override applied
    table = pd.read_csv(workspace / "reports" / "compare" / "comparison.csv").set_index("run")
    assert table.loc["mnist-cnn", "status"] == "ok"
    assert table.loc["mnist-mlp", "status"] == "not run"  # not selected
    # The VGG16 weights are not in the mirror: their stages are skipped, the flow goes on.
    assert table.loc["cats_and_dogs-vgg16_features", "status"] == (
        "not run: ImageNet weights unavailable"
    )
    assert "download_weights@vgg16_imagenet: input not available here" in output
    assert "extract_features@cats_and_dogs-vgg16 skipped" in output

    states = task_states(env)
    expected = {
        "download@mnist",
        "validate@mnist",
        "prepare@mnist",
        "train@mnist-cnn",
        "evaluate@mnist-cnn",
        "train@mnist-random_forest",
        "download@cats_and_dogs",
        "prepare@cats_and_dogs",
        "download_weights@vgg16_imagenet",
        "compare",
    }
    assert expected <= set(states) and "train@mnist-mlp" not in states
    assert "extract_features@cats_and_dogs-vgg16" not in states  # skipped, never started
    assert all(state == "COMPLETED" for state in states.values()), states
    # Independent stages ran side by side (two at once on two cores); the no-op below
    # shows DVC's lock file recorded every one of them.
    spans = task_spans(env)
    side_by_side = [
        (a, b)
        for a, b in itertools.combinations(sorted(spans), 2)
        if "@" in a and "@" in b and spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]
    ]
    assert side_by_side, spans

    # Nothing changed: no stage, no Prefect server, and the weights known to be missing
    # (the mirror is as it was) are not looked for again; the run says so.
    noop = run(flow, workspace, env)
    assert RAN.findall(noop) == [] and "Starting temporary server" not in noop
    assert "Nothing changed" in noop
    assert "download_weights@vgg16_imagenet, holding back 5 stages" in noop

    again = run([*flow, "--retry-unavailable"], workspace, env)
    # Only the missing weights are looked for again; everything else is up to date.
    assert RAN.findall(again) == ["download_weights@vgg16_imagenet"]
    assert again.count("is up to date") >= len(expected) - 1
