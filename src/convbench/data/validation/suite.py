"""The Great Expectations suite of a manifest, built from its expectation settings.

One declarative table of GX expectations per kind of dataset: image files (folders) and
image arrays.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from convbench.data.validation.context import import_gx
from convbench.data.validation.expectations import (
    FILE_COLUMNS,
    ID_COLUMN,
    REQUIRED_COLUMNS,
    FileExpectations,
    ImageExpectations,
)


def _plain(values: Iterable[Any]) -> list[Any]:
    """Python ints/floats/strs (a NumPy scalar would not serialise into the suite)."""
    return [v.item() if hasattr(v, "item") else v for v in values]


def build_suite(expectations: ImageExpectations | FileExpectations, dataset: str) -> Any:
    """The expectation suite ``{dataset}_images`` (a ``gx.ExpectationSuite``, not yet stored).

    GX 1.x builds suites only while a Data Context is current (``gx.get_context()``).
    """
    gx = import_gx()
    suite = gx.ExpectationSuite(
        name=f"{dataset}_images",
        meta={"notes": f"One row per image of {dataset}; built by convbench.data.validation."},
    )
    build = (
        _file_expectations if isinstance(expectations, FileExpectations) else _array_expectations
    )
    for expectation in build(gx.expectations, expectations):
        suite.add_expectation(expectation)
    return suite


def _file_expectations(E: Any, expectations: FileExpectations) -> list[Any]:
    good = 1.0 - expectations.max_bad_fraction
    checks = [
        E.ExpectTableColumnsToMatchSet(
            column_set=list(FILE_COLUMNS),
            exact_match=False,
            description="Every manifest column is present.",
        ),
        E.ExpectColumnValuesToBeUnique(column=ID_COLUMN),
        E.ExpectColumnValuesToNotBeNull(column="label"),
        E.ExpectColumnValuesToBeInSet(column="label", value_set=_plain(expectations.labels)),
        E.ExpectColumnValuesToBeInSet(column="split", value_set=list(expectations.splits)),
        E.ExpectColumnDistinctValuesToEqualSet(
            column="split",
            value_set=list(expectations.splits),
            description="No expected split is missing.",
        ),
        E.ExpectColumnValuesToBeNull(
            column="reason",
            mostly=good,
            description=(
                f"At most {expectations.max_bad_fraction:.0%} of the files are quarantined; "
                "each one's reason is listed."
            ),
        ),
        E.ExpectColumnValuesToBeBetween(
            column="min_side",
            min_value=expectations.min_side,
            mostly=good,
            description=(
                f"Images are at least {expectations.min_side} pixels on their shorter side."
            ),
        ),
        E.ExpectColumnValuesToBeInSet(
            column="channels",
            value_set=[3],
            description="Every accepted image is RGB (converted if it was not).",
        ),
        E.ExpectColumnValuesToBeInSet(
            column="shared_across_splits",
            value_set=[False],
            description="No image (by decoded pixels) occurs in more than one split: no leakage.",
        ),
        E.ExpectColumnValuesToBeBetween(
            column="class_ratio",
            min_value=expectations.min_class_ratio,
            max_value=1.0,
            description=(
                "Classes are balanced: in each split the smallest class has at least "
                f"{expectations.min_class_ratio:.0%} of the images of the largest."
            ),
        ),
        # One distinct label_conflict (the image's hash) per image filed under two classes.
        E.ExpectColumnUniqueValueCountToBeBetween(
            column="label_conflict",
            min_value=0,
            max_value=expectations.max_label_conflicts,
            description=(
                f"At most {expectations.max_label_conflicts} images are filed under two "
                "classes (label conflicts); their files are quarantined, each reason naming "
                "the other file."
            ),
        ),
    ]
    if expectations.split_counts:
        checks.append(
            E.ExpectColumnPairValuesToBeEqual(
                column_A="split_rows",
                column_B="expected_split_rows",
                description="Each split has its expected number of files.",
            )
        )
    return checks


def _array_expectations(E: Any, expectations: ImageExpectations) -> list[Any]:
    splits = [str(split) for split in expectations.split_counts]
    present_splits = [s for s, n in expectations.split_counts.items() if int(n) > 0]
    return [
        E.ExpectTableColumnsToMatchSet(
            column_set=list(REQUIRED_COLUMNS),
            exact_match=False,
            description="Every manifest column is present.",
        ),
        E.ExpectTableRowCountToEqual(
            value=int(sum(expectations.split_counts.values())),
            description="As many images as all the expected splits together.",
        ),
        E.ExpectColumnValuesToBeUnique(column=ID_COLUMN),
        E.ExpectColumnValuesToNotBeNull(column="label"),
        E.ExpectColumnValuesToBeInSet(column="label", value_set=_plain(expectations.labels)),
        E.ExpectColumnValuesToBeInSet(column="split", value_set=splits),
        E.ExpectColumnDistinctValuesToEqualSet(
            column="split",
            value_set=present_splits,
            description="No expected split is missing.",
        ),
        E.ExpectColumnValuesToBeBetween(
            column="height", min_value=expectations.height, max_value=expectations.height
        ),
        E.ExpectColumnValuesToBeBetween(
            column="width", min_value=expectations.width, max_value=expectations.width
        ),
        E.ExpectColumnValuesToBeBetween(
            column="channels", min_value=expectations.channels, max_value=expectations.channels
        ),
        E.ExpectColumnValuesToBeInSet(column="dtype", value_set=[expectations.dtype]),
        E.ExpectColumnValuesToBeBetween(column="min_pixel", min_value=expectations.pixel_min),
        E.ExpectColumnValuesToBeBetween(column="max_pixel", max_value=expectations.pixel_max),
        E.ExpectColumnValuesToNotBeNull(column="content_hash"),
        E.ExpectColumnValuesToBeInSet(
            column="shared_across_splits",
            value_set=[False],
            description="No image (by content hash) occurs in more than one split: no leakage.",
        ),
        E.ExpectColumnPairValuesToBeEqual(
            column_A="split_rows",
            column_B="expected_split_rows",
            description="Each split has its expected number of images.",
        ),
    ]
