"""Raw data sets as arrays, whatever their published format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convbench.data.cifar import load_cifar10
from convbench.data.idx import load_idx
from convbench.data.npz import load_npz
from convbench.settings import Dataset

Splits = dict[str, tuple[np.ndarray, np.ndarray]]

ARRAY_FORMATS = ("idx", "npz", "cifar10_python")  # image_folders: see image_archive


def idx_files(dataset: Dataset) -> dict[str, tuple[str, str]]:
    """split -> (images file, labels file), as the dataset's source declares them."""
    names: dict[str, dict[str, str]] = {}
    for file in dataset.source.files:
        assert file.split is not None and file.holds is not None  # the schema checks it
        names.setdefault(file.split, {})[file.holds] = file.name
    return {split: (held["images"], held["labels"]) for split, held in names.items()}


def load_raw(dataset: Dataset, raw_dir: Path) -> Splits:
    """Images as (N, H, W, C) uint8 and integer labels, per published split."""
    if dataset.format == "idx":
        splits = load_idx(raw_dir, idx_files(dataset))
    elif dataset.format == "npz":
        splits = load_npz(raw_dir / dataset.source.files[0].name)
    elif dataset.format == "cifar10_python":
        splits = load_cifar10(raw_dir, dataset.source.files[0].name)
    else:
        raise ValueError(f"format {dataset.format!r} is not an array dataset")
    return {split: (_with_channels(images), labels) for split, (images, labels) in splits.items()}


def _with_channels(images: np.ndarray) -> np.ndarray:
    return images[..., np.newaxis] if images.ndim == 3 else images
