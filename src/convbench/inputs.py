"""tf.data input pipelines over prepared arrays: shuffle, batch, scale, cache, prefetch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# Cache scaled float32 tensors only while they stay this small; above it the uint8
# arrays (already in memory) are scaled again each epoch, which costs little.
CACHE_LIMIT_BYTES = 2 * 1024**3


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    normalize: bool,
    shuffle: bool,
    seed: int,
) -> tf.data.Dataset:
    """Batches of (float32 images, int labels); pixels /255 when ``normalize``."""
    scale = 1.0 / 255.0 if normalize else 1.0

    def to_float(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.cast(image, tf.float32) * scale, label

    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    dataset = dataset.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if images.size * 4 <= CACHE_LIMIT_BYTES:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def scaled(images: np.ndarray, normalize: bool) -> np.ndarray:
    """The same scaling as the pipeline, for models that take plain arrays."""
    out = images.astype(np.float32)
    return out / 255.0 if normalize else out
