"""The MLflow model registry: each dataset's best model, and a gate before the alias.

After the comparison, the best current run of a dataset (highest test accuracy among
the runs whose model takes images) is registered as model ``convbench-<dataset>``. It
takes the alias (``champion``) only when it reaches the dataset's minimum test accuracy
and beats the current champion on the same test set: the champion is scored again on
the candidate's test split, so a champion from another profile or an older split is
compared fairly. Every decision, promoted or not, is written down with its reason, on
the model version in MLflow and in the stage's output.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from convbench.core.atomic import write_json
from convbench.data.prepare import prepared_info
from convbench.evaluation.scoring import predict_test
from convbench.models.saving import refusing_unsafe, register_custom_layers
from convbench.settings import RunSpec, Settings
from convbench.tracking.health import reachable_store

log = logging.getLogger(__name__)

INPUT_TAG_PREFIX = "convbench.input."


def model_name(dataset: str) -> str:
    return f"convbench-{dataset}"


@dataclass(frozen=True)
class Decision:
    """What happened to one dataset's best run."""

    dataset: str
    run: str | None
    test_accuracy: float | None
    version: str | None  # the registered version, when registered
    champion_before: str | None  # version that held the alias before
    champion_accuracy: float | None  # the old champion, scored on the same test set
    promoted: bool
    reason: str


@dataclass(frozen=True)
class ModelInput:
    """How a registered model wants its images: what `predict` must reproduce."""

    height: int
    width: int
    channels: int
    normalize: bool
    classes: list[str]
    flatten: bool  # a scikit-learn model takes flat pixel vectors

    def as_tags(self) -> dict[str, str]:
        return {f"{INPUT_TAG_PREFIX}{k}": json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> ModelInput:
        values = {
            k.removeprefix(INPUT_TAG_PREFIX): json.loads(v)
            for k, v in tags.items()
            if k.startswith(INPUT_TAG_PREFIX)
        }
        return cls(**values)


def model_input(spec: RunSpec, classes: list[Any]) -> ModelInput:
    height, width = spec.image_size
    return ModelInput(
        height=height,
        width=width,
        channels=spec.channels,
        normalize=spec.normalize,
        classes=[str(c) for c in classes],
        flatten=spec.family == "sklearn",
    )


def ranked_runs(settings: Settings, frame: pd.DataFrame, dataset: str) -> list[str]:
    """The dataset's current (status ok) image-model runs, best test accuracy first."""
    specs = settings.run_specs()
    rows = frame[(frame["status"] == "ok") & (frame["dataset"] == dataset)]
    rows = rows[[specs[run].takes_images for run in rows["run"]]]
    if rows.empty:  # (a mask of no rows selects no columns either)
        return []
    ranked = rows.assign(accuracy=rows["test_accuracy"].astype(float)).sort_values(
        ["accuracy", "run"], ascending=[False, True]
    )
    return [str(run) for run in ranked["run"]]


def in_store(client: MlflowClient, run_id: object) -> bool:
    """Whether this tracking store holds the run: results committed from another
    machine's runs name runs this store never saw."""
    if pd.isna(run_id):
        return False
    try:
        client.get_run(str(run_id))
    except MlflowException:
        return False
    return True


def register_version(
    client: MlflowClient, name: str, run_id: str, model_uri: str, tags: dict[str, str]
) -> ModelVersion:
    """The run's logged model as a version of ``name``; a run is registered once."""
    existing = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if existing:
        return existing[0]
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="convbench: the best image classifier of this dataset"
        )
    version = mlflow.register_model(model_uri, name, tags=tags)
    return client.get_model_version(name, version.version)


