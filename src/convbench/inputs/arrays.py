"""Batches of in-memory arrays without TensorFlow: what a non-TensorFlow backend (JAX)
trains on when the data are arrays (MNIST, CIFAR-10) and nothing is augmented.

The same steps as the tf.data pipeline for arrays: shuffle (training, a new order each
epoch, the same sequence for the same seed) → batch → scale to float32.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import keras
import numpy as np

if TYPE_CHECKING:
    from convbench.inputs.pipeline import PipelineOptions


class ArrayBatches(keras.utils.PyDataset):
    """(float32 images, labels) batches from uint8 arrays (N, H, W[, C])."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, options: PipelineOptions) -> None:
        super().__init__()  # one worker, no processes: slicing arrays needs none
        self.images = images
        self.labels = labels
        self.options = options
        self._scale = np.float32(1.0 / 255.0 if options.normalize else 1.0)
        self._epoch = 0
        self._order = self._permutation()

    def _permutation(self) -> np.ndarray | None:
        if not self.options.shuffle:
            return None
        rng = np.random.default_rng([self.options.seed, self._epoch])
        return rng.permutation(len(self.labels))

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.options.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(index)  # ends a plain ``for`` over the batches
        size = self.options.batch_size
        rows: slice | np.ndarray = slice(index * size, (index + 1) * size)
        if self._order is not None:
            rows = self._order[rows]
        # float32 times float32(1/255): the same numbers as the tf.data pipeline's scaling.
        return self.images[rows].astype(np.float32) * self._scale, self.labels[rows]

    def on_epoch_end(self) -> None:
        self._epoch += 1
        self._order = self._permutation()
