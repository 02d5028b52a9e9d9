"""Transfer learning with a pretrained base (VGG16): features once, a head, fine-tuning.

1. :func:`extract_features` runs the frozen base ONCE over the un-augmented images of
   every split and stores the features as a prepared array dataset (a DVC output), so
   retraining the head never recomputes them. The time it took is kept with them: it is
   the cost the decks want seen apart from the classifier's training.
2. :func:`train_head` trains the small classifier on the stored features
   (run ``<key>_features``).
3. :func:`finetune` puts that trained head on the base, unfreezes the base from
   ``trainable_from`` on (the last convolutional block by default) and trains both with
   a small learning rate on augmented images (run ``<key>_finetune``).

The base's weights come only from the verified weights file (:func:`pretrained_base`);
the functions above take the base as an argument, so tests can wire them with an
untrained base of the same shape, and nothing here can pass random weights off as
pretrained.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from convbench.data.download import WeightsUnavailableError, mismatch
from convbench.data.prepare import SPLITS, prepared_info, save_prepared
from convbench.data.sources import SOURCES, Source
from convbench.inputs.pipeline import PipelineOptions, prepared_dataset, prepared_input_shape
from convbench.models.saving import load_keras_model
from convbench.models.vgg16 import BASES, finetune_model
from convbench.settings import KerasRun, Settings, Training, transfer_run_keys
from convbench.training.devices import configure_runtime, describe_device
from convbench.training.fit import KERAS_MODEL, RunRecord, train_keras_run

log = logging.getLogger(__name__)


def pretrained_base(
    source: Source, weights_dir: Path, input_shape: tuple[int, ...], architecture: str
) -> keras.Model:
    """The base with its published weights, checked against their pin before they load."""
    file = source.files[0]
    path = weights_dir / file.name
    if not path.is_file():
        raise WeightsUnavailableError(
            f"ImageNet weights unavailable: {path} is missing; to provide them: "
            f"{source.how_to_provide}, then run the download_weights stage"
        )
    failed = mismatch(file, path, str(path))
    if failed is not None:  # not "unavailable": something replaced a verified file
        raise failed
    return BASES[architecture](input_shape, path)


def extract_features(
    settings: Settings, key: str, prepared_dir: Path, base: keras.Model, out_dir: Path
) -> dict[str, Any]:
    """Run the frozen ``base`` once over every split's un-augmented images; store the result."""
    item = settings.transfer(key)
    size = settings.image_size(item.dataset)
    options = PipelineOptions(batch_size=item.feature_batch_size, normalize=item.normalize)
    base.trainable = False
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    seconds: dict[str, float] = {}
    for split in SPLITS:
        dataset, count = prepared_dataset(prepared_dir, split, size, options)
        features, labels = [], []
        started = time.perf_counter()
        for images, batch_labels in dataset:
            # float32 on disk whatever precision the base ran in (load_base_for's runtime).
            features.append(np.asarray(base.predict_on_batch(images), dtype=np.float32))
            labels.append(np.asarray(batch_labels))
        seconds[split] = time.perf_counter() - started
        splits[split] = (np.concatenate(features), np.concatenate(labels))
        log.info(
            "%s: %d %s images -> features %s in %.1fs",
            key,
            count,
            split,
            features[0].shape[1:],
            seconds[split],
        )
    total = sum(seconds.values())
    images = sum(len(labels) for _, labels in splits.values())
    extraction = {
        "seconds": total,
        "seconds_per_split": seconds,
        "images": images,
        "images_per_second": images / total if total else None,
        "base": base.name,
        "image_size": list(size),
        **describe_device(),
    }
    classes = prepared_info(prepared_dir)["classes"]
    return save_prepared(splits, out_dir, classes, extra={"feature_extraction": extraction})


def _as_run(
    item_dataset: str, variant: str, training: Training, normalize: bool, augmentation: Any
) -> KerasRun:
    fields = training.model_dump(exclude={"augmentation", "trainable_from"})
    return KerasRun(
        dataset=item_dataset,
        variant=variant,
        normalize=normalize,
        augmentation=augmentation,
        **fields,
    )


def _architecture(settings: Settings, key: str) -> str:
    return settings.params.pretrained[settings.transfer(key).base].architecture


def train_head(
    settings: Settings,
    key: str,
    features_dir: Path,
    model_dir: Path,
    out_dir: Path,
    verbose: int = 2,
) -> dict[str, Any]:
    """Train the classifier on the stored features (run ``<key>_features``)."""
    item = settings.transfer(key)
    run_key = transfer_run_keys(key)[0]
    info = prepared_info(features_dir)
    extraction = info["feature_extraction"]
    # The features are already scaled images seen through the base: no /255, no augmentation.
    run = _as_run(item.dataset, f"{_architecture(settings, key)}_features", item.head, False, None)
    record = RunRecord(run_key, item.dataset, run.variant, info["sha256"])
    return train_keras_run(
        settings,
        record,
        run,
        features_dir,
        model_dir,
        out_dir,
        extra_params={"base": item.base, "feature_batch_size": item.feature_batch_size},
        extra_metrics={
            "feature_extraction_seconds": extraction["seconds"],
            "feature_extraction_images_per_second": extraction["images_per_second"] or 0.0,
        },
        verbose=verbose,
    )


def finetune(
    settings: Settings,
    key: str,
    prepared_dir: Path,
    head_dir: Path,
    base: keras.Model,
    model_dir: Path,
    out_dir: Path,
    verbose: int = 2,
) -> dict[str, Any]:
    """Fine-tune the base's last block(s) with the trained head (run ``<key>_finetune``)."""
    item = settings.transfer(key)
    run_key = transfer_run_keys(key)[1]
    tuning = item.finetune
    run = _as_run(
        item.dataset,
        f"{_architecture(settings, key)}_finetune",
        tuning,
        item.normalize,
        tuning.augmentation,
    )
    # safe_mode: the head file is ours, but nothing loaded may run code.
    head = load_keras_model(head_dir / KERAS_MODEL)
    size = settings.image_size(item.dataset)
    if tuple(base.inputs[0].shape[1:]) != prepared_input_shape(prepared_dir, size):
        raise ValueError(
            f"the base takes {tuple(base.inputs[0].shape[1:])}, the images are "
            f"{prepared_input_shape(prepared_dir, size)}"
        )

    def build(_shape: tuple[int, int, int], _classes: int) -> keras.Model:
        return finetune_model(base, head, tuning.trainable_from, run.variant)

    record = RunRecord(run_key, item.dataset, run.variant, prepared_info(prepared_dir)["sha256"])
    summary = train_keras_run(
        settings,
        record,
        run,
        prepared_dir,
        model_dir,
        out_dir,
        build=build,
        extra_params={"base": item.base, "trainable_from": tuning.trainable_from},
        verbose=verbose,
    )
    return summary


def load_base_for(settings: Settings, key: str, weights_dir: Path) -> keras.Model:
    """The pretrained base of transfer entry ``key``, for its dataset's image size."""
    item = settings.transfer(key)
    pretrained = settings.params.pretrained[item.base]
    size = settings.image_size(item.dataset)
    # Device, memory and precision set before the base is built: they decide its layers.
    configure_runtime(settings.params.runtime)
    return pretrained_base(
        SOURCES[pretrained.source], weights_dir, (*size, 3), pretrained.architecture
    )