def champion(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def load_registered(uri: str, tags: dict[str, str]) -> Any:
    """A registered model through its own flavour: Keras in safe mode, a forest via skops."""
    if json.loads(tags.get(f"{INPUT_TAG_PREFIX}flatten", "false")):
        # skops, with the trusted types recorded when the model was logged: no pickle.
        return mlflow.sklearn.load_model(uri)
    # Said, not left to Keras' default: a model that would run code from the file is refused.
    register_custom_layers()
    with refusing_unsafe(uri):
        return mlflow.keras.load_model(uri, load_model_kwargs={"safe_mode": True})


def score_on_test(model: Any, inputs: ModelInput, prepared_dir: Path) -> float:
    """Test accuracy of a registered model on a prepared test split."""
    size = (inputs.height, inputs.width)
    proba, labels, _ = predict_test(model, prepared_dir, size, inputs.normalize)
    return float((proba.argmax(axis=1) == labels).mean())


def decide(settings: Settings, dataset: str, frame: pd.DataFrame, prepared_dir: Path) -> Decision:
    """Register the dataset's best run and move the alias where the gate allows."""
    gate = settings.params.registry
    ranked = ranked_runs(settings, frame, dataset)
    if not ranked:
        return Decision(dataset, None, None, None, None, None, False, "no current run")
    # A server that does not answer stops this at once (not after MLflow's retries).
    client = MlflowClient(tracking_uri=reachable_store(settings.env).tracking_uri)
    runs = frame.set_index("run")
    present = (key for key in ranked if in_store(client, runs.loc[key, "mlflow_run_id"]))
    key = next(present, None)  # the best run this store holds
    elsewhere = ranked if key is None else ranked[: ranked.index(key)]  # better, never seen here
    if elsewhere:
        log.warning(
            "%s: not in this tracking store, so not registered: %s (results from another "
            "store; `make run VARIANT=...` trains them here)",
            dataset,
            ", ".join(elsewhere),
        )
    if key is None:
        reason = f"no current run in this tracking store ({', '.join(elsewhere)} are not)"
        return Decision(dataset, None, None, None, None, None, False, reason)
    spec = settings.run_spec(key)
    row = runs.loc[key]
    accuracy = float(row["test_accuracy"])
    inputs = model_input(spec, prepared_info(prepared_dir)["classes"])
    minimum = gate.min_test_accuracy.get(dataset, 0.0)
    name = model_name(dataset)
    tags = {
        "convbench.run": key,
        "convbench.variant": spec.variant,
        "convbench.profile": settings.params.profile,
        "convbench.test_accuracy": f"{accuracy:.6f}",
        **inputs.as_tags(),
    }
    run_id = str(row["mlflow_run_id"])
    model_uri = row.get("mlflow_model_uri")
    if pd.isna(model_uri):  # trained before the logged model's URI was recorded
        model_uri = f"runs:/{run_id}/model"
    version = register_version(client, name, run_id, str(model_uri), tags)
    current = champion(client, name, gate.alias)
    held = None
    if accuracy < minimum:
        promoted, reason = False, f"test accuracy {accuracy:.4f} below the minimum {minimum}"
    elif current is None:
        promoted, reason = True, f"first {gate.alias}"
    elif current.version == version.version:
        promoted, reason = False, f"already {gate.alias}"
    else:
        held_model = load_registered(f"models:/{name}/{current.version}", current.tags)
        held = score_on_test(held_model, ModelInput.from_tags(current.tags), prepared_dir)
        promoted = accuracy > held
        verdict = "beats" if promoted else "does not beat"
        reason = (
            f"{accuracy:.4f} {verdict} {gate.alias} v{current.version} "
            f"({held:.4f} on the same test set)"
        )
    if elsewhere:
        reason += f"; better but not in this tracking store: {', '.join(elsewhere)}"
    if promoted:
        client.set_registered_model_alias(name, gate.alias, version.version)
    client.set_model_version_tag(name, version.version, "convbench.decision", reason)
    log.info("%s: %s v%s: %s", name, key, version.version, reason)
    return Decision(
        dataset,
        key,
        accuracy,
        version.version,
        current.version if current else None,
        held,
        promoted,
        reason,
    )


def write_decision(decision: Decision, path: Path) -> None:
    write_json(path, asdict(decision))
