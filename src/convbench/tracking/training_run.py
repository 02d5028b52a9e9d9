"""The MLflow side of a training: its run, its epochs as they finish, its model and outputs.

One training is one MLflow run. Epoch metrics go to the checkpoint's journal first and
are sent from there (:func:`send_epochs`), so a tracking server that goes away costs
warnings, not epochs; :func:`finish_run` logs the model and the final metrics, then
writes the stage's outputs all together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.entities import Metric, Run
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient

from convbench.core.atomic import all_or_nothing, write_json
from convbench.core.redact import redact
from convbench.data.prepare import prepared_info
from convbench.models.saving import FOREST_TRUSTED_TYPES, is_keras, save_model
from convbench.settings import RunSpec, Settings, read_environment
from convbench.tracking import store as tracking
from convbench.tracking.datasets import log_dataset_inputs
from convbench.tracking.health import (
    TrackingUnavailableError,
    unreachable_reason,
    wait_reachable,
)
from convbench.training.checkpoints import Progress
from convbench.training.devices import describe_device
from convbench.training.outputs import (
    CURVES,
    PREVIEW,
    count_params,
    stage_history,
    time_metrics,
    trainable_params,
)
from convbench.training.results import TrainResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trained:
    """A finished training, as the stage hands it over to be recorded."""

    spec: RunSpec
    dataset_sha256: str
    model: Any
    result: TrainResult
    train_images: int
    sample: np.ndarray  # a few real (already scaled) inputs: the model's signature
    metrics: dict[str, float] = field(default_factory=dict)  # more metrics (MLflow too)
    details: dict[str, Any] = field(default_factory=dict)  # metrics.json only
    preview: Callable[[Path], None] | None = None  # draws the input preview


@contextmanager
def tracked_run(
    settings: Settings,
    spec: RunSpec,
    dataset_sha256: str,
    params: dict[str, Any],
    progress: Progress | None = None,
    *,
    inputs_dir: Path,
) -> Iterator[Run]:
    """The MLflow run of a training: tags that link it to git and DVC, its params, and
    its data (the train and validation splits of ``inputs_dir``, as dataset inputs).

    A training resumed from a checkpoint continues the MLflow run the killed process
    started (its epoch metrics are already there); if the store no longer has that run,
    a new one is started and tagged with the old run's id.
    """
    device = describe_device()
    tags = tracking.base_tags(settings, f"train@{spec.key}", dataset_sha256)
    tags |= {
        "convbench.dataset": spec.dataset,
        "convbench.variant": spec.variant,
        "convbench.run": spec.key,
        "convbench.runner": settings.env.runner,
        **{f"convbench.{k}": v for k, v in device.items()},
    }
    resumed = progress is not None and progress.resumes > 0
    if resumed:
        tags |= {
            "convbench.resumes": str(progress.resumes),
            "convbench.resumed_after_epoch": str(progress.epochs_done),
        }
    experiment = tracking.experiment_name(spec.dataset)
    run_id = progress.mlflow_run_id if resumed else None
    with tracking.start_run(
        settings, experiment, spec.key, tags, run_id=run_id, if_missing="new"
    ) as active:
        if progress is not None:
            if progress.mlflow_run_id != active.info.run_id:
                progress.logged_epochs = 0  # a new run has none of the earlier epochs
            progress.mlflow_run_id = active.info.run_id
        tracking.log_params_kept(
            tracking.flatten({**params, "seed": spec.seed, "profile": spec.profile})
        )
        log_training_data(settings, spec, dataset_sha256, inputs_dir)
        log.info("training %s (%s on %s) on %s", spec.key, spec.variant, spec.dataset, device)
        yield active


def log_training_data(
    settings: Settings, spec: RunSpec, dataset_sha256: str, inputs_dir: Path
) -> None:
    """The train and validation splits of ``inputs_dir`` as the active run's dataset inputs."""
    info = prepared_info(inputs_dir)
    if info["sha256"] != dataset_sha256:
        raise ValueError(
            f"{spec.key}: {inputs_dir} holds dataset {info['sha256']}, not the "
            f"{dataset_sha256} the run is tagged with"
        )
    rows = {split: int(info["splits"][split]["count"]) for split in ("train", "validation")}
    log_dataset_inputs(spec.dataset, dataset_sha256, inputs_dir, rows, settings.env.project_root)


