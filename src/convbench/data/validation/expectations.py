"""What a dataset's manifest must hold: the settings its Great Expectations suite is built from.

:func:`expectations_for` reads them from a dataset's params: array datasets get
:class:`ImageExpectations` (every image the same shape), folder datasets
:class:`FileExpectations` (one manifest row per image file, some tolerated as bad).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from convbench.data.manifest import DERIVED_COLUMNS, MANIFEST_COLUMNS
from convbench.settings import Dataset, Settings

REQUIRED_COLUMNS = (*MANIFEST_COLUMNS, *DERIVED_COLUMNS)
ID_COLUMN = "image_id"

FILE_COLUMNS = (
    "image_id",
    "split",
    "label",
    "status",
    "reason",
    "min_side",
    "channels",
    "content_hash",
    "shared_across_splits",
    "split_rows",
    "expected_split_rows",
    "class_ratio",
    "label_conflict",
)


@dataclass(frozen=True)
class ImageExpectations:
    """What every image of an array dataset must be; the suite is built from this."""

    labels: tuple[int | str, ...]
    split_counts: dict[str, int] = field(hash=False)
    height: int
    width: int
    channels: int
    dtype: str = "uint8"
    pixel_min: float = 0
    pixel_max: float = 255


@dataclass(frozen=True)
class FileExpectations:
    """What the image files of a folder dataset must be (one manifest row per file)."""

    labels: tuple[int | str, ...]
    splits: tuple[str, ...]
    split_counts: dict[str, int] | None = field(default=None, hash=False)  # files per split
    min_side: int = 32
    max_bad_fraction: float = 0.02  # quarantined (or too small) files tolerated
    min_class_ratio: float = 0.8  # smallest class over largest, per split
    max_label_conflicts: int = 0  # images filed under two or more classes


def _published_splits(dataset: Dataset) -> tuple[str, ...]:
    named = (dataset.train_split, dataset.validation_split, dataset.test_split)
    return tuple(dict.fromkeys(split for split in named if split))


def expectations_for(settings: Settings, name: str) -> ImageExpectations | FileExpectations:
    """The expectations ``datasets.<name>`` sets (labels, splits, shape or file checks)."""
    dataset = settings.dataset(name)
    labels = tuple(range(len(dataset.classes)))
    if dataset.format == "image_folders":
        checks = dataset.file_checks
        return FileExpectations(
            labels=labels,
            splits=_published_splits(dataset),
            split_counts=dict(dataset.split_counts) if dataset.split_counts else None,
            min_side=checks.min_side,
            max_bad_fraction=checks.max_bad_fraction,
            min_class_ratio=checks.min_class_ratio,
            max_label_conflicts=checks.max_label_conflicts,
        )
    if not dataset.split_counts:
        raise ValueError(f"datasets.{name}.split_counts: required for format {dataset.format}")
    return ImageExpectations(
        labels=labels,
        split_counts=dict(dataset.split_counts),
        height=dataset.image.height,
        width=dataset.image.width,
        channels=dataset.image.channels,
    )
