"""Shared fixtures: tiny data made here, and the real-MNIST mirror when it is present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from convbench.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("CONVBENCH_TEST_MIRROR", ROOT.parent / "shared" / "datasets"))

needs_mirror = pytest.mark.skipif(
    not (SHARED_DATASETS / "train-images-idx3-ubyte.gz").exists(),
    reason=f"the dataset mirror {SHARED_DATASETS} is absent",
)


@pytest.fixture
def ci_settings(tmp_path: Path) -> Settings:
    """The project's params with the ci profile, tracking into a store under tmp_path."""
    settings = load_settings(
        ROOT / "params.yaml", environ={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    )
    params = settings.params.model_copy(update={"profile": "ci"})
    env = settings.env.model_copy(update={"project_root": tmp_path})
    return settings.model_copy(update={"params": params, "env": env})


def tiny_digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """28x28 uint8 'digits': a bright bar whose position is the label, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = rng.integers(0, 40, size=(count, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, 4:24, 2 + 2 * label : 4 + 2 * label] = 255
    return images, labels.astype(np.int64)
