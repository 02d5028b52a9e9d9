"""The baseline of bench.training: a plain Keras script, the way the decks train.

The same model (convbench's builder makes only Keras layers), the same optimizer (the
run's, as convbench makes it) and batch size, the same prepared arrays: ``model.fit``
on NumPy arrays with Keras' own shuffling, nothing else. Writes its epoch times and
validation accuracy as JSON.

    KERAS_BACKEND=jax python -m bench.plain_keras PREPARED RUN OUT.json [--policy P]
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer


def main(
    prepared: Path,
    run: str,
    output: Path,
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
    epochs: Annotated[int, typer.Option(help="epochs")] = 2,
    policy: Annotated[str, typer.Option(help="Keras dtype policy")] = "float32",
) -> None:
    import keras
    import numpy as np

    from convbench.data.prepare import load_prepared
    from convbench.models.variants import build_variant
    from convbench.settings import load_settings
    from convbench.training.fit import make_optimizer

    spec = load_settings(params).run_spec(run)
    assert spec.training is not None
    keras.utils.set_random_seed(spec.seed)
    keras.mixed_precision.set_global_policy(policy)
    x, y = load_prepared(prepared, "train")
    xv, yv = load_prepared(prepared, "validation")
    x, xv = x.astype("float32") / 255.0, xv.astype("float32") / 255.0
    model = build_variant(spec.variant, x.shape[1:], int(y.max()) + 1)
    model.compile(
        optimizer=make_optimizer(spec.training),  # the run's own: the same optimizer
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    seconds: list[float] = []

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            seconds.append(time.perf_counter() - self.started)

    history = model.fit(
        x,
        y,
        batch_size=spec.training.batch_size,
        epochs=epochs,
        validation_data=(xv, yv),
        callbacks=[EpochTimes()],
        verbose=0,
    )
    result = {
        "backend": keras.backend.backend(),
        "policy": policy,
        "epoch_seconds": seconds,
        "val_accuracy": [float(v) for v in history.history["val_accuracy"]],
        "train_images": len(y),
        "finite": bool(np.isfinite(history.history["loss"]).all()),
    }
    output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    typer.run(main)
