"""Reader for arrays published as one ``.npz`` (``keras.datasets``' ``mnist.npz``)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from convbench.core.errors import ConvbenchError

KEYS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}


class NpzFormatError(ConvbenchError, ValueError):
    """A file is not the .npz convbench reads; the message names it and what is wrong."""


def load_npz(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Images (N, H, W[, C]) and integer labels (N,) of the train and test splits."""
    try:
        # allow_pickle=False: an .npz from the internet must not run code when read.
        with np.load(path, allow_pickle=False) as data:
            missing = [key for pair in KEYS.values() for key in pair if key not in data]
            if missing:
                raise NpzFormatError(
                    f"{path}: missing arrays {missing}; an .npz dataset holds "
                    f"{[key for pair in KEYS.values() for key in pair]} (has {sorted(data)})"
                )
            splits = {split: (data[x], data[y]) for split, (x, y) in KEYS.items()}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        if isinstance(error, NpzFormatError):
            raise
        raise NpzFormatError(f"{path}: cannot be read as .npz ({error})") from None
    for split, (images, labels) in splits.items():
        x, y = KEYS[split]
        if images.ndim not in (3, 4) or len(images) != len(labels) or labels.ndim != 1:
            raise NpzFormatError(
                f"{path}: {x} has shape {images.shape} and {y} {labels.shape}; "
                "expected (N, H, W[, C]) images and N labels"
            )
        if images.dtype != np.uint8 or not np.issubdtype(labels.dtype, np.integer):
            raise NpzFormatError(
                f"{path}: {x} is {images.dtype} and {y} {labels.dtype}; expected uint8 "
                "pixels (0-255) and integer labels"
            )
    return {split: (images, labels.astype(np.int64)) for split, (images, labels) in splits.items()}
