"""Reader for CIFAR-10's python version (``cifar-10-python.tar.gz``).

The archive holds ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``,
each a pickled dict (protocol 2, keys as bytes): ``data`` is (N, 3072) uint8, the 1,024
red, then green, then blue values of each 32x32 image, row by row; ``labels`` a list.
The archive is read in place, its members checked like any archive's. The pickles are
loaded by an unpickler that can build only dicts, lists, bytes, numbers and NumPy arrays:
even a file that matched its checksum never gets to run code.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from convbench.core.errors import ConvbenchError
from convbench.data.archives import iter_members

ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class CifarFormatError(ConvbenchError, ValueError):
    """The CIFAR-10 archive or one of its batches is not in the expected format."""


class _ArraysOnly(pickle.Unpickler):
    """An unpickler for plain data and NumPy arrays, nothing else."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        # Python 3 writes bytes at protocol 2 as _codecs.encode(text, "latin1"): pure.
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module == "_codecs":
            import codecs

            return codecs.encode
        if name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct

            return _reconstruct
        return getattr(np, name)


def _unpickle(name: str, data: bytes) -> dict[bytes, Any]:
    try:
        batch = _ArraysOnly(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise CifarFormatError(f"{name}: not a CIFAR-10 batch ({error})") from None
    if not isinstance(batch, dict):
        raise CifarFormatError(f"{name}: expected a dict, got {type(batch).__name__}")
    return batch


def _images_and_labels(name: str, batch: dict[bytes, Any]) -> tuple[np.ndarray, np.ndarray]:
    try:
        data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"], dtype=np.int64)
    except KeyError as error:
        raise CifarFormatError(f"{name}: no {error.args[0]!r} entry") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise CifarFormatError(f"{name}: data is {data.dtype} {data.shape}, not uint8 (N, 3072)")
    if len(labels) != len(data):
        raise CifarFormatError(f"{name}: {len(data)} images but {len(labels)} labels")
    # Channel planes to channels-last: (N, 3, 32, 32) -> (N, 32, 32, 3).
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def load_cifar10(raw_dir: Path, name: str = ARCHIVE) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) for the ``train`` and ``test`` splits,
    from the archive ``raw_dir/name``."""
    archive = raw_dir / name
    wanted = {f"{FOLDER}/{name}" for name in (*TRAIN_BATCHES, TEST_BATCH)}
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for member, data in iter_members(archive):
        if member.name in wanted:
            name = member.name.rsplit("/", 1)[1]
            batches[name] = _images_and_labels(f"{archive}:{name}", _unpickle(name, data))
    missing = sorted(wanted - {f"{FOLDER}/{name}" for name in batches})
    if missing:
        raise CifarFormatError(f"{archive}: missing {', '.join(missing)}")
    train = [batches[name] for name in TRAIN_BATCHES]
    return {
        "train": (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
        "test": batches[TEST_BATCH],
    }