def send_epochs(progress: Progress, *, patient: bool) -> None:
    """Send the epochs MLflow has not acknowledged, each at its own step and time.

    After each epoch (``patient=False``) a tracking server that is down costs one quick
    health check and a warning: training goes on, the epochs wait in the checkpoint's
    journal. At the end (``patient=True``) they must arrive: the server is waited for
    (CONVBENCH_TRACKING_PATIENCE seconds: a restart on a team's worker), then one still
    down raises TrackingUnavailableError, and the checkpoint keeps the finished training
    for a rerun.
    """
    if progress.logged_epochs >= progress.epochs_done or progress.mlflow_run_id is None:
        return
    uri = mlflow.get_tracking_uri()
    reason = unreachable_reason(uri)
    patience = read_environment().tracking_patience if reason and patient else 0.0
    if patience > 0:
        log.warning("MLflow %s not reachable (%s): waiting for it", redact(uri), reason)
        reason = wait_reachable(uri, patience)
    if reason is not None:
        shown = redact(uri)
        if patient:
            raise TrackingUnavailableError(
                f"MLflow tracking server {shown} stopped answering ({reason}): training "
                f"finished ({progress.epochs_done} epochs) and is kept in its checkpoint, "
                f"but epochs {progress.logged_epochs + 1}-{progress.epochs_done}, the model "
                "and the outputs are not recorded. Run the stage again once the server "
                "answers: it resumes after the last epoch and sends them."
            )
        log.warning(
            "MLflow %s not reachable (%s): epoch %d kept in the checkpoint, sent later",
            shown,
            reason,
            progress.epochs_done,
        )
        return
    epochs = range(progress.logged_epochs, progress.epochs_done)
    metrics = [
        Metric(key, value, progress.epoch_timestamps_ms[epoch], epoch + 1)
        for epoch in epochs
        for key, value in progress.epoch_metrics(epoch).items()
    ]
    try:
        # Re-sending an epoch is harmless: MLflow keeps one copy of an identical point.
        MlflowClient().log_batch(progress.mlflow_run_id, metrics=metrics)
    except Exception as error:
        if patient:
            raise
        log.warning("could not send epoch metrics to MLflow (%s); sent later", error)
        return
    progress.logged_epochs = progress.epochs_done


def keras_requirements() -> list[str]:
    """Keras and the backend the model was trained under, pinned as installed."""
    from importlib.metadata import PackageNotFoundError, version

    import keras

    backend = keras.backend.backend()
    pins = [f"keras=={keras.__version__}"]
    # The package a server installs is the backend's own name; here it may come as the
    # CPU-only distribution of the same version.
    for distribution in {"tensorflow": ("tensorflow", "tensorflow-cpu")}.get(backend, (backend,)):
        try:
            return [*pins, f"{backend}=={version(distribution)}"]
        except PackageNotFoundError:
            continue
    return pins


def log_model(model: Any, sample: np.ndarray) -> ModelInfo:
    """Log the model with a signature inferred from a few real (already scaled) inputs."""
    if is_keras(model):
        signature = infer_signature(sample, model.predict(sample, verbose=0))
        # Explicit requirements: inferring them re-imports the model in a subprocess (slow).
        return mlflow.keras.log_model(
            model,
            name="model",
            signature=signature,
            pip_requirements=keras_requirements(),
            save_exported_model=False,  # the .keras file; an export would need TensorFlow
        )
    import sklearn

    x = sample.reshape(len(sample), -1)
    return mlflow.sklearn.log_model(
        model,
        name="model",
        signature=infer_signature(x, model.predict(x)),
        pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
        skops_trusted_types=FOREST_TRUSTED_TYPES,
    )


def finish_run(
    trained: Trained, active: Run, runner: str, model_dir: Path, out_dir: Path
) -> dict[str, Any]:
    """Log the model and its metrics; write model, metrics.json, history and plots.

    The outputs replace the previous ones together, and only once every one is written.
    """
    spec, model = trained.spec, trained.model
    metrics = {**time_metrics(trained.result, trained.train_images), **trained.metrics}
    trainable = trainable_params(model)
    if trainable is not None:
        metrics["trainable_parameters"] = trainable
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
    params = count_params(model)
    if params is not None:
        mlflow.log_metric("parameters", params)
    logged = log_model(model, trained.sample)
    summary = {
        "run": spec.key,
        "dataset": spec.dataset,
        "variant": spec.variant,
        "parameters": params,
        **describe_device(),
        **metrics,
        "profile": spec.profile,
        "runner": runner,
        "run_fingerprint": spec.fingerprint,
        "train_images": trained.train_images,
        "dataset_sha256": trained.dataset_sha256,
        "mlflow_run_id": active.info.run_id,
        "mlflow_experiment_id": active.info.experiment_id,
        "mlflow_model_uri": logged.model_uri,  # what the registry registers
        **trained.details,
    }
    with all_or_nothing() as outputs:
        save_model(model, outputs.folder(model_dir))
        stage_history(outputs, trained.result, spec.key, out_dir)
        if trained.preview is not None:
            trained.preview(outputs.file(out_dir / PREVIEW))
        write_json(outputs.file(out_dir / "metrics.json"), summary)
    for name in (CURVES, PREVIEW):
        if (out_dir / name).is_file():
            mlflow.log_artifact(str(out_dir / name))
    return summary
