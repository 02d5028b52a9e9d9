"""GPU check: convbench's MNIST networks trained by Keras 3 on JAX, float32 against
mixed_bfloat16, on a machine without TensorFlow.

Builds ``mlp``, ``cnn`` and ``lenet5`` with convbench's own builders, compiles them as
the project does (optimizer, learning rate and batch size of the ``mnist-<variant>`` runs
in params.yaml) and reports per variant and policy: the first epoch's time (it includes
XLA compilation), the median time of the later epochs, images/s, test accuracy and the
bf16 speed-up. Run it through ``bench/gpu_check.sh``, which brings Keras along:

    bash bench/gpu_check.sh [--epochs 2] [--limit N] [--mnist PATH] [--out FILE]

Needs only NumPy, JAX, Keras and PyYAML: it imports convbench's builders and its
optimizers (``training.fit``), never its settings (pydantic), and fails if TensorFlow
was imported all the same. Keras itself tries to import TensorFlow (set_random_seed
seeds it where installed) and scikit-learn (its wrappers); where they are absent those
attempts fail harmlessly, and the report lists them.
"""

from __future__ import annotations

import argparse
import importlib.abc
import json
import os
import platform
import statistics
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("mlp", "cnn", "lenet5")
POLICIES = ("float32", "mixed_bfloat16")
# The runner must not need these: TensorFlow (the point of the check), pydantic (the
# settings package) and scikit-learn (the forest baseline).
WATCHED = ("tensorflow", "pydantic", "sklearn")


class ImportWatch(importlib.abc.MetaPathFinder):
    """Notes every attempt to import a watched package, including ones that fail.

    ``sys.modules`` only shows imports that succeeded; on a machine without TensorFlow
    an attempt is what reveals code that would pull it in where it is installed.
    """

    def __init__(self, roots: tuple[str, ...]) -> None:
        self.roots = frozenset(roots)
        self.attempted: dict[str, str] = {}  # package: where its first attempt came from

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        root = fullname.partition(".")[0]
        if root in self.roots and root not in self.attempted:
            self.attempted[root] = self._caller()
        return None  # the other finders do the importing

    @staticmethod
    def _caller() -> str:
        """The innermost frames outside the import machinery, innermost first."""
        frames = [
            f"{'/'.join(Path(frame.filename).parts[-4:])}:{frame.lineno}"
            for frame in reversed(traceback.extract_stack())
            if not frame.filename.startswith("<frozen")
            and "importlib" not in frame.filename
            and frame.filename != __file__
        ]
        return " < ".join(frames[:3])


def default_mnist() -> Path | None:
    """The mirror's mnist.npz, else the copy ``gpu_check.sh --prepare`` put beside the wheels."""
    mirror = os.environ.get("CONVBENCH_MIRROR")
    candidates = [Path(mirror) / "mnist.npz"] if mirror else []
    candidates.append(ROOT / ".whl" / "mnist.npz")
    return next((path for path in candidates if path.is_file()), None)


