"""Readers for the MNIST idx format (the four original ``.gz`` files)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from convbench.core.errors import ConvbenchError

# idx magic: two zero bytes, a type code, then the number of dimensions.
_IDX_TYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxFormatError(ConvbenchError, ValueError):
    """A file is not a valid idx file; the message names it."""


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (gzip-compressed or not) into an array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise IdxFormatError(f"{path}: cannot be read as idx ({error})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise IdxFormatError(f"{path}: bad idx header {data[:4]!r}")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(v) for v in np.frombuffer(data[4:header], dtype=">u4"))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise IdxFormatError(
            f"{path}: header declares shape {shape} ({expected} bytes) "
            f"but the file holds {len(data) - header} bytes"
        )
    return (
        np.frombuffer(data, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def load_mnist(raw_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Images (N, 28, 28) uint8 and labels (N,) per split from the original idx files."""
    splits = {}
    for split, (images_name, labels_name) in MNIST_FILES.items():
        images = read_idx(raw_dir / images_name)
        labels = read_idx(raw_dir / labels_name)
        if len(images) != len(labels):
            raise IdxFormatError(
                f"{raw_dir / images_name}: {len(images)} images but "
                f"{raw_dir / labels_name} has {len(labels)} labels"
            )
        splits[split] = (images, labels.astype(np.int64))
    return splits
