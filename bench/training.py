"""Benchmark: training time per image, convbench's ``train`` stage against a plain Keras
script of the same model on the same data, under each backend, and bf16 against float32
where the CPU computes in bf16 natively (AMX or AVX512_BF16).

Every configuration is a fresh process (as a DVC stage is). They run in rounds, each
round in the other order than the last, so the machine's drift hits all alike; the
figures are medians over rounds. Time per image is the steady epoch time (the epochs
after the first, which traces and compiles) over the training images. The data are
MNIST's from the mirror (``mnist.npz``), else synthetic digits (said in the report).

    .venv/bin/python -m bench.training                 # writes bench/training.json
    .venv/bin/python -m bench.training --images 6000 --rounds 1   # a quick look
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
import yaml

from bench.determinism import digits

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RUN_OF = {"cnn": "mnist-cnn", "mlp": "mnist-mlp", "lenet5": "mnist-lenet5"}


@dataclass(frozen=True)
class Config:
    trainer: str  # convbench | plain
    backend: str  # tensorflow | jax
    policy: str  # float32 | mixed_bfloat16

    @property
    def name(self) -> str:
        return f"{self.trainer}-{self.backend}-{self.policy}"


def mnist(mirror: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    path = Path(mirror or ROOT.parent / "shared" / "datasets") / "mnist.npz"
    if not path.is_file():
        return None
    with np.load(path) as data:
        train = (data["x_train"][..., None], data["y_train"].astype(np.int64))
        test = (data["x_test"][..., None], data["y_test"].astype(np.int64))
    return {"train": train, "test": test}


def make_project(folder: Path, images: int, epochs: int, mirror: str | None) -> str:
    """Prepared arrays and one params file per (backend, precision); the data's name."""
    from convbench.data.prepare import save_prepared

    real = mnist(mirror)
    if real is None:
        splits = {"train": digits(images, 0), "validation": digits(2000, 1)}
        source = "synthetic digits"
    else:
        x, y = real["train"]
        xt, yt = real["test"]
        splits = {"train": (x[:images], y[:images]), "validation": (xt[:5000], yt[:5000])}
        source = "MNIST (mnist.npz)"
    splits["test"] = splits["validation"]
    save_prepared(splits, folder / "prepared", list(range(10)))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["profile"] = "ci"
    params["profiles"]["ci"] |= {"max_epochs": epochs, "train_limit": None}
    for backend in ("tensorflow", "jax"):
        for precision in ("none", "auto"):
            params["runtime"] |= {"backend": backend, "mixed_precision": precision}
            (folder / f"params-{backend}-{precision}.yaml").write_text(yaml.safe_dump(params))
    return source


def run_config(folder: Path, config: Config, run: str, epochs: int, attempt: int) -> dict:
    """Train once; its epoch seconds and final validation accuracy."""
    precision = "auto" if config.policy == "mixed_bfloat16" else "none"
    params = folder / f"params-{config.backend}-{precision}.yaml"
    out = folder / f"{config.name}-{attempt}"
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
    if config.trainer == "plain":
        env["KERAS_BACKEND"] = config.backend
        command = [sys.executable, "-m", "bench.plain_keras", str(folder / "prepared"), run]
        command += [str(out.with_suffix(".json")), "--params", str(params)]
        command += ["--epochs", str(epochs), "--policy", config.policy]
    else:
        command = [sys.executable, "-m", "pipelines.train", run, str(folder / "prepared")]
        command += [
            str(folder / f"model-{config.name}-{attempt}"),
            str(out),
            "--params",
            str(params),
        ]
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    if config.trainer == "plain":
        result = json.loads(out.with_suffix(".json").read_text())
        return {
            "epoch_seconds": result["epoch_seconds"],
            "val_accuracy": result["val_accuracy"][-1],
        }
    history = pd.read_csv(out / "history.csv")
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["runtime"]["dtype_policy"] == config.policy, summary["runtime"]
    return {
        "epoch_seconds": history["epoch_seconds"].tolist(),
        "val_accuracy": float(history["val_accuracy"].iloc[-1]),
    }


