"""A folder of photos, from `convbench dataset add` to a prediction, as a user would go.

The folder (drawn with Pillow) holds two classes, a text file named .jpg, a truncated
JPEG and one picture filed under both classes. Validation quarantines the bad files with
their reasons and names the label conflict; above the threshold (0) the stage fails, and
once the user allows one conflict the remaining images are trained on, compared,
registered and predicted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.data.local_project import pets_folder
from tests.project import make_workspace, run, set_param

pytestmark = pytest.mark.slow

NAME = "pets"
FOLDER = f"data/external/{NAME}"
PER_CLASS = 30


def convbench(workspace: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convbench.cli", *args],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
    )


def test_a_folder_of_photos_is_added_trained_on_and_predicted(tmp_path: Path) -> None:
    workspace, env = make_workspace(tmp_path)
    folder = pets_folder(workspace, FOLDER, good=PER_CLASS)
    added = convbench(workspace, env, "dataset", "add", NAME, FOLDER)
    assert added.returncode == 0, added.stdout + added.stderr
    assert "cats" in added.stdout and "Next:" in added.stdout

    # Validation alone: the bad files quarantined with their reasons, the conflict named.
    failed = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", f"validate@{NAME}"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
    )
    assert failed.returncode != 0
    assert "cats/dup.jpg" in failed.stdout + failed.stderr
    assert "dogs/dog.0.jpg" in failed.stdout + failed.stderr

    # The user allows the one conflict (its files stay quarantined) and, on 63 files, the
    # four bad ones (6 %, above the default 2 %).
    set_param(workspace, f"datasets.{NAME}.checks.max_label_conflicts=1")
    set_param(workspace, f"datasets.{NAME}.checks.max_bad_fraction=0.1")
    flow = [sys.executable, "-m", "flows.experiment", "--profile", "ci", "--dataset", NAME]
    run([*flow, "--project-dir", str(workspace)], workspace, env)

    summary = json.loads((workspace / f"reports/validation/{NAME}/summary.json").read_text())
    assert summary["success"]
    reasons = {row["file"]: row["reason"] for row in summary["quarantined"]}
    bad = ("cats/notes.jpg", "dogs/truncated.jpg", "cats/dup.jpg", "dogs/dog.0.jpg")
    found = {name: [r for f, r in reasons.items() if f.endswith(name)] for name in bad}
    assert all(len(r) == 1 for r in found.values()), reasons
    assert "dogs/dog.0.jpg" in found["cats/dup.jpg"][0]
    table = pd.read_csv(workspace / "reports/compare/comparison.csv").set_index("run")
    ours = table[table["dataset"] == NAME]
    assert len(ours) >= 1 and (ours["status"] == "ok").all(), ours

    env = env | {"MLFLOW_TRACKING_URI": f"sqlite:///{workspace}/mlflow.db"}
    image = folder / "dogs" / "dog.5.jpg"
    answer = convbench(workspace, env, "predict", "--dataset", NAME, str(image))
    assert answer.returncode == 0, answer.stdout + answer.stderr
    lines = answer.stdout.strip().splitlines()
    assert lines[-1].startswith(f"{image}: ") and ("cats" in lines[-1] or "dogs" in lines[-1])
