"""A new dataset is configuration: declared only in params.yaml, it goes through every
stage of `make run` (the flow it calls) with no change under src/.

The test writes four idx files under MNIST's own names into a mirror folder of its own
(``<mirror>/digits3/``), beside different bytes under the same names at the mirror's
top, so the dataset's own folder must be the one read. Its images are 24x24 with three
classes: the variants take their input shape and class count from the dataset.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.data.test_idx_prepare import write_idx
from tests.project import make_workspace, run

pytestmark = pytest.mark.slow

NAME = "digits3"
CLASSES = ["left", "middle", "right"]
FILES = {
    ("train", "images"): "train-images-idx3-ubyte.gz",
    ("train", "labels"): "train-labels-idx1-ubyte.gz",
    ("test", "images"): "t10k-images-idx3-ubyte.gz",
    ("test", "labels"): "t10k-labels-idx1-ubyte.gz",
}
VARIANTS = ("mlp", "cnn", "lenet5", "random_forest")


def bars(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """24x24 noise with a bright bar at the left, middle or right: the label."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    images = rng.integers(0, 60, size=(count, 24, 24), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, 3:21, 3 + 7 * label : 7 + 7 * label] = 255
    return images, labels.astype(np.uint8)


def idx_mirror(mirror: Path) -> list[dict]:
    """The dataset's four files in ``mirror/digits3``; their declarations for params."""
    folder = mirror / NAME
    folder.mkdir(parents=True)
    arrays = {"train": bars(600, 0), "test": bars(150, 1)}
    declared = []
    for (split, holds), name in FILES.items():
        images, labels = arrays[split]
        write_idx(folder / name, images if holds == "images" else labels)
        sha = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        (mirror / name).write_bytes(b"another dataset's file of the same name")
        declared.append({"name": name, "split": split, "holds": holds, "sha256": sha})
    return declared


def declare(workspace: Path, files: list[dict]) -> None:
    """The params.yaml entries a user writes: the dataset and one run per variant."""
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["datasets"][NAME] = {
        "format": "idx",
        "source": {"description": "three bar positions", "files": files},
        "classes": CLASSES,
        "image": {"height": 24, "width": 24, "channels": 1},
        "split_counts": {"train": 600, "test": 150},
        "validation_fraction": 0.1,
    }
    for variant in VARIANTS:
        run_entry: dict = {"dataset": NAME, "variant": variant}
        if variant == "random_forest":
            run_entry |= {"n_estimators": 20}
        else:
            run_entry |= {"epochs": 3, "batch_size": 32}
        params["runs"][f"{NAME}-{variant}"] = run_entry
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_a_dataset_declared_in_params_goes_through_every_stage(tmp_path: Path) -> None:
    workspace, env = make_workspace(tmp_path)
    mirror = tmp_path / "mirror"
    declare(workspace, idx_mirror(mirror))
    env = env | {"CONVBENCH_MIRROR": str(mirror)}
    flow = [sys.executable, "-m", "flows.experiment", "--profile", "ci", "--dataset", NAME]
    run([*flow, "--project-dir", str(workspace)], workspace, env)

    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", "src"],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert changed == ""  # configuration only
    table = pd.read_csv(workspace / "reports/compare/comparison.csv").set_index("run")
    ours = [f"{NAME}-{variant}" for variant in VARIANTS]
    assert (table.loc[ours, "status"] == "ok").all(), table.loc[ours]
    # Three classes learnt from bars: far above chance (1/3) even at the ci budget.
    assert (table.loc[ours, "test_accuracy"] > 0.6).all(), table.loc[ours, "test_accuracy"]
    assert (table.loc["mnist-cnn", "status"]).startswith("not run")

    client = MlflowClient(f"sqlite:///{workspace}/mlflow.db")
    experiment = client.get_experiment_by_name(f"convbench/{NAME}")
    tracked = client.search_runs([experiment.experiment_id])
    trained = {
        r.info.run_name: r for r in tracked if r.data.tags.get("dvc_stage", "").startswith("train@")
    }
    assert set(trained) == set(ours)
    for tracked_run in trained.values():
        inputs = tracked_run.inputs.dataset_inputs
        assert {i.dataset.name for i in inputs} == {NAME}, inputs
        contexts = {t.value for i in inputs for t in i.tags if t.key == "mlflow.data.context"}
        assert contexts == {"training", "validation", "test"}, inputs
    versions = client.search_model_versions(f"name = 'convbench-{NAME}'")
    assert len(versions) == 1 and versions[0].tags.get("convbench.run") in ours
