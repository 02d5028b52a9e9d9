"""Raw data sets as arrays, whatever their published format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convbench.data.cifar import load_cifar10
from convbench.data.idx import load_mnist
from convbench.settings import Dataset

Splits = dict[str, tuple[np.ndarray, np.ndarray]]

# Array datasets; image_folders datasets are read by convbench.data.image_archive instead.
_READERS = {"idx": load_mnist, "cifar10_python": load_cifar10}


def load_raw(dataset: Dataset, raw_dir: Path) -> Splits:
    """Images as (N, H, W, C) uint8 and integer labels, per published split."""
    if dataset.format not in _READERS:
        raise ValueError(f"format {dataset.format!r} is not an array dataset")
    splits = _READERS[dataset.format](raw_dir)
    return {split: (_with_channels(images), labels) for split, (images, labels) in splits.items()}


def _with_channels(images: np.ndarray) -> np.ndarray:
    return images[..., np.newaxis] if images.ndim == 3 else images
