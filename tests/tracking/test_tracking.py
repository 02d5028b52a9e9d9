"""The tracking store: experiments made through a server and read without it."""

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from convbench.settings import Settings
from convbench.tracking import health
from convbench.tracking import store as tracking


def test_a_local_store_refuses_an_experiment_whose_artifacts_need_a_server(
    ci_settings: Settings, tmp_path: Path
) -> None:
    env = ci_settings.env
    first = tracking.ensure_experiment("convbench/mnist", env)
    assert tracking.ensure_experiment("convbench/mnist", env) == first  # found, not remade
    location = MlflowClient(env.tracking_uri).get_experiment(first).artifact_location
    assert location == (tmp_path / "mlartifacts" / "convbench-mnist").as_uri()
    # What `mlflow server --serve-artifacts` would have written for a new experiment.
    MlflowClient(env.tracking_uri).create_experiment(
        "convbench/cifar10", artifact_location="mlflow-artifacts:/7"
    )
    with pytest.raises(health.TrackingStoreError, match="set MLFLOW_TRACKING_URI to that server"):
        tracking.ensure_experiment("convbench/cifar10", env)


def test_experiments_are_marked_model_training_so_the_ui_opens_their_runs(
    ci_settings: Settings,
) -> None:
    env = ci_settings.env
    client = MlflowClient(env.tracking_uri)
    made = tracking.ensure_experiment("convbench/mnist", env)
    assert client.get_experiment(made).tags[tracking.EXPERIMENT_KIND_TAG] == (
        "custom_model_development"
    )
    # One made before convbench tagged them (or with the kind the UI guessed) is marked too.
    older = client.create_experiment("convbench/cifar10", tags={"mlflow.experimentKind": "x"})
    assert tracking.ensure_experiment("convbench/cifar10", env) == older
    assert client.get_experiment(older).tags[tracking.EXPERIMENT_KIND_TAG] == (
        "custom_model_development"
    )
