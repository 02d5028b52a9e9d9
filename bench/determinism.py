"""Benchmark: what `runtime.deterministic` costs, side by side with plain seeded Keras.

The real `train` stage (a fresh process each time) trains the MNIST CNN on synthetic
28x28 digits, with and without TensorFlow's op determinism, alternating so that the
machine's drift hits both alike. Reports the steady-state epoch time (epochs after the
first, which includes tracing) of each, their ratio, and whether two runs of each
setting gave bit-identical histories.

    .venv/bin/python -m bench.determinism            # writes bench/determinism.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RUN = "mnist-cnn"


def digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 'digits': a bright bar whose position is the label, on noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = rng.integers(0, 40, size=(count, 28, 28, 1), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, 4:24, 2 + 2 * label : 4 + 2 * label] = 255
    return images, labels.astype(np.int64)


def make_project(folder: Path, images: int, epochs: int) -> None:
    from convbench.data.prepare import save_prepared

    splits = {"train": digits(images, 0), "validation": digits(200, 1), "test": digits(200, 2)}
    save_prepared(splits, folder / "prepared", list(range(10)))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["profile"] = "ci"
    params["profiles"]["ci"]["max_epochs"] = epochs
    for deterministic in (True, False):
        params["runtime"]["deterministic"] = deterministic
        (folder / f"params-{deterministic}.yaml").write_text(yaml.safe_dump(params))


def train(folder: Path, deterministic: bool, attempt: int) -> pd.DataFrame:
    out = folder / f"out-{deterministic}-{attempt}"
    command = [sys.executable, "-m", "pipelines.train", RUN, str(folder / "prepared")]
    command += [str(folder / f"model-{deterministic}-{attempt}"), str(out)]
    command += ["--params", str(folder / f"params-{deterministic}.yaml")]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db"}
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    return pd.read_csv(out / "history.csv")


def main(
    images: Annotated[int, typer.Option(help="training images")] = 4000,
    epochs: Annotated[int, typer.Option(help="epochs per run")] = 4,
    output: Annotated[Path, typer.Option(help="results file")] = HERE / "determinism.json",
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_project(folder, images, epochs)
        runs: dict[bool, list[pd.DataFrame]] = {True: [], False: []}
        for attempt in range(2):
            for deterministic in (False, True) if attempt else (True, False):
                runs[deterministic].append(train(folder, deterministic, attempt))
    result = {}
    for deterministic, histories in runs.items():
        steady = [h["epoch_seconds"][1:].mean() for h in histories]
        numbers = [h.drop(columns="epoch_seconds") for h in histories]
        result[str(deterministic).lower()] = {
            "steady_epoch_seconds": float(np.mean(steady)),
            "identical_reruns": bool(numbers[0].equals(numbers[1])),
            "first_epoch_val_loss": float(numbers[0]["val_loss"].iloc[0]),
            "final_val_accuracy": float(numbers[0]["val_accuracy"].iloc[-1]),
        }
    ratio = result["true"]["steady_epoch_seconds"] / result["false"]["steady_epoch_seconds"]
    # Whether op determinism changed the numbers at all (other kernels would).
    with_it, without = (runs[d][0].drop(columns="epoch_seconds") for d in (True, False))
    same = with_it.equals(without)
    report = {
        "run": RUN,
        "images": images,
        "epochs": epochs,
        "cpus": os.cpu_count(),
        "measured": time.strftime("%Y-%m-%d"),
        "deterministic": result,
        "time_ratio_deterministic_to_plain": round(ratio, 3),
        "same_numbers_with_and_without": bool(same),
    }
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
