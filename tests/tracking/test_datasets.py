"""A run's data as MLflow dataset inputs, in a real (temporary) MLflow store."""

import json
from pathlib import Path

import pytest
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from convbench.data.prepare import prepared_info
from convbench.settings import Settings
from convbench.stages.evaluate import evaluate_run
from convbench.stages.train import train_run
from convbench.tracking import store as tracking
from convbench.tracking import training_run
from convbench.tracking.datasets import SHA256_TAG, SPLIT_TAG, log_dataset_inputs
from convbench.tracking.health import TrackingStoreError
from tests.conftest import prepared_tiny_digits

FOREST = "mnist-random_forest"


def _inputs(settings: Settings, run_id: str) -> dict[str, dict]:
    """The run's dataset inputs by context, as MLflow gives them back."""
    run = MlflowClient(settings.env.tracking_uri).get_run(run_id)
    found: dict[str, dict] = {}
    for item in run.inputs.dataset_inputs:
        tags = {tag.key: tag.value for tag in item.tags}
        context = tags[MLFLOW_DATASET_CONTEXT]
        assert context not in found, f"two {context} inputs"
        found[context] = {
            "name": item.dataset.name,
            "digest": item.dataset.digest,
            "source_type": item.dataset.source_type,
            "source": json.loads(item.dataset.source)["uri"],
            "rows": json.loads(item.dataset.profile)["num_rows"],
            "split": tags[SPLIT_TAG],
            "sha256": tags[SHA256_TAG],
        }
    return found


def _expected(sha256: str, split: str, rows: int) -> dict:
    return {
        "name": "mnist",
        "digest": f"{sha256[:12]}-{split}",
        "source_type": "local",
        "source": "data/prepared/mnist",
        "rows": rows,
        "split": split,
        "sha256": sha256,
    }


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    return prepared_tiny_digits(
        tmp_path / "data" / "prepared" / "mnist", train=30, validation=10, test=20
    )


def test_a_training_run_records_its_train_and_validation_splits(
    ci_settings: Settings, prepared: Path
) -> None:
    sha256 = prepared_info(prepared)["sha256"]
    spec = ci_settings.run_spec(FOREST)
    with training_run.tracked_run(ci_settings, spec, sha256, {}, inputs_dir=prepared) as run:
        pass
    expected = {
        "training": _expected(sha256, "train", 30),
        "validation": _expected(sha256, "validation", 10),
    }
    assert _inputs(ci_settings, run.info.run_id) == expected
    # A resumed training logs them again into the same run: nothing is added.
    experiment = tracking.experiment_name("mnist")
    with tracking.start_run(ci_settings, experiment, spec.key, {}, run_id=run.info.run_id):
        training_run.log_training_data(ci_settings, spec, sha256, prepared)
    assert _inputs(ci_settings, run.info.run_id) == expected
    tags = MlflowClient(ci_settings.env.tracking_uri).get_experiment(run.info.experiment_id).tags
    assert tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"

    mismatched = training_run.tracked_run(ci_settings, spec, "0000", {}, inputs_dir=prepared)
    with pytest.raises(ValueError, match="not the 0000 the run is tagged with"), mismatched:
        pass


def test_the_evaluation_adds_the_test_split_to_the_training_run(
    ci_settings: Settings, prepared: Path, tmp_path: Path
) -> None:
    runs, model = tmp_path / "runs" / FOREST, tmp_path / "models" / FOREST
    summary = train_run(ci_settings, FOREST, prepared, model, runs / "train", 0)
    evaluate_run(ci_settings, FOREST, prepared, model, runs / "train", runs / "eval")
    evaluate_run(ci_settings, FOREST, prepared, model, runs / "train", runs / "eval")  # again
    inputs = _inputs(ci_settings, summary["mlflow_run_id"])
    assert inputs["test"] == _expected(summary["dataset_sha256"], "test", 20)


def test_an_input_mlflow_refuses_fails_the_run_saying_why(
    ci_settings: Settings, prepared: Path
) -> None:
    sha256 = prepared_info(prepared)["sha256"]
    root = ci_settings.env.project_root
    experiment = tracking.experiment_name("mnist")
    with (
        pytest.raises(TrackingStoreError, match="MLflow refused the dataset inputs") as error,
        tracking.start_run(ci_settings, experiment, "refused", {}) as run,
    ):
        log_dataset_inputs("m" * 600, sha256, prepared, {"train": 30}, root)
    assert "from data/prepared/mnist" in str(error.value) and "name" in str(error.value)
    ended = MlflowClient(ci_settings.env.tracking_uri).get_run(run.info.run_id)
    assert ended.info.status == RunStatus.to_string(RunStatus.FAILED)
    assert "MLflow refused the dataset inputs" in ended.data.tags[tracking.FAILURE_TAG]
