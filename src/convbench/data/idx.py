"""Readers for the idx format (MNIST's): an images and a labels file per split,
gzip-compressed or not."""

from __future__ import annotations

import gzip
from collections.abc import Mapping
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


def load_idx(
    raw_dir: Path, files: Mapping[str, tuple[str, str]]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Images (N, H, W) and labels (N,) per split; ``files``: split -> (images, labels)
    file names in ``raw_dir``."""
    splits = {}
    for split, (images_name, labels_name) in files.items():
        images = read_idx(raw_dir / images_name)
        labels = read_idx(raw_dir / labels_name)
        if len(images) != len(labels):
            raise IdxFormatError(
                f"{raw_dir / images_name}: {len(images)} images but "
                f"{raw_dir / labels_name} has {len(labels)} labels"
            )
        splits[split] = (images, labels.astype(np.int64))
    return splits
