"""The manifest and its Great Expectations validation, on tiny arrays made here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from convbench.data.manifest import (
    DERIVED_COLUMNS,
    MANIFEST_COLUMNS,
    add_derived_columns,
    build_array_manifest,
)
from convbench.data.validation.checkpoint import validate_manifest
from convbench.data.validation.expectations import ImageExpectations
from convbench.data.validation.failure import DataValidationError
from convbench.data.validation.summary import write_summary

TRAIN, TEST = 20, 10
EXPECT = ImageExpectations(
    labels=tuple(range(10)),
    split_counts={"train": TRAIN, "test": TEST},
    height=28,
    width=28,
    channels=1,
)


def random_splits(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {
        "train": (rng.integers(0, 256, (TRAIN, 28, 28), dtype=np.uint8), np.arange(TRAIN) % 10),
        "test": (rng.integers(0, 256, (TEST, 28, 28), dtype=np.uint8), np.arange(TEST) % 10),
    }


def manifest_of(splits, expected=EXPECT) -> pd.DataFrame:
    return add_derived_columns(build_array_manifest(splits), expected.split_counts)


def failure_of(error: DataValidationError, kind: str) -> dict:
    matching = [f for f in error.failures if f["type"] == kind]
    assert matching, f"no {kind} among {[f['expectation'] for f in error.failures]}"
    return matching[0]


# ------------------------------------------------------------------------------ manifest


def test_build_array_manifest_columns_and_values():
    splits = random_splits()
    images, labels = splits["train"]
    images[0] = 7  # a flat image: min == max == 7
    images[1, 0, 0], images[1, 5, 5] = 0, 255
    manifest = build_array_manifest(splits)

    assert list(manifest.columns) == list(MANIFEST_COLUMNS)
    assert len(manifest) == TRAIN + TEST
    assert manifest["image_id"].tolist()[:2] == ["train/0", "train/1"]
    assert manifest["image_id"].iloc[TRAIN] == "test/0"
    assert manifest["split"].value_counts().to_dict() == {"train": TRAIN, "test": TEST}
    assert manifest["label"].tolist()[:TRAIN] == labels.tolist()
    assert manifest["label"].dtype == np.int64
    assert set(manifest["height"]) == {28} and set(manifest["width"]) == {28}
    assert set(manifest["channels"]) == {1} and set(manifest["dtype"]) == {"uint8"}
    assert (manifest.loc[0, "min_pixel"], manifest.loc[0, "max_pixel"]) == (7, 7)
    assert (manifest.loc[1, "min_pixel"], manifest.loc[1, "max_pixel"]) == (0, 255)
    assert manifest["min_pixel"].tolist() == [int(i.min()) for i in images] + [
        int(i.min()) for i in splits["test"][0]
    ]
    hashes = manifest["content_hash"]
    assert hashes.is_unique and hashes.str.fullmatch(r"[0-9a-f]{32}").all()


def test_content_hash_identifies_identical_images_and_shapes():
    image = np.arange(784, dtype=np.uint8).reshape(1, 28, 28)
    same = build_array_manifest({"a": (image, np.array([0])), "b": (image.copy(), np.array([1]))})
    assert same["content_hash"].nunique() == 1
    # the same bytes in another shape (or with a channel axis) are another image
    other = build_array_manifest(
        {
            "a": (image, np.array([0])),
            "b": (image.reshape(1, 14, 56), np.array([0])),
            "c": (image.reshape(1, 28, 28, 1), np.array([0])),
        }
    )
    assert other["content_hash"].nunique() == 3
    expected = hashlib.blake2b(b"(28, 28)||u1|", digest_size=16)
    expected.update(image.tobytes())
    assert same["content_hash"].iloc[0] == expected.hexdigest()


def test_colour_images_have_channels():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    manifest = build_array_manifest({"train": (images, np.array([0, 1, 2, 3]))})
    assert manifest[["height", "width", "channels"]].drop_duplicates().values.tolist() == [
        [32, 32, 3]
    ]


def test_build_array_manifest_rejects_bad_shapes():
    with pytest.raises(ValueError, match="labels"):
        build_array_manifest({"train": (np.zeros((3, 2, 2), np.uint8), np.zeros(2, int))})
    with pytest.raises(ValueError, match="shape"):
        build_array_manifest({"train": (np.zeros((3, 4), np.uint8), np.zeros(3, int))})


def test_add_derived_columns():
    splits = random_splits()
    splits["test"][0][3] = splits["train"][0][5]
    manifest = build_array_manifest(splits)
    derived = add_derived_columns(manifest, {"train": TRAIN, "test": TEST + 1})

    assert "shared_across_splits" not in manifest.columns  # a copy
    assert list(derived.columns) == [*MANIFEST_COLUMNS, *DERIVED_COLUMNS]
    shared = derived.loc[derived["shared_across_splits"], "image_id"]
    assert sorted(shared) == ["test/3", "train/5"]
    assert derived.groupby("split")["split_rows"].unique().to_dict() == {
        "test": [TEST],
        "train": [TRAIN],
    }
    assert set(derived.loc[derived["split"] == "test", "expected_split_rows"]) == {TEST + 1}
    unknown = add_derived_columns(manifest, {"train": TRAIN})
    assert set(unknown.loc[unknown["split"] == "test", "expected_split_rows"]) == {-1}


def test_duplicates_within_one_split_are_not_leakage():
    splits = random_splits()
    splits["train"][0][1] = splits["train"][0][0]
    derived = add_derived_columns(build_array_manifest(splits), EXPECT.split_counts)
    assert not derived["shared_across_splits"].any()


# ---------------------------------------------------------------------------- validation


def test_clean_manifest_passes_and_writes_summary_and_docs(tmp_path: Path):
    manifest = manifest_of(random_splits())
    docs = tmp_path / "report" / "data_docs"
    summary = validate_manifest(manifest, EXPECT, "mnist", docs)

    assert summary["success"] is True
    assert summary["dataset"] == "mnist"
    assert summary["rows"] == TRAIN + TEST
    assert summary["rows_per_split"] == {"train": TRAIN, "test": TEST}
    assert summary["evaluated_expectations"] == summary["successful_expectations"] >= 12
    assert summary["unsuccessful_expectations"] == 0
    assert summary["success_percent"] == 100.0
    kinds = {(e["type"], tuple(e["columns"])) for e in summary["expectations"]}
    assert ("expect_column_values_to_be_in_set", ("shared_across_splits",)) in kinds
    assert ("expect_column_pair_values_to_be_equal", ("split_rows", "expected_split_rows")) in kinds
    assert all(e["success"] for e in summary["expectations"])

    assert summary["data_docs"] == "data_docs/index.html"
    assert (docs / "index.html").is_file()
    assert (docs.parent / summary["data_docs_validation"]).is_file()
    assert "mnist_images" in (docs / "index.html").read_text()

    out = tmp_path / "report" / "summary.json"
    write_summary(summary, out)
    assert json.loads(out.read_text()) == summary
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_a_second_run_replaces_the_docs(tmp_path: Path):
    manifest = manifest_of(random_splits())
    docs = tmp_path / "data_docs"
    validate_manifest(manifest, EXPECT, "mnist", docs)
    validate_manifest(manifest, EXPECT, "mnist", docs)
    assert len(list((docs / "validations").rglob("*.html"))) == 1


def test_leakage_fails_naming_the_images(tmp_path: Path):
    splits = random_splits()
    splits["test"][0][3] = splits["train"][0][5]  # a training image planted in test
    docs = tmp_path / "data_docs"
    with pytest.raises(DataValidationError) as caught:
        validate_manifest(manifest_of(splits), EXPECT, "mnist", docs)

    error = caught.value
    message = str(error)
    assert "'mnist'" in message
    assert "expect_column_values_to_be_in_set(shared_across_splits)" in message
    assert "train/5" in message and "test/3" in message
    assert "2 unexpected" in message
    failure = failure_of(error, "expect_column_values_to_be_in_set")
    assert failure["columns"] == ["shared_across_splits"]
    assert sorted(failure["unexpected_image_ids"]) == ["test/3", "train/5"]
    assert len(error.failures) == 1
    # the summary and the docs are there for a person to look at
    assert error.summary["success"] is False
    assert error.summary["unsuccessful_expectations"] == 1
    assert (docs / "index.html").is_file()
    assert "test/3" in (docs.parent / error.summary["data_docs_validation"]).read_text()
    json.dumps(error.summary)


def test_out_of_range_label_fails_showing_the_row(tmp_path: Path):
    manifest = manifest_of(random_splits())
    manifest.loc[manifest["image_id"] == "train/2", "label"] = 11
    with pytest.raises(DataValidationError) as caught:
        validate_manifest(manifest, EXPECT, "mnist", tmp_path / "docs")

    message = str(caught.value)
    assert "expect_column_values_to_be_in_set(label)" in message
    assert "1 unexpected of 30 rows" in message
    row = next(line for line in message.splitlines() if "train/2" in line)
    assert row.split() == ["train/2", "train", "11"]
    failure = failure_of(caught.value, "expect_column_values_to_be_in_set")
    assert failure["rows"] == [{"image_id": "train/2", "split": "train", "label": 11}]


def test_wrong_split_count_fails(tmp_path: Path):
    expected = ImageExpectations(
        labels=EXPECT.labels,
        split_counts={"train": TRAIN, "test": TEST + 5},
        height=28,
        width=28,
        channels=1,
    )
    with pytest.raises(DataValidationError) as caught:
        validate_manifest(
            manifest_of(random_splits(), expected), expected, "mnist", tmp_path / "docs"
        )

    message = str(caught.value)
    assert "expect_column_pair_values_to_be_equal(split_rows, expected_split_rows)" in message
    assert f"{TEST} unexpected of {TRAIN + TEST} rows" in message
    assert "test/0" in message and "train/0" not in message
    kinds = {f["type"] for f in caught.value.failures}
    assert kinds == {"expect_column_pair_values_to_be_equal", "expect_table_row_count_to_equal"}


def test_missing_split_fails(tmp_path: Path):
    splits = random_splits()
    del splits["test"]
    with pytest.raises(DataValidationError) as caught:
        validate_manifest(manifest_of(splits), EXPECT, "mnist", tmp_path / "docs")
    assert "expect_column_distinct_values_to_equal_set(split)" in str(caught.value)
    assert "absent: test" in str(caught.value)


def test_wrong_shape_fails(tmp_path: Path):
    splits = random_splits()
    images, labels = splits["test"]
    splits["test"] = (images[:, :27, :], labels)  # a test split of 27x28 images
    with pytest.raises(DataValidationError) as caught:
        validate_manifest(manifest_of(splits), EXPECT, "mnist", tmp_path / "docs")

    error = caught.value
    assert [f["expectation"] for f in error.failures] == [
        "expect_column_values_to_be_between(height)"
    ]
    assert f"{TEST} unexpected" in str(error) and "test/0" in str(error)
    assert error.failures[0]["rows"][0] == {
        "image_id": "test/0",
        "split": "test",
        "label": 0,
        "height": 27,
    }


def test_wrong_channels_and_dtype_fail(tmp_path: Path):
    colour = ImageExpectations(
        labels=EXPECT.labels,
        split_counts=EXPECT.split_counts,
        height=28,
        width=28,
        channels=3,
        dtype="float32",
    )
    with pytest.raises(DataValidationError) as caught:
        validate_manifest(manifest_of(random_splits()), colour, "colour", tmp_path / "docs")
    failed = {f["expectation"] for f in caught.value.failures}
    assert failed == {
        "expect_column_values_to_be_between(channels)",
        "expect_column_values_to_be_in_set(dtype)",
    }
    assert caught.value.summary["suite"] == "colour_images"


def test_missing_column_fails_naming_it(tmp_path: Path):
    manifest = manifest_of(random_splits()).drop(columns=["content_hash"])
    with pytest.raises(DataValidationError) as caught:
        validate_manifest(manifest, EXPECT, "mnist", tmp_path / "docs")
    message = str(caught.value)
    assert "missing columns: content_hash" in message
    assert "expect_column_values_to_not_be_null(content_hash)" in message


def test_many_offending_rows_are_listed_quickly(tmp_path: Path, monkeypatch):
    """Above DETAIL_LIMIT the docs keep counts, yet the error still names the rows."""
    import convbench.data.validation.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "DETAIL_LIMIT", 3)
    manifest = manifest_of(random_splits())
    manifest["max_pixel"] = 300
    with pytest.raises(DataValidationError) as caught:
        validate_manifest(manifest, EXPECT, "mnist", tmp_path / "docs")
    failure = failure_of(caught.value, "expect_column_values_to_be_between")
    assert failure["unexpected_count"] == TRAIN + TEST
    assert len(failure["unexpected_image_ids"]) == TRAIN + TEST
    assert [row["image_id"] for row in failure["rows"]] == [f"train/{i}" for i in range(5)]
    assert caught.value.summary["docs_detail"].startswith("counts")
    assert (tmp_path / "docs" / "index.html").is_file()


def test_write_summary_is_atomic_and_replaces(tmp_path: Path):
    path = tmp_path / "out" / "summary.json"
    write_summary({"a": 1}, path)
    write_summary({"a": 2, "b": [1, 2]}, path)
    assert json.loads(path.read_text()) == {"a": 2, "b": [1, 2]}
    assert sorted(p.name for p in path.parent.iterdir()) == ["summary.json"]
