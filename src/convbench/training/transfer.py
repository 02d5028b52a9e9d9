"""Transfer learning's own computations: the pretrained base with verified weights, and
the one pass of the frozen base that turns images into stored features.

1. :func:`pretrained_base` builds the base and loads the published weights file, checked
   against its pin just before Keras reads it: nothing here can pass random weights off
   as pretrained.
2. :func:`extract_features` runs the frozen base ONCE over the un-augmented images of
   every split, so retraining the head never recomputes them; the time it took is kept
   with them: the cost the decks want seen apart from the classifier's training.

Training the head and fine-tuning are ordinary Keras runs (``convbench.stages``); the
functions here take the base as an argument, so tests wire them with an untrained base.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from convbench.data.download import WeightsUnavailableError, mismatch
from convbench.data.prepare import SPLITS
from convbench.inputs.pipeline import PipelineOptions, prepared_dataset
from convbench.models.bases import build_base
from convbench.settings import Pretrained
from convbench.training.devices import describe_device

log = logging.getLogger(__name__)


def pretrained_base(pretrained: Pretrained, weights_dir: Path, input_shape: tuple[int, ...]) -> Any:
    """The base with its published weights, checked against their pin before they load."""
    file = pretrained.source.files[0]
    path = weights_dir / file.name
    if not path.is_file():
        raise WeightsUnavailableError(
            f"ImageNet weights unavailable: {path} is missing; to provide them: "
            f"{pretrained.source.help}, then run the download_weights stage"
        )
    failed = mismatch(file, path, str(path))
    if failed is not None:  # not "unavailable": something replaced a verified file
        raise failed
    return build_base(pretrained.application, input_shape, path)


def extract_features(
    base: Any, prepared_dir: Path, size: tuple[int, int], batch_size: int, normalize: bool
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """Run the frozen ``base`` once over every split's un-augmented images.

    Returns each split's (features, labels) and what the extraction cost.
    """
    options = PipelineOptions(batch_size=batch_size, normalize=normalize)
    base.trainable = False
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    seconds: dict[str, float] = {}
    for split in SPLITS:
        dataset, count = prepared_dataset(prepared_dir, split, size, options)
        features, labels = [], []
        started = time.perf_counter()
        for images, batch_labels in dataset:
            # float32 on disk whatever precision the base ran in.
            features.append(np.asarray(base.predict_on_batch(images), dtype=np.float32))
            labels.append(np.asarray(batch_labels))
        seconds[split] = time.perf_counter() - started
        splits[split] = (np.concatenate(features), np.concatenate(labels))
        log.info(
            "%d %s images -> features %s in %.1fs",
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
    return splits, extraction
