"""Compare every run: one table (CSV, Markdown), bar charts, DVC metrics, an MLflow run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from convbench import tracking
from convbench.atomic import write_json, write_text
from convbench.config import Settings
from convbench.plots import bar_chart_png

COLUMNS = {
    "run": "run",
    "dataset": "dataset",
    "variant": "variant",
    "status": "status",
    "test_accuracy": "test accuracy",
    "test_error": "test error",
    "training_seconds": "training time (s)",
    "seconds_per_epoch": "time per epoch (s)",
    "seconds_per_image": "training time per image (ms)",
    "epochs_run": "epochs",
    "train_images": "train images",
    "parameters": "parameters",
    "inference_images_per_second": "inference (images/s)",
    "device": "device",
    "device_name": "device name",
    "profile": "profile",
}


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def gather(settings: Settings, runs_dir: Path) -> pd.DataFrame:
    """One row per configured run; a run with no results says so instead of vanishing."""
    rows = []
    for key, run in settings.params.runs.items():
        trained = _read(runs_dir / key / "train" / "metrics.json")
        evaluated = _read(runs_dir / key / "eval" / "metrics.json")
        if not (trained and evaluated):
            status = "not run"
        elif trained.get("run_fingerprint") != settings.run_fingerprint(key):
            # Left over from other params (another profile, say): shown, but not as current.
            status = "stale"
        else:
            status = "ok"
        row = {"run": key, "dataset": run.dataset, "variant": run.variant, "status": status}
        row |= {
            k: trained.get(k)
            for k in (
                "training_seconds",
                "seconds_per_epoch",
                "seconds_per_image",
                "epochs_run",
                "train_images",
                "parameters",
                "device",
                "device_name",
                "profile",
            )
        }
        row |= {
            k: evaluated.get(k)
            for k in ("test_accuracy", "test_error", "inference_images_per_second")
        }
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["seconds_per_image"] = frame["seconds_per_image"].astype(float) * 1000
    return frame


FORMATS = {
    "test_accuracy": "{:.4f}",
    "test_error": "{:.4f}",
    "training_seconds": "{:.1f}",
    "seconds_per_epoch": "{:.1f}",
    "seconds_per_image": "{:.3f}",
    "epochs_run": "{:.0f}",
    "train_images": "{:,.0f}",
    "parameters": "{:,.0f}",
    "inference_images_per_second": "{:,.0f}",
}


def to_markdown(frame: pd.DataFrame) -> str:
    shown = frame.copy()
    for column, fmt in FORMATS.items():
        shown[column] = [
            "—" if pd.isna(value) else fmt.format(float(value)) for value in shown[column]
        ]
    shown = shown.rename(columns=COLUMNS).drop(columns=["device name"])
    numeric = {COLUMNS[key] for key in FORMATS}
    align = ["right" if c in numeric else "left" for c in shown.columns]
    return shown.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n"


def compare(settings: Settings, runs_dir: Path, out_dir: Path) -> pd.DataFrame:
    frame = gather(settings, runs_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "comparison.csv", frame.to_csv(index=False))
    devices = sorted({d for d in frame["device_name"].dropna()})
    header = (
        f"Profile `{settings.params.profile}`: {settings.profile.description}.\n"
        f"Device: {', '.join(devices) or 'n/a'}.\n\n"
    )
    write_text(out_dir / "comparison.md", header + to_markdown(frame))
    done = frame[frame["status"] == "ok"].set_index("run")
    charts = {
        "test_error.png": (done["test_error"], "test error", "Test error per model"),
        "training_time.png": (
            done["training_seconds"],
            "seconds",
            "Training time per model (" + ", ".join(devices) + ")",
        ),
    }
    for name, (values, ylabel, title) in charts.items():
        bar_chart_png(values.astype(float), ylabel, title, out_dir / name)
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
    tags = tracking.base_tags(settings, "compare", dataset_sha256="n/a")
    tags["convbench.kind"] = "comparison"
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
