"""DVC stage ``finetune``: the pretrained base trained from its ``trainable_from`` layer
on, with the head from ``train_head``, on augmented images (run ``<transfer>_finetune``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convbench.inputs.pipeline import prepared_input_shape
from convbench.models.bases import attach_head, unfreeze_from
from convbench.models.saving import KERAS_MODEL, load_keras_model
from convbench.models.variants import VARIANTS
from convbench.settings import Settings, SettingsError, transfer_run_keys
from convbench.stages.entry import stage_command
from convbench.stages.extract_features import base_input, load_base, preprocess_mode
from convbench.stages.keras_run import train_keras


def trainable_from(settings: Settings, transfer: str) -> tuple[str, str]:
    """(the layer fine-tuning trains from, the params key that names it)."""
    item = settings.transfer(transfer)
    if item.finetune.trainable_from is not None:
        return item.finetune.trainable_from, f"transfer.{transfer}.finetune.trainable_from"
    return settings.params.pretrained[item.base].trainable_from, (
        f"pretrained.{item.base}.trainable_from"
    )


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
    start, key = trainable_from(settings, transfer)
    base_input(settings, transfer)  # grey, too small or unknown: refused before any build
    base = base if base is not None else load_base(settings, transfer, weights_dir)
    try:  # before anything else is read: a wrong name is a settings error
        unfreeze_from(base, start)
    except ValueError as error:
        raise SettingsError(f"{key}: {error}") from None
    # Safe mode: the head file is ours, but nothing loaded may run code.
    head = load_keras_model(head_dir / KERAS_MODEL)
    shape = prepared_input_shape(prepared_dir, spec.image_size)
    if tuple(base.inputs[0].shape[1:]) != shape:
        raise ValueError(
            f"the base takes {tuple(base.inputs[0].shape[1:])}, the images are {shape}"
        )
    mode = preprocess_mode(settings, transfer)
    return train_keras(
        settings,
        spec,
        prepared_dir,
        model_dir,
        out_dir,
        build=lambda _shape, _classes: attach_head(base, head, spec.variant, mode),
        extra_params={"base": item.base, "trainable_from": start},
        verbose=verbose,
    )


main = stage_command(finetune, VARIANTS)
