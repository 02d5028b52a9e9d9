"""The input pipeline over prepared data (arrays or JPEG shards), whichever backend trains.

Batches of (float32 images, int labels). Under TensorFlow, and wherever shards or
augmentation are involved, they come from tf.data (:mod:`.tfdata`); under another
backend (JAX), plain arrays come through :mod:`.arrays`, so such a process needs no
TensorFlow at all. Validation, test and feature extraction never augment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from convbench.core.errors import ConvbenchError
from convbench.data.prepare import ARRAYS, load_prepared, prepared_info, shard_files
from convbench.settings import Augmentation


class InputPipelineError(ConvbenchError, RuntimeError):
    """The pipeline the data needs cannot be had in this environment."""


@dataclass(frozen=True)
class PipelineOptions:
    batch_size: int
    normalize: bool = True  # pixels /255, or raw 0-255
    shuffle: bool = False
    augmentation: Augmentation | None = None
    seed: int = 0
    cache: bool = True


def scaled(images: np.ndarray, normalize: bool) -> np.ndarray:
    """The same scaling as the pipeline, for models that take plain arrays."""
    out = images.astype(np.float32)
    return out / 255.0 if normalize else out


def first_images(dataset: Any, count: int) -> np.ndarray:
    """Up to ``count`` images from the start of a batched pipeline, as a NumPy array."""
    taken = []
    for images, _ in dataset:
        taken.append(np.asarray(images))
        if sum(len(t) for t in taken) >= count:
            break
    return np.concatenate(taken)[:count]


def prepared_dataset(
    prepared_dir: Path, split: str, size: tuple[int, int], options: PipelineOptions
) -> tuple[Any, int]:
    """The pipeline over one prepared split (a tf.data dataset or a Keras PyDataset),
    and its number of images.

    ``size`` is what shard images are resized to; arrays keep their own size.
    """
    info = prepared_info(prepared_dir)
    if info.get("format", ARRAYS) == ARRAYS:
        images, labels = load_prepared(prepared_dir, split)
        if options.augmentation is None and not _backend_is_tensorflow():
            from convbench.inputs.arrays import ArrayBatches

            return ArrayBatches(images, labels, options), len(labels)
        return tf_pipelines(prepared_dir).array_dataset(images, labels, options), len(labels)
    count = info["splits"][split]["count"]
    files = shard_files(prepared_dir, split)
    return tf_pipelines(prepared_dir).shard_dataset(files, count, size, options), count


def _backend_is_tensorflow() -> bool:
    import keras

    return keras.backend.backend() == "tensorflow"


def tf_pipelines(prepared_dir: Path) -> ModuleType:
    """The tf.data pipelines, or an error saying why this data needs TensorFlow."""
    try:
        from convbench.inputs import tfdata
    except ImportError as error:
        raise InputPipelineError(
            f"{prepared_dir}: JPEG shards and augmentation are read through tf.data, and "
            f"TensorFlow cannot be imported here ({error}); install tensorflow, or train "
            "array data without augmentation under runtime.backend: jax"
        ) from error
    return tfdata


def prepared_input_shape(prepared_dir: Path, size: tuple[int, int]) -> tuple[int, int, int]:
    """The shape of one image as the model gets it."""
    info = prepared_info(prepared_dir)
    if info.get("format", ARRAYS) == ARRAYS:
        shape = info["splits"]["train"]["shape"]
        return (shape[0], shape[1], shape[2] if len(shape) == 3 else 1)
    return (size[0], size[1], 3)
