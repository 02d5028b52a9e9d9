"""tf.data pipelines over prepared data: arrays (MNIST, CIFAR-10) or JPEG shards.

Both give batches of (float32 images, int labels) through the same steps:
read → [decode + resize: shards only] → cache → shuffle (training) → batch →
augment (training batches of runs that ask for it) → scale → prefetch.
Decoding and resizing run as a parallel map; the cache keeps decoded uint8 images when
they fit under ``CACHE_LIMIT_BYTES``, so from the second epoch on only augmentation is
left to compute. Validation, test and feature extraction never augment.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from convbench.data.shards import parse
from convbench.inputs.augment import augment_batch

if TYPE_CHECKING:
    from convbench.inputs.pipeline import PipelineOptions

AUTOTUNE = tf.data.AUTOTUNE
# Cache decoded uint8 images only while they stay this small (2,000 Cats vs Dogs at
# 150x150 are 135 MB; the full Kaggle set is 1.5 GB).
CACHE_LIMIT_BYTES = 2 * 1024**3


def _finish(
    dataset: tf.data.Dataset, count: int, pixel_bytes: int, options: PipelineOptions
) -> tf.data.Dataset:
    """Cache, shuffle, batch, augment, scale and prefetch a dataset of (uint8 image, label)."""
    if options.cache and count * pixel_bytes <= CACHE_LIMIT_BYTES:
        dataset = dataset.cache()
    if options.shuffle:
        dataset = dataset.shuffle(count, seed=options.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(options.batch_size)
    scale = 1.0 / 255.0 if options.normalize else 1.0
    if options.augmentation is not None:
        settings = options.augmentation
        # One seed per batch, new ones each epoch, the same sequence for the same run seed.
        seeds = tf.data.Dataset.random(seed=options.seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip(dataset, seeds).map(
            lambda batch, seed: (augment_batch(batch[0], settings, seed) * scale, batch[1]),
            num_parallel_calls=AUTOTUNE,
        )
    else:
        dataset = dataset.map(
            lambda images, labels: (tf.cast(images, tf.float32) * scale, labels),
            num_parallel_calls=AUTOTUNE,
        )
    return dataset.prefetch(AUTOTUNE)


def array_dataset(
    images: np.ndarray, labels: np.ndarray, options: PipelineOptions
) -> tf.data.Dataset:
    """Batches from in-memory uint8 arrays (N, H, W, C)."""
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    # The arrays are in memory already: a cache would only copy them.
    return _finish(dataset, len(labels), 0, replace(options, cache=False))


def decode_and_resize(encoded: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """A JPEG's pixels resized (bilinear) to ``size``, as uint8 (H, W, 3)."""
    image = tf.io.decode_jpeg(encoded, channels=3)
    resized = tf.image.resize(image, size, method="bilinear", antialias=False)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def shard_dataset(
    files: list[Path], count: int, size: tuple[int, int], options: PipelineOptions
) -> tf.data.Dataset:
    """Batches from TFRecord shards of JPEGs, decoded and resized to ``size`` in parallel."""
    dataset = tf.data.TFRecordDataset([str(f) for f in files], num_parallel_reads=AUTOTUNE)

    def decode(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        encoded, label, _ = parse(record)
        return decode_and_resize(encoded, size), label

    dataset = dataset.map(decode, num_parallel_calls=AUTOTUNE)
    # TFRecord files do not say how many records they hold; Keras needs it for its steps.
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(count))
    return _finish(dataset, count, size[0] * size[1] * 3, options)
