import gzip
from pathlib import Path

import numpy as np
import pytest

from convbench.data.idx import IdxFormatError, load_idx, read_idx
from convbench.data.prepare import Roles, load_prepared, prepare, prepared_info, save_prepared
from convbench.settings import Profile
from tests.conftest import SHARED_DATASETS, needs_mirror, tiny_digits


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def load_mnist(folder: Path) -> dict:
    return load_idx(folder, MNIST_FILES)


def tiny_mnist_dir(folder: Path, train: int = 200, test: int = 50) -> Path:
    for split, count in (("train", train), ("test", test)):
        images_name, labels_name = MNIST_FILES[split]
        images, labels = tiny_digits(count, seed=0 if split == "train" else 1)
        write_idx(folder / images_name, images)
        write_idx(folder / labels_name, labels)
    return folder


def test_idx_round_trip(tmp_path: Path) -> None:
    splits = load_mnist(tiny_mnist_dir(tmp_path))
    images, labels = splits["train"]
    assert images.shape == (200, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, tiny_digits(200)[1])


def test_truncated_idx_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken-idx1-ubyte.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(bytes([0, 0, 0x08, 1]) + np.array([10], ">u4").tobytes() + b"\x01\x02")
    with pytest.raises(IdxFormatError, match=r"broken-idx1-ubyte\.gz.*10 bytes.*holds 2"):
        read_idx(path)


@needs_mirror
def test_real_mnist_files() -> None:
    splits = load_mnist(SHARED_DATASETS)
    assert {k: len(v[1]) for k, v in splits.items()} == {"train": 60_000, "test": 10_000}


CARVE = Roles(validation_fraction=0.2)  # validation carved from train, test as published


def splits(count: int = 300) -> dict:
    return {"train": tiny_digits(count), "test": tiny_digits(60, seed=1)}


def test_validation_split_is_seeded_stratified_and_disjoint() -> None:
    profile = Profile(description="all")
    first = prepare(splits(), CARVE, seed=7, profile=profile)
    again = prepare(splits(), CARVE, seed=7, profile=profile)
    other = prepare(splits(), CARVE, seed=8, profile=profile)
    np.testing.assert_array_equal(first["validation"][0], again["validation"][0])
    assert not np.array_equal(first["validation"][0], other["validation"][0])
    assert len(first["train"][1]) == 240 and len(first["validation"][1]) == 60
    assert np.bincount(first["validation"][1]).tolist() == [6] * 10  # stratified
    np.testing.assert_array_equal(first["test"][0], splits()["test"][0])  # test untouched


def test_profile_limits_and_round_trip(tmp_path: Path) -> None:
    profile = Profile(description="tiny", train_limit=50, validation_limit=10, test_limit=20)
    prepared = prepare(splits(), CARVE, seed=0, profile=profile)
    info = save_prepared(prepared, tmp_path / "prepared", list(range(10)))
    assert {k: v["count"] for k, v in info["splits"].items()} == {
        "train": 50,
        "validation": 10,
        "test": 20,
    }
    images, labels = load_prepared(tmp_path / "prepared", "train")
    assert images.shape == (50, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, prepared["train"][1])
    assert prepared_info(tmp_path / "prepared")["sha256"] == info["sha256"]