def load_mnist(
    path: Path | None, limit: int | None, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """MNIST's four arrays (Keras' mnist.npz), or random ones of its shape if it is absent."""
    if path is not None and path.is_file():
        with np.load(path) as npz:
            arrays = {key: npz[key] for key in ("x_train", "y_train", "x_test", "y_test")}
        source = {"source": "mnist", "path": str(path)}
    else:
        print(
            f"no MNIST file ({path or 'none given'}): using SYNTHETIC random data", file=sys.stderr
        )
        rng = np.random.default_rng(seed)
        counts = {"train": 60_000, "test": 10_000}
        if limit:
            counts = {split: min(count, limit) for split, count in counts.items()}
        arrays = {}
        for split, count in counts.items():
            arrays[f"x_{split}"] = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
            arrays[f"y_{split}"] = rng.integers(0, 10, count, dtype=np.uint8)
        source = {"source": "synthetic", "path": None, "missing": str(path) if path else None}
    if limit:
        arrays = {key: value[:limit] for key, value in arrays.items()}
    source |= {"train_images": len(arrays["x_train"]), "test_images": len(arrays["x_test"])}
    return arrays, source


def run_settings(params: dict[str, Any], variant: str) -> dict[str, Any]:
    """The ``mnist-<variant>`` run's training settings, with the settings' defaults."""
    run = params["runs"][f"mnist-{variant}"]
    return {
        "run": f"mnist-{variant}",
        "optimizer": run.get("optimizer", "adam"),
        "learning_rate": float(run.get("learning_rate", 0.001)),
        "momentum": float(run.get("momentum", 0.0)),
        "batch_size": int(run["batch_size"]),
        "normalize": bool(run.get("normalize", True)),
    }


def fit_timed(
    keras: ModuleType, model: Any, x: np.ndarray, y: np.ndarray, batch: int, epochs: int
) -> list[float]:
    """Seconds of each epoch, measured between Keras' epoch callbacks (as convbench does)."""
    seconds: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            # Reading the metrics waits for the device: JAX dispatches asynchronously.
            _ = {key: float(value) for key, value in (logs or {}).items()}
            seconds.append(time.perf_counter() - self.started)

    model.fit(x, y, batch_size=batch, epochs=epochs, callbacks=[EpochTimer()], verbose=0)
    return seconds


def check(
    keras: ModuleType,
    build_variant: Any,
    data: dict[str, np.ndarray],
    settings: dict[str, Any],
    variant: str,
    policy: str,
    epochs: int,
    seed: int,
) -> dict[str, Any]:
    """Train one variant under one dtype policy; its timings and test accuracy."""
    from convbench.training.fit import make_optimizer  # the project's own optimizers

    keras.backend.clear_session()
    # The policy applies to layers built after it is set: set it, then build.
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(seed)
    model = build_variant(variant, (28, 28, 1), 10)
    model.compile(
        optimizer=make_optimizer(SimpleNamespace(**settings)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile="auto",
    )
    scale = 1.0 / 255.0 if settings["normalize"] else 1.0
    x_train = data["x_train"].reshape(-1, 28, 28, 1).astype("float32") * scale
    x_test = data["x_test"].reshape(-1, 28, 28, 1).astype("float32") * scale
    batch = settings["batch_size"]
    seconds = fit_timed(keras, model, x_train, data["y_train"], batch, epochs)
    scores = model.evaluate(x_test, data["y_test"], batch_size=batch, verbose=0, return_dict=True)
    steady = statistics.median(seconds[1:])
    return {
        "variant": variant,
        "policy": policy,
        **settings,
        "params": int(model.count_params()),
        "epoch_seconds": [round(s, 4) for s in seconds],
        "first_epoch_seconds": round(seconds[0], 4),
        "epoch_seconds_median": round(steady, 4),
        "images_per_second": round(len(x_train) / steady, 1),
        "test_accuracy": round(float(scores["accuracy"]), 4),
        "test_loss": round(float(scores["loss"]), 4),
    }


def markdown(report: dict[str, Any]) -> str:
    device = report["device"]
    data = report["data"]
    label = "SYNTHETIC random data" if data["source"] == "synthetic" else "MNIST"
    lines = [
        f"GPU check on {device['device_kind']} ({device['platform']}), Keras "
        f"{report['keras']} / JAX {report['jax']}, Python {report['python']}",
        f"data: {label}, {data['train_images']:,} train / {data['test_images']:,} test "
        f"images, {report['epochs']} epochs",
        "",
        "| variant | policy | batch | params | 1st epoch s | epoch s (median) | images/s "
        "| test acc | bf16 speed-up |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in report["results"]:
        speedup = f"{r['bf16_speedup']:.2f}×" if "bf16_speedup" in r else ""
        lines.append(
            f"| {r['variant']} | {r['policy']} | {r['batch_size']} | {r['params']:,} "
            f"| {r['first_epoch_seconds']:.2f} | {r['epoch_seconds_median']:.3f} "
            f"| {r['images_per_second']:,.0f} | {r['test_accuracy']:.4f} | {speedup} |"
        )
    lines.append("")
    for name, seen in report["imports"].items():
        attempt = f", attempted from {seen['attempted_from']}" if seen["attempted"] else ""
        lines.append(f"- {name} imported: {seen['imported']}{attempt}")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "bench"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", type=Path, default=None, help="Keras' mnist.npz")
    parser.add_argument("--epochs", type=int, default=2, help="at least 2 (the first compiles)")
    parser.add_argument("--limit", type=int, default=None, help="at most N train and N test images")
    parser.add_argument("--out", type=Path, default=out / "gpu_check.json")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch includes compilation")
    return args


def main() -> int:
    args = parse_args()
    watch = ImportWatch(WATCHED)
    sys.meta_path.insert(0, watch)
    os.environ.setdefault("KERAS_BACKEND", "jax")

    import jax
    import keras
    import yaml

    # networks registers the Keras builders; variants would also import the transfer
    # bases and the scikit-learn forest, which this check does not need.
    import convbench.models.networks  # noqa: F401
    from convbench.models.catalog import build_variant

    if keras.backend.backend() != "jax":
        print(f"KERAS_BACKEND is {keras.backend.backend()!r}: this check runs JAX", file=sys.stderr)
        return 2
    first = jax.devices()[0]
    if first.platform == "cpu" and not args.limit:
        # A runner whose JAX lost its GPU would take the better part of an hour on MNIST.
        print("JAX sees no GPU: pass --limit N to run the check on the CPU", file=sys.stderr)
        return 3
    params = yaml.safe_load(args.params.read_text())
    seed = int(params.get("seed", 42))
    data, source = load_mnist(args.mnist or default_mnist(), args.limit, seed)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "device": {
            "device_kind": first.device_kind,
            "platform": first.platform,
            "count": jax.device_count(),
        },
        "data": source,
        "epochs": args.epochs,
        "limit": args.limit,
        "results": [],
    }
    try:
        for variant in args.variants.split(","):
            settings = run_settings(params, variant)
            times: dict[str, float] = {}
            for policy in POLICIES:
                result = check(
                    keras, build_variant, data, settings, variant, policy, args.epochs, seed
                )
                times[policy] = result["epoch_seconds_median"]
                if policy != "float32":
                    result["bf16_speedup"] = round(times["float32"] / times[policy], 3)
                report["results"].append(result)
                print(
                    f"{variant} {policy}: epochs {result['epoch_seconds']} s, "
                    f"test accuracy {result['test_accuracy']}",
                    file=sys.stderr,
                )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    report["imports"] = {
        name: {
            "imported": name in sys.modules,
            "attempted": name in watch.attempted,
            "attempted_from": watch.attempted.get(name),
        }
        for name in WATCHED
    }
    report["tensorflow_free"] = "tensorflow" not in sys.modules
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    print(f"\nwrote {args.out}")
    # The point of the check: Keras on JAX without TensorFlow. An explicit exit, not an
    # assert, so that python -O still fails.
    if not report["tensorflow_free"]:
        print("FAILED: tensorflow was imported", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
