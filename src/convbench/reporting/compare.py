"""Compare every run: one table (CSV, Markdown), bar charts, DVC metrics, an MLflow run.

Every configured run has a row. One without results says why (``missing``): its data
set or its pretrained weights are not available here (with how to provide them), a
fan-out did not select it, or it simply has not run yet; results left over from other
params are marked stale. Feature extraction is shown apart from the classifier's
training time (the decks' lesson), and training time per image lets CPU and GPU runs
be compared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from convbench.core.atomic import write_json, write_text
from convbench.core.hashing import fingerprint
from convbench.core.plots import bar_chart_png, stacked_bar_chart_png
from convbench.reporting.missing import NOT_RUN, InputFolders, Selection, not_run
from convbench.settings import Settings
from convbench.tracking import store as tracking
from convbench.tracking.health import checked_up_front

COLUMNS = {
    "run": "run",
    "dataset": "dataset",
    "variant": "variant",
    "status": "status",
    "test_accuracy": "test accuracy",
    "test_error": "test error",
    "feature_extraction_seconds": "feature extraction (s)",
    "training_seconds": "training time (s)",
    "seconds_per_epoch": "time per epoch (s)",
    "seconds_per_image": "training time per image (ms)",
    "epochs_run": "epochs",
    "train_images": "train images",
    "image_size": "image size",
    "parameters": "parameters",
    "trainable_parameters": "trained parameters",
    "inference_images_per_second": "inference (images/s)",
    "device": "device",
    "device_name": "device name",
    "profile": "profile",
}
_TRAINED = (
    "feature_extraction_seconds",
    "training_seconds",
    "seconds_per_epoch",
    "seconds_per_image",
    "epochs_run",
    "train_images",
    "parameters",
    "trainable_parameters",
    "device",
    "device_name",
    "profile",
)
# In comparison.csv (for the notes and the registry), not in the Markdown table.
HIDDEN = ("how_to_provide", "runner", "mlflow_run_id", "mlflow_model_uri", "dataset_sha256")


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def gather(
    settings: Settings,
    runs_dir: Path,
    inputs: InputFolders | None = None,
    selection: Selection | None = None,
) -> pd.DataFrame:
    """One row per configured run; a run with no results says why instead of vanishing.

    ``selection``: what a fan-out selected (None: everything, as ``make run`` reports).
    """
    inputs = inputs or InputFolders()
    rows = []
    for key, spec in settings.run_specs().items():
        trained = _read(runs_dir / key / "train" / "metrics.json")
        evaluated = _read(runs_dir / key / "eval" / "metrics.json")
        why = ""
        if not (trained and evaluated):
            status, why = not_run(settings, spec, inputs, selection)
        elif trained.get("run_fingerprint") != spec.fingerprint:
            # Left over from other params (another profile, say): shown, but not as current.
            status = "stale"
        else:
            status = "ok"
        row = {"run": key, "dataset": spec.dataset, "variant": spec.variant, "status": status}
        row |= {k: trained.get(k) for k in _TRAINED}
        if spec.family == "sklearn":
            row |= {"epochs_run": None, "seconds_per_epoch": None}  # a forest has no epochs
        if trained.get("image_height"):
            row["image_size"] = f"{trained['image_height']}x{trained['image_width']}"
        row |= {
            k: evaluated.get(k)
            for k in ("test_accuracy", "test_error", "inference_images_per_second")
        }
        row["how_to_provide"] = why
        row["runner"] = trained.get("runner")
        row["mlflow_run_id"] = trained.get("mlflow_run_id")
        row["mlflow_model_uri"] = trained.get("mlflow_model_uri")
        row["dataset_sha256"] = trained.get("dataset_sha256")
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *HIDDEN])
    frame["seconds_per_image"] = frame["seconds_per_image"].astype(float) * 1000
    return frame


FORMATS = {
    "test_accuracy": "{:.4f}",
    "test_error": "{:.4f}",
    "feature_extraction_seconds": "{:.1f}",
    "training_seconds": "{:.1f}",
    "seconds_per_epoch": "{:.1f}",
    "seconds_per_image": "{:.3f}",
    "epochs_run": "{:.0f}",
    "train_images": "{:,.0f}",
    "parameters": "{:,.0f}",
    "trainable_parameters": "{:,.0f}",
    "inference_images_per_second": "{:,.0f}",
}


def to_markdown(frame: pd.DataFrame) -> str:
    shown = frame.drop(columns=list(HIDDEN)).copy()
    for column, fmt in FORMATS.items():
        shown[column] = [
            "—" if pd.isna(value) else fmt.format(float(value)) for value in shown[column]
        ]
    for column in ("image_size", "device", "profile"):
        shown[column] = shown[column].fillna("—")
    shown = shown.rename(columns=COLUMNS).drop(columns=["device name"])
    numeric = {COLUMNS[key] for key in FORMATS}
    align = ["right" if c in numeric else "left" for c in shown.columns]
    return shown.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n"


def _notes(settings: Settings, frame: pd.DataFrame) -> str:
    lines = []
    for name, dataset in settings.params.datasets.items():
        if dataset.validation_split and dataset.validation_split == dataset.test_split:
            lines.append(
                f"- `{name}`: no test split is published; its `{dataset.test_split}` split "
                "serves as validation and test set (no model selection uses it)."
            )
    capped = settings.profile.image_size
    if capped:
        lines.append(f"- Colour images resized to at most {capped} px on their longer side.")
    # One note per missing input, naming every run it holds back.
    missing = frame[frame["how_to_provide"] != ""]
    for (status, why), rows in missing.groupby(["status", "how_to_provide"], sort=False):
        runs = ", ".join(f"`{run}`" for run in rows["run"])
        lines.append(f"- {runs} {status}: {why}.")
    return ("\n**Notes**\n\n" + "\n".join(lines) + "\n") if lines else ""


def compare(
    settings: Settings,
    runs_dir: Path,
    out_dir: Path,
    inputs: InputFolders | None = None,
    selection: Selection | None = None,
) -> pd.DataFrame:
    """The comparison of every run: comparison.csv/.md, charts, DVC metrics, an MLflow run."""
    settings = checked_up_front(settings)
    frame = gather(settings, runs_dir, inputs, selection)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "comparison.csv", frame.to_csv(index=False))
    devices = sorted({d for d in frame["device_name"].dropna()})
    header = (
        f"Profile `{settings.params.profile}`: {settings.profile.description}.\n"
        f"Device: {', '.join(devices) or 'n/a'}.\n\n"
    )
    write_text(out_dir / "comparison.md", header + to_markdown(frame) + _notes(settings, frame))
    done = frame[frame["status"] == "ok"].set_index("run")
    bar_chart_png(
        done["test_error"].astype(float),
        "test error",
        "Test error per model",
        out_dir / "test_error.png",
    )
    stacked_bar_chart_png(
        pd.DataFrame(
            {
                "training": done["training_seconds"].astype(float),
                "feature extraction (once)": done["feature_extraction_seconds"]
                .astype(float)
                .fillna(0),
            }
        ),
        "seconds",
        "Training time per model (" + ", ".join(devices) + ")",
        out_dir / "training_time.png",
    )
    # DVC metrics: one flat entry per run so `dvc metrics diff` reads well.
    write_json(
        out_dir / "metrics.json",
        {
            key: {"test_accuracy": row.test_accuracy, "training_seconds": row.training_seconds}
            for key, row in done.iterrows()
        },
    )
    _log_comparison(settings, frame, out_dir)
    return frame


def _log_comparison(settings: Settings, frame: pd.DataFrame, out_dir: Path) -> None:
    # The comparison spans datasets: one hash over each compared dataset's checksum.
    compared = frame[frame["status"] == "ok"].dropna(subset=["dataset_sha256"])
    checksums = dict(sorted(zip(compared["dataset"], compared["dataset_sha256"], strict=True)))
    tags = tracking.base_tags(settings, "compare", dataset_sha256=fingerprint(checksums))
    tags |= {f"dataset_sha256.{name}": sha for name, sha in checksums.items()}
    tags["convbench.kind"] = "comparison"
    not_run = frame[frame["status"].str.startswith(NOT_RUN)]
    if len(not_run):
        tags["convbench.not_run"] = "; ".join(f"{r.run}: {r.status}" for r in not_run.itertuples())[
            :5000
        ]
    with tracking.start_run(
        settings, tracking.COMPARISON_EXPERIMENT, f"comparison-{settings.params.profile}", tags
    ):
        mlflow.log_param("profile", settings.params.profile)
        mlflow.log_param("runs", ",".join(frame["run"]))
        for row in frame[frame["status"] == "ok"].itertuples():
            mlflow.log_metrics(
                {
                    f"{row.run}.test_accuracy": float(row.test_accuracy),
                    f"{row.run}.training_seconds": float(row.training_seconds),
                }
            )
        mlflow.log_table(frame, artifact_file="comparison.json")
        for name in ("comparison.csv", "comparison.md", "test_error.png", "training_time.png"):
            mlflow.log_artifact(str(out_dir / name))
