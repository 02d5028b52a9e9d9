"""runtime.backend and runtime.mixed_precision: auto: which Keras backend a stage runs,
JAX training array data with TensorFlow unimportable, and bf16 where the CPU pays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from convbench.data.prepare import load_prepared
from convbench.inputs.pipeline import scaled
from convbench.models.saving import load_model
from convbench.settings import Runtime, requested_runtime
from convbench.training.backend import JAX_DETERMINISM_FLAG, choose_backend, stage_params
from convbench.training.devices import (
    RuntimeConfigError,
    configure_runtime,
    cpu_has_bf16_units,
    resolve_policy,
)
from tests.conftest import ROOT, prepared_tiny_digits

AMX_FLAGS = "flags\t\t: fpu sse2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"


def test_a_stage_process_reads_its_backend_from_its_own_params(tmp_path: Path) -> None:
    assert stage_params(["python", "-m", "pipelines.train", "k", "a"]) == Path("params.yaml")
    given = ["python", "-m", "pipelines.evaluate", "k", "--params", "other.yaml"]
    assert stage_params(given) == Path("other.yaml")
    # A flow, a test or the CLI imports stage modules too: their backend is their own.
    assert stage_params(["python", "-m", "flows.experiment", "--params", "x"]) is None
    assert stage_params(["pytest", "tests"]) is None
    params = tmp_path / "params.yaml"
    params.write_text("runtime:\n  backend: jax\n  mixed_precision: none\n")
    assert requested_runtime(params) == Runtime(backend="jax", mixed_precision="none")
    params.write_text("runtime:\n  backend: theano\n")
    assert requested_runtime(params) is None  # the stage's full load names the key
    assert requested_runtime(tmp_path / "missing.yaml") is None


def test_the_backend_is_set_before_keras_in_a_stage_process_only(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("runtime:\n  backend: jax\n")
    code = (
        "import os, sys\n"
        "from convbench.training.backend import choose_backend\n"
        f"argv = ['python', '-m', 'pipelines.train', '--params', {str(params)!r}]\n"
        "chosen = choose_backend(argv)\n"
        "print(chosen, os.environ.get('KERAS_BACKEND'), os.environ.get('XLA_FLAGS'))\n"
        "import keras\n"
        "print(keras.backend.backend(), 'tensorflow' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "XLA_FLAGS")}
    env["PYTHONPATH"] = str(ROOT / "src")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["jax", "jax", JAX_DETERMINISM_FLAG, "jax", "False"]
    # Someone's KERAS_BACKEND wins over params (configure_runtime then checks the two).
    env["KERAS_BACKEND"] = "tensorflow"
    out = subprocess.run(
        [sys.executable, "-c", code.split("import keras")[0]],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["None", "tensorflow", "None"]
    # In this (test) process Keras is loaded already: nothing is changed.
    assert choose_backend(["python", "-m", "pipelines.train", "--params", str(params)]) is None


def test_a_run_refuses_a_backend_other_than_the_one_keras_loaded() -> None:
    with pytest.raises(RuntimeConfigError, match=r"runtime\.backend is jax but Keras was loaded"):
        configure_runtime(Runtime(backend="jax"))


def test_auto_mixed_precision_takes_bf16_only_on_cpus_with_native_bf16(
    tmp_path: Path,
) -> None:
    amx, zen, plain = tmp_path / "amx", tmp_path / "zen", tmp_path / "plain"
    amx.write_text("model name\t: Intel Xeon\n" + AMX_FLAGS)
    # AVX512_BF16 without AMX (AMD Zen 4+): measured to pay too (bench.training).
    zen.write_text("model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx512f avx512_bf16\n")
    plain.write_text("model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    assert cpu_has_bf16_units(amx) and cpu_has_bf16_units(zen)
    assert not cpu_has_bf16_units(plain)
    assert not cpu_has_bf16_units(tmp_path / "absent")
    assert resolve_policy("auto", has_gpu=False, bf16_units=True) == "mixed_bfloat16"
    assert resolve_policy("auto", has_gpu=False, bf16_units=False) == "float32"
    # Not measured to pay elsewhere: float32 under JAX on CPUs and on GPUs.
    assert resolve_policy("auto", has_gpu=False, backend="jax", bf16_units=True) == "float32"
    assert resolve_policy("auto", has_gpu=True, bf16_units=True) == "float32"
    assert resolve_policy("none", has_gpu=False, bf16_units=True) == "float32"


def _stage(args: list[str], params: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *args, "--params", str(params)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _tensorflow_free_project(tmp_path: Path, backend: str) -> tuple[Path, dict[str, str]]:
    """A project of tiny digits whose stages run where ``import tensorflow`` fails (a GPU
    runner with JAX alone); its params file and the stages' environment."""
    blocker = tmp_path / "blocked" / "tensorflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('tensorflow is not installed here')\n")
    project = tmp_path / "project"
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["profile"] = "ci"
    raw["runtime"]["backend"] = backend
    project.mkdir()
    params = project / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    prepared_tiny_digits(project / "prepared", train=200, validation=50, test=50)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KERAS_"))}
    env |= {
        "PYTHONPATH": f"{blocker.parent}{os.pathsep}{ROOT / 'src'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
    }
    return params, env