def section(report: dict) -> list[str]:
    """The lines bench/RESULTS.md shows for this benchmark."""
    configs, ratios = report["configs"], report["ratios"]
    bf16 = report["native_bf16"]

    def verdict(value: float | None, target: float) -> str:
        return "met" if value is not None and value <= target else "NOT met"

    lines = [
        "## Training: convbench against a plain Keras script, per backend",
        "",
        "Rerun: `CONVBENCH_MIRROR=../shared/datasets .venv/bin/python -m bench.training` "
        "(writes `bench/training.json`).",
        "",
        f"Machine: {report['cpu']}, native bf16: {'yes' if bf16 else 'no'}; "
        f"{report['measured']}. `{report['run']}` on {report['images']:,} images of "
        f"{report['data']}, {report['epochs']} epochs, {report['rounds']} rounds in "
        "alternating order, medians. convbench is its `train` stage (a fresh process, "
        "tf.data or the array batches, checkpoints, MLflow logging); plain is "
        "`bench/plain_keras.py`: the same model, optimizer and batch size, `model.fit` on "
        "NumPy arrays. Per image = steady epoch time (epochs after the first) / images.",
        "",
        "| configuration | ms per image | steady epoch s | first epoch s | val. accuracy |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in configs.items():
        lines.append(
            f"| {name} | {row['per_image_ms']:.3f} | {row['steady_epoch_seconds']:.1f} | "
            f"{row['first_epoch_seconds']:.1f} | {row['val_accuracy']:.4f} |"
        )
    float32 = ratios["convbench_to_plain_tensorflow"]
    # The ≤ 1.0 target is for CPUs without native bf16; on the others auto trains in bf16.
    float32_target = (
        "— (auto trains in bf16 here: below)" if bf16 else f"≤ 1.0 ({verdict(float32, 1.0)})"
    )
    lines += [
        "",
        "| ratio (per image) | value | target |",
        "|---|---:|---|",
        f"| convbench ÷ plain, TensorFlow float32 | **{float32}** | {float32_target} |",
        f"| convbench ÷ plain, JAX | {ratios['convbench_to_plain_jax']} | — |",
        f"| convbench JAX ÷ convbench TensorFlow | {ratios['jax_to_tensorflow_convbench']} | — |",
    ]
    if bf16:
        ours = ratios["convbench_bf16_to_plain_float32"]
        gap = 100 * abs(
            configs["convbench-tensorflow-mixed_bfloat16"]["val_accuracy"]
            - configs["plain-tensorflow-float32"]["val_accuracy"]
        )
        lines += [
            f"| convbench bf16 (auto) ÷ plain float32 | **{ours}** | "
            f"≤ 0.8 ({verdict(ours, 0.8)}) |",
            f"| accuracy gap, convbench bf16 vs plain float32 (points) | {gap:.2f} | "
            f"≤ 0.3 ({verdict(gap, 0.3)}) |",
        ]
    return [*lines, ""]


def main(
    variant: Annotated[str, typer.Option(help="mlp | cnn | lenet5")] = "cnn",
    images: Annotated[int, typer.Option(help="training images")] = 12000,
    epochs: Annotated[int, typer.Option(help="epochs per run (the first is not timed)")] = 3,
    rounds: Annotated[int, typer.Option(help="rounds of every configuration")] = 2,
    output: Annotated[Path, typer.Option(help="results file")] = HERE / "training.json",
) -> None:
    from convbench.training.devices import cpu_has_bf16_units, cpu_name

    bf16 = cpu_has_bf16_units()
    trainers = ("plain", "convbench")
    configs = [Config(t, b, "float32") for b in ("tensorflow", "jax") for t in trainers]
    if bf16:  # native bf16: what runtime.mixed_precision: auto takes
        configs += [Config(t, "tensorflow", "mixed_bfloat16") for t in trainers]
    run = RUN_OF[variant]
    results: dict[str, list[dict]] = {c.name: [] for c in configs}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = make_project(folder, images, epochs, os.environ.get("CONVBENCH_MIRROR"))
        for attempt in range(rounds):
            for config in configs if attempt % 2 == 0 else configs[::-1]:
                results[config.name].append(run_config(folder, config, run, epochs, attempt))
                print(config.name, results[config.name][-1], flush=True)
    summary = {}
    for name, runs in results.items():
        per_image = [statistics.mean(r["epoch_seconds"][1:]) / images for r in runs]
        summary[name] = {
            "per_image_ms": round(statistics.median(per_image) * 1000, 4),
            "steady_epoch_seconds": round(statistics.median(per_image) * images, 2),
            "first_epoch_seconds": round(statistics.median(r["epoch_seconds"][0] for r in runs), 2),
            "val_accuracy": round(statistics.median(r["val_accuracy"] for r in runs), 4),
        }

    def ratio(a: str, b: str) -> float | None:
        if a not in summary or b not in summary:
            return None
        return round(summary[a]["per_image_ms"] / summary[b]["per_image_ms"], 3)

    report = {
        "run": run,
        "data": source,
        "images": images,
        "epochs": epochs,
        "rounds": rounds,
        "cpu": f"{cpu_name()} ({os.cpu_count()} cores)",
        "native_bf16": bf16,
        "python": platform.python_version(),
        "measured": time.strftime("%Y-%m-%d"),
        "configs": summary,
        "ratios": {
            "convbench_to_plain_tensorflow": ratio(
                "convbench-tensorflow-float32", "plain-tensorflow-float32"
            ),
            "convbench_to_plain_jax": ratio("convbench-jax-float32", "plain-jax-float32"),
            "jax_to_tensorflow_convbench": ratio(
                "convbench-jax-float32", "convbench-tensorflow-float32"
            ),
            "convbench_bf16_to_plain_float32": ratio(
                "convbench-tensorflow-mixed_bfloat16", "plain-tensorflow-float32"
            ),
        },
    }
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
