"""Raw data sets as arrays, whatever their published format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convbench.config import Dataset
from convbench.idx import load_mnist

Splits = dict[str, tuple[np.ndarray, np.ndarray]]

_READERS = {"idx": load_mnist}


def load_raw(dataset: Dataset, raw_dir: Path) -> Splits:
    """Images as (N, H, W, C) uint8 and integer labels, per published split."""
    splits = _READERS[dataset.format](raw_dir)
    return {split: (_with_channels(images), labels) for split, (images, labels) in splits.items()}


def _with_channels(images: np.ndarray) -> np.ndarray:
    return images[..., np.newaxis] if images.ndim == 3 else images
