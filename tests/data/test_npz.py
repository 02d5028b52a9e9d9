from pathlib import Path

import numpy as np
import pytest

from convbench.data.npz import NpzFormatError, load_npz
from tests.conftest import SHARED_DATASETS, needs_mirror, tiny_digits


def test_npz_round_trip(tmp_path: Path) -> None:
    (x_train, y_train), (x_test, y_test) = tiny_digits(30), tiny_digits(10, seed=1)
    path = tmp_path / "digits.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    splits = load_npz(path)
    np.testing.assert_array_equal(splits["train"][0], x_train)
    np.testing.assert_array_equal(splits["test"][1], y_test)
    assert splits["train"][1].dtype == np.int64


def test_a_bad_npz_names_the_file_and_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "half.npz"
    np.savez(path, x_train=np.zeros((2, 4, 4), np.uint8), y_train=np.zeros(2, np.int64))
    with pytest.raises(NpzFormatError, match=r"half\.npz: missing arrays \['x_test', 'y_test'\]"):
        load_npz(path)
    floats = tmp_path / "floats.npz"
    arrays = {"x_train": np.zeros((2, 4, 4)), "y_train": np.zeros(2, np.int64)}
    np.savez(floats, **arrays, x_test=arrays["x_train"], y_test=arrays["y_train"])
    with pytest.raises(NpzFormatError, match=r"floats\.npz: x_train is float64"):
        load_npz(floats)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(NpzFormatError, match=r"text\.npz: cannot be read as \.npz"):
        load_npz(text)


@needs_mirror
def test_real_keras_mnist_npz() -> None:
    splits = load_npz(SHARED_DATASETS / "mnist.npz")
    assert {k: v[0].shape for k, v in splits.items()} == {
        "train": (60_000, 28, 28),
        "test": (10_000, 28, 28),
    }