def _train_and_evaluate(run: str, params: Path, env: dict[str, str]) -> tuple[Path, ...]:
    project = params.parent
    prepared, model = project / "prepared", project / "model"
    train, scored = project / "train", project / "evaluate"
    _stage(["pipelines.train", run, str(prepared), str(model), str(train)], params, env)
    _stage(
        ["pipelines.evaluate", run, str(prepared), str(model), str(train), str(scored)],
        params,
        env,
    )
    return prepared, model, train, scored


def test_a_forest_run_needs_no_tensorflow(tmp_path: Path) -> None:
    # The default backend, TensorFlow, is not even importable: a forest never loads it.
    params, env = _tensorflow_free_project(tmp_path, "tensorflow")
    _, model, train, scored = _train_and_evaluate("mnist-random_forest", params, env)
    assert (model / "model.skops").is_file()
    assert json.loads((train / "metrics.json").read_text())["device"] == "CPU"
    assert json.loads((scored / "metrics.json").read_text())["test_accuracy"] > 0.5


def test_array_data_trains_and_scores_under_jax_with_tensorflow_unimportable(
    tmp_path: Path,
) -> None:
    params, env = _tensorflow_free_project(tmp_path, "jax")
    prepared, model, train, scored = _train_and_evaluate("mnist-cnn", params, env)
    summary = json.loads((train / "metrics.json").read_text())
    assert summary["runtime"]["backend"] == "jax"
    assert summary["runtime"]["dtype_policy"] == "float32"  # this CPU: see the auto test
    assert json.loads((scored / "metrics.json").read_text())["test_accuracy"] > 0.5
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["runtime.backend"] == "jax"
    assert len(client.get_metric_history(run.info.run_id, "accuracy")) == summary["epochs_run"]
    # The .keras file is the backend's business only: TensorFlow here predicts the same.
    images, _ = load_prepared(prepared, "test")
    ours = load_model(model).predict(scaled(images, True), verbose=0).argmax(axis=1)
    assert ours.tolist() == pd.read_csv(scored / "predictions.csv")["predicted"].tolist()


def test_bf16_training_repeats_its_numbers_under_op_determinism() -> None:
    # What runtime.mixed_precision: auto does on a CPU with native bf16: the same run twice gives
    # the same weights (other numbers than float32's, but repeatable).
    import keras
    import tensorflow as tf

    from convbench.models.variants import build_variant
    from convbench.training.devices import set_seeds
    from tests.conftest import tiny_digits

    images, labels = tiny_digits(64)
    tf.config.experimental.enable_op_determinism()
    weights = []
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        for _ in range(2):
            set_seeds(7)
            model = build_variant("lenet5", (28, 28, 1), 10)
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
            model.fit(images[..., None] / 255.0, labels, epochs=1, batch_size=16, verbose=0)
            weights.append([w.copy() for w in model.get_weights()])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for first, second in zip(*weights, strict=True):
        assert (first == second).all()
