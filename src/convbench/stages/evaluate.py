"""DVC stages ``evaluate``, ``evaluate_head``, ``evaluate_finetune``: one run scored on the
test split, its results written and logged into the run's own MLflow run (the test split
as one of its dataset inputs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from convbench.core.atomic import all_or_nothing, read_json, write_json, write_text
from convbench.core.plots import confusion_matrix_png
from convbench.data.prepare import prepared_info
from convbench.evaluation.scoring import score
from convbench.models.saving import load_model
from convbench.models.variants import VARIANTS
from convbench.settings import Settings
from convbench.stages.entry import stage_command
from convbench.tracking import store as tracking
from convbench.tracking.datasets import log_dataset_inputs
from convbench.tracking.health import checked_up_front
from convbench.training.devices import configure_runtime


def evaluate_run(
    settings: Settings,
    run: str,
    inputs_dir: Path,
    model_dir: Path,
    train_dir: Path,
    out_dir: Path,
) -> dict[str, Any]:
    """Score run ``run``'s model on the test split of ``inputs_dir``; write and log it."""
    settings = checked_up_front(settings)
    spec = settings.run_spec(run)
    info = prepared_info(inputs_dir)
    classes = info["classes"]
    trained = read_json(train_dir / "metrics.json")
    if spec.family != "sklearn":  # a forest's scoring needs no Keras (nor its backend)
        # Where to run and GPU memory growth; a loaded model keeps the dtypes it trained with.
        configure_runtime(settings.params.runtime)
    result = score(load_model(model_dir), inputs_dir, spec.image_size, spec.normalize, len(classes))
    per_class_frame = pd.DataFrame(
        {"class": classes, "accuracy": result.per_class, "support": result.matrix.sum(axis=1)}
    )
    names = np.asarray(classes)
    predictions = pd.DataFrame(
        {"actual": names[result.labels], "predicted": names[result.predicted]}
    )
    png = out_dir / "confusion_matrix.png"
    accuracy = result.metrics["test_accuracy"]
    per_class = dict(zip(map(str, classes), result.per_class.tolist(), strict=True))
    # All four replace the previous ones together, or none does.
    with all_or_nothing() as outputs:
        write_text(outputs.file(out_dir / "per_class.csv"), per_class_frame.to_csv(index=False))
        write_text(outputs.file(out_dir / "predictions.csv"), predictions.to_csv(index=False))
        title = f"{run}: test accuracy {accuracy:.4f}"
        confusion_matrix_png(result.matrix, classes, title, outputs.file(png))
        write_json(
            outputs.file(out_dir / "metrics.json"),
            {"run": run, **result.metrics, "per_class_accuracy": per_class},
        )

    with tracking.start_run(
        settings,
        tracking.experiment_name(spec.dataset),
        run,
        tags={"dvc_evaluate_stage": settings.env.dvc_stage or f"evaluate@{run}"},
        run_id=trained["mlflow_run_id"],
    ):
        log_dataset_inputs(
            spec.dataset,
            info["sha256"],
            inputs_dir,
            {"test": len(result.labels)},
            settings.env.project_root,
        )
        mlflow.log_metrics(result.metrics)
        mlflow.log_metrics(
            {
                f"test_accuracy_class_{c}": float(a)
                for c, a in zip(classes, result.per_class, strict=True)
            }
        )
        mlflow.log_artifact(str(png))
        mlflow.log_artifact(str(out_dir / "per_class.csv"))
    return result.metrics


main = stage_command(evaluate_run, VARIANTS)
