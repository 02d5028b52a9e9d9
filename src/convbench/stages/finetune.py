"""DVC stage ``finetune``: the pretrained base's last block trained with the head from
``train_head`` on augmented images (run ``<transfer>_finetune``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convbench.inputs.pipeline import prepared_input_shape
from convbench.models.saving import KERAS_MODEL, load_keras_model
from convbench.models.variants import VARIANTS
from convbench.models.vgg16 import finetune_model
from convbench.settings import FineTuning, Settings, transfer_run_keys
from convbench.stages.entry import stage_command
from convbench.stages.extract_features import load_base
from convbench.stages.keras_run import train_keras


def finetune(
    settings: Settings,
    transfer: str,
    prepared_dir: Path,
    weights_dir: Path,
    head_dir: Path,
    model_dir: Path,
    out_dir: Path,
    base: Any = None,
    verbose: int = 2,
) -> dict[str, Any]:
    """Fine-tune the base with the trained head; ``base`` defaults to the pretrained one."""
    item = settings.transfer(transfer)
    spec = settings.run_spec(transfer_run_keys(transfer)[1])
    tuning: FineTuning = item.finetune
    base = base if base is not None else load_base(settings, transfer, weights_dir)
    # Safe mode: the head file is ours, but nothing loaded may run code.
    head = load_keras_model(head_dir / KERAS_MODEL)
    shape = prepared_input_shape(prepared_dir, spec.image_size)
    if tuple(base.inputs[0].shape[1:]) != shape:
        raise ValueError(
            f"the base takes {tuple(base.inputs[0].shape[1:])}, the images are {shape}"
        )
    return train_keras(
        settings,
        spec,
        prepared_dir,
        model_dir,
        out_dir,
        build=lambda _shape, _classes: finetune_model(
            base, head, tuning.trainable_from, spec.variant
        ),
        extra_params={"base": item.base, "trainable_from": tuning.trainable_from},
        verbose=verbose,
    )


main = stage_command(finetune, VARIANTS)
