"""The runtime params: device choice, mixed precision, XLA, and what each run logs of them."""

from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from convbench.models.variants import build_variant
from convbench.settings import Runtime, Settings
from convbench.stages.train import train_run
from convbench.training.devices import (
    RuntimeConfigError,
    configure_runtime,
    cpu_has_bf16_units,
    resolve_policy,
)
from tests.conftest import prepared_tiny_digits, tiny_digits


@pytest.fixture(autouse=True)
def float32_after() -> Iterator[None]:
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_mixed_precision_only_where_there_is_a_gpu() -> None:
    assert resolve_policy("none", has_gpu=True) == "float32"
    assert resolve_policy("bf16", has_gpu=True) == "mixed_bfloat16"
    assert resolve_policy("fp16", has_gpu=True) == "mixed_float16"
    assert resolve_policy("bf16", has_gpu=False) == "float32"  # a CPU runner: as before


def test_cpu_runner_keeps_float32_and_refuses_a_gpu_only_run() -> None:
    applied = configure_runtime(Runtime(mixed_precision="fp16"))
    assert applied.device == "CPU" and applied.gpu_count == 0
    assert applied.dtype_policy == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(RuntimeConfigError, match=r"runtime\.device is gpu but no GPU is visible"):
        configure_runtime(Runtime(device="gpu"))


def test_a_variant_trains_under_mixed_precision_with_float32_outputs() -> None:
    # What a GPU runner does with mixed_precision: bf16 (bfloat16 also runs on CPUs).
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = build_variant("lenet5", (28, 28, 1), 10)
    assert model.layers[0].compute_dtype == "bfloat16"
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    images, labels = tiny_digits(32)
    history = model.fit(images[..., None] / 255.0, labels, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    output = model.predict(images[:4, ..., None] / 255.0, verbose=0)
    assert output.dtype == np.float32  # the head stays float32: stable probabilities
    assert np.allclose(output.sum(axis=1), 1.0, atol=1e-5)


def test_each_run_logs_its_runtime(ci_settings: Settings, tmp_path: Path) -> None:
    prepared_tiny_digits(tmp_path / "prepared", train=60, validation=20, test=20)
    params = ci_settings.params.model_copy(
        update={"runtime": Runtime(xla=True, deterministic=False)}
    )
    env = ci_settings.env.model_copy(update={"runner": "gpu-box-7"})
    settings = ci_settings.model_copy(update={"params": params, "env": env})
    summary = train_run(
        settings,
        "mnist-mlp",
        tmp_path / "prepared",
        tmp_path / "model",
        tmp_path / "train",
        verbose=0,
    )
    assert summary["runtime"]["xla"] is True  # asked for: XLA on a CPU too
    # auto: bf16 where this CPU computes in bf16 natively, float32 elsewhere.
    policy = "mixed_bfloat16" if cpu_has_bf16_units() else "float32"
    assert summary["runtime"]["dtype_policy"] == policy
    assert summary["runtime"]["device"] == "CPU"
    run = MlflowClient(settings.env.tracking_uri).get_run(summary["mlflow_run_id"])
    assert run.data.params["runtime.xla"] == "True"
    assert run.data.params["runtime.dtype_policy"] == policy
    assert run.data.params["runtime.device_name"] == summary["device_name"]
    assert run.data.tags["convbench.runner"] == "gpu-box-7"
    # XLA is a numerics setting: results trained without it are no longer current.
    assert summary["run_fingerprint"] != ci_settings.run_spec("mnist-mlp").fingerprint
