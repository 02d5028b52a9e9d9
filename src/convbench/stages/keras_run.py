"""The Keras training the ``train``, ``train_head`` and ``finetune`` stages share: fit a
model on prepared inputs (images or stored features) and record it.

The order matters: numerics before any model is built, the checkpoint looked up before
the MLflow run (a resumed training continues its run), each epoch journaled in the
checkpoint before it is sent, the outputs written only once everything is logged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from convbench.core.hashing import fingerprint
from convbench.data.prepare import prepared_info
from convbench.inputs.pipeline import (
    PipelineOptions,
    first_images,
    prepared_dataset,
    prepared_input_shape,
)
from convbench.models.variants import build_variant
from convbench.settings import RunSpec, Settings
from convbench.tracking import store as tracking
from convbench.tracking import training_run
from convbench.tracking.abandoned import sweep_abandoned
from convbench.training.checkpoints import Checkpoint, Progress
from convbench.training.devices import AppliedRuntime, configure_runtime
from convbench.training.fit import (
    TrainingDivergedError,
    compile_model,
    ema_momentum_for,
    fit_keras,
)
from convbench.training.outputs import write_input_preview
from convbench.training.results import TrainResult
from convbench.training.slots import stage_fit_slot

log = logging.getLogger(__name__)

Builder = Callable[[tuple[int, int, int], int], Any]


def train_keras(
    settings: Settings,
    spec: RunSpec,
    inputs_dir: Path,
    model_dir: Path,
    out_dir: Path,
    *,
    build: Builder | None = None,
    extra_params: dict[str, Any] | None = None,
    extra_metrics: dict[str, float] | None = None,
    verbose: int = 2,
) -> dict[str, Any]:
    """Fit run ``spec`` on ``inputs_dir`` and record it; ``build`` defaults to its variant."""
    assert spec.training is not None and spec.epochs is not None
    applied = configure_runtime(settings.params.runtime)  # before any model is built
    info = prepared_info(inputs_dir)
    size, batch = spec.image_size, spec.training.batch_size
    augmented = PipelineOptions(batch, spec.normalize, True, spec.augmentation, spec.seed)
    train, train_count = prepared_dataset(inputs_dir, "train", size, augmented)
    plain = PipelineOptions(batch_size=batch, normalize=spec.normalize, seed=spec.seed)
    validation, validation_count = prepared_dataset(inputs_dir, "validation", size, plain)
    ema = ema_momentum_for(spec.training, spec.epochs * math.ceil(train_count / batch))
    build = build or (lambda shape, classes: build_variant(spec.variant, shape, classes))
    model = build(prepared_input_shape(inputs_dir, size), len(info["classes"]))
    params = {
        **(spec.params or {}),
        **(extra_params or {}),
        "effective": {"epochs": spec.epochs, "image_size": list(size), "ema_momentum": ema},
        "train_images": train_count,
        "validation_images": validation_count,
    }
    checkpoint = Checkpoint.for_run(
        settings.env.project_root,
        spec.key,
        fingerprint([spec.fingerprint, info["sha256"], params]),
    )
    progress = _resume_or_start(checkpoint, spec.key, spec.epochs)
    with (
        training_run.tracked_run(
            settings, spec, info["sha256"], params, progress, inputs_dir=inputs_dir
        ) as active,
        checkpoint.held(),  # from here on a sweep leaves this checkpoint alone
    ):
        compile_model(model, spec.training, ema, jit_compile=applied.xla)
        runtime = _log_runtime(applied, model)
        with stage_fit_slot(settings.env.project_root, settings.params.runtime):
            result = _fit(model, train, validation, spec, checkpoint, progress, verbose)
        training_run.send_epochs(progress, patient=True)
        trained = training_run.Trained(
            spec=spec,
            dataset_sha256=info["sha256"],
            model=model,
            result=result,
            train_images=train_count,
            sample=first_images(validation, 8),
            metrics={"image_height": size[0], "image_width": size[1], **(extra_metrics or {})},
            details={"effective": {"epochs": spec.epochs, "ema_momentum": ema}, "runtime": runtime},
            # Images, not stored features: show what the model trains on.
            preview=_preview(spec, inputs_dir) if spec.kind != "features" else None,
        )
        summary = training_run.finish_run(trained, active, settings.env.runner, model_dir, out_dir)
    checkpoint.discard()
    why = f"{settings.env.dvc_stage or f'train@{spec.key}'} finished under other settings"
    sweep_abandoned(settings.env, spec.key, why, keep=checkpoint.folder)
    return summary


def _fit(
    model: Any,
    train: Any,
    validation: Any,
    spec: RunSpec,
    checkpoint: Checkpoint,
    progress: Progress,
    verbose: int,
) -> TrainResult:
    """``fit_keras`` with each epoch sent to MLflow; a diverged run keeps no checkpoint."""
    assert spec.training is not None and spec.epochs is not None
    try:
        return fit_keras(
            model,
            train,
            validation,
            spec.training,
            spec.epochs,
            lambda done: training_run.send_epochs(done, patient=False),
            verbose,
            checkpoint,
            progress,
        )
    except TrainingDivergedError:
        checkpoint.discard()  # resuming would only diverge again
        raise


def _preview(spec: RunSpec, inputs_dir: Path) -> Callable[[Path], None]:
    def draw(path: Path) -> None:
        unaugmented, _ = prepared_dataset(
            inputs_dir, "train", spec.image_size, PipelineOptions(8, normalize=False, cache=False)
        )
        images = first_images(unaugmented, 8).astype(np.uint8)
        write_input_preview(images, spec.augmentation, spec.key, path, spec.seed)

    return draw


def _resume_or_start(checkpoint: Checkpoint, key: str, epochs: int) -> Progress:
    progress = checkpoint.load()
    if progress is None:
        return Progress(fingerprint=checkpoint.fingerprint)
    progress.resumes += 1
    state = "finished" if progress.finished else f"{progress.epochs_done}/{epochs} epochs"
    log.warning("%s: resuming from its checkpoint (%s) in %s", key, state, checkpoint.folder)
    return progress


def _log_runtime(applied: AppliedRuntime, model: Any) -> dict[str, Any]:
    """What the run really used (device, GPU model, dtype policy, XLA), as MLflow params."""
    runtime = {**applied.as_params(), "runtime.xla": bool(model.jit_compile)}
    tracking.log_params_kept(runtime)
    return {key.removeprefix("runtime."): value for key, value in runtime.items()}
