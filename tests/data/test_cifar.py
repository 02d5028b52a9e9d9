"""The CIFAR-10 reader, on a tiny archive made here in the real python-version format."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from convbench.data.cifar import CifarFormatError, load_cifar10
from convbench.data.prepare import load_prepared
from convbench.settings import Settings
from convbench.stages.prepare import prepare_dataset
from convbench.stages.validate import validate_dataset
from tests.conftest import with_dataset

PER_BATCH = 20


def batch_images(count: int, seed: int) -> np.ndarray:
    """(count, 32, 32, 3) uint8: each colour plane holds a different constant ramp."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)


def pickled_batch(images: np.ndarray, labels: list[int], name: str) -> bytes:
    # The published layout: (N, 3072), all red values, then green, then blue, row by row.
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    batch = {
        b"batch_label": name.encode(),
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    return pickle.dumps(batch, protocol=2)


def add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def cifar_archive(raw: Path, poison: bytes | None = None) -> dict[str, np.ndarray]:
    """Write raw/cifar-10-python.tar.gz; return the images it holds, per split."""
    raw.mkdir(parents=True, exist_ok=True)
    made: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    with tarfile.open(raw / "cifar-10-python.tar.gz", "w:gz") as archive:
        meta = {b"label_names": [b"airplane", b"automobile"], b"num_cases_per_batch": PER_BATCH}
        add(archive, "batches.meta", pickle.dumps(meta, protocol=2))
        for index, name in enumerate([*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]):
            images = batch_images(PER_BATCH, index)
            labels = [i % 10 for i in range(index * PER_BATCH, (index + 1) * PER_BATCH)]
            data = poison if (poison and name == "data_batch_3") else None
            add(archive, name, data or pickled_batch(images, labels, name))
            made["test" if name == "test_batch" else "train"].append(images)
        add(archive, "readme.html", b"<p>the archive has one of these</p>")
    return {split: np.concatenate(parts) for split, parts in made.items()}


def test_reads_the_real_layout(tmp_path: Path) -> None:
    made = cifar_archive(tmp_path)
    splits = load_cifar10(tmp_path)
    assert splits["train"][0].shape == (5 * PER_BATCH, 32, 32, 3)
    assert splits["test"][0].shape == (PER_BATCH, 32, 32, 3)
    # Channel planes came back as channels-last pixels, batches in order 1..5.
    np.testing.assert_array_equal(splits["train"][0], made["train"])
    np.testing.assert_array_equal(splits["test"][0], made["test"])
    assert splits["train"][1][:PER_BATCH].tolist() == [i % 10 for i in range(PER_BATCH)]
    assert splits["train"][1].dtype == np.int64


class Exploit:
    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned > /tmp/convbench-pwned",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    cifar_archive(tmp_path, poison=pickle.dumps({b"data": Exploit()}, protocol=2))
    with pytest.raises(CifarFormatError, match=r"data_batch_3.*refusing to load posix\.system"):
        load_cifar10(tmp_path)
    assert not Path("/tmp/convbench-pwned").exists()


def test_missing_batch_is_named(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as archive:
        add(archive, "data_batch_1", pickled_batch(batch_images(2, 0), [0, 1], "b1"))
    with pytest.raises(CifarFormatError, match=r"missing .*data_batch_2.*test_batch"):
        load_cifar10(tmp_path)


def test_validate_and_prepare_a_tiny_cifar(ci_settings: Settings, tmp_path: Path) -> None:
    settings = with_dataset(
        ci_settings, "cifar10", split_counts={"train": 5 * PER_BATCH, "test": PER_BATCH}
    )
    cifar_archive(tmp_path / "raw")
    summary = validate_dataset(
        settings, "cifar10", tmp_path / "raw", tmp_path / "validated", tmp_path / "report"
    )
    assert summary["success"] and summary["rows"] == 6 * PER_BATCH
    info = prepare_dataset(
        settings,
        "cifar10",
        tmp_path / "raw",
        tmp_path / "validated",
        tmp_path / "report" / "summary.json",
        tmp_path / "prepared",
    )
    assert {s: v["count"] for s, v in info["splits"].items()} == {
        "train": 90,
        "validation": 10,  # 10% carved out of train
        "test": PER_BATCH,
    }
    images, _ = load_prepared(tmp_path / "prepared", "test")
    assert images.shape == (PER_BATCH, 32, 32, 3)
