"""A dataset's raw files scanned into its manifest: one row per image, bad files quarantined.

Folder datasets (an archive of image files, or a local folder the download stage copied)
get each image inspected, converted or quarantined, and the same image filed under two
classes quarantined as a label conflict; array datasets get one row per array image.
Either way the manifest lands in the validated folder, before any validation runs, so a
failed validation still shows every file and reason.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from convbench.core.atomic import atomic_dir, write_text
from convbench.core.errors import ConvbenchError
from convbench.data.image_archive import FolderLayout, keep_quarantined, scan_image_archive
from convbench.data.images import CONVERTED, QUARANTINED, ImagePolicy
from convbench.data.manifest import (
    add_class_ratio,
    add_derived_columns,
    build_array_manifest,
    mark_label_conflicts,
)
from convbench.data.readers import load_raw
from convbench.data.validation.expectations import ImageExpectations, expectations_for
from convbench.settings import Dataset, Settings

log = logging.getLogger(__name__)

MANIFEST = "manifest.parquet"
QUARANTINE_LIST = "quarantine.csv"


class MissingClassError(ConvbenchError, ValueError):
    """A class (or split) folder params names holds no file at all."""


def folder_layout(dataset: Dataset) -> FolderLayout:
    """Where a folder dataset's classes and splits are inside its archive."""
    assert dataset.folders is not None
    return FolderLayout(
        root=dataset.folders.root,
        classes=tuple(str(c) for c in dataset.classes),
        split_folders=dataset.folders.split_folders,
        single_split=dataset.train_split,
    )


def image_source(settings: Settings, name: str, raw_dir: Path) -> Path:
    """Where a folder dataset's files are: its downloaded archive (the source's first
    file), or for a local folder the download stage's copy, ``raw_dir`` itself."""
    source = settings.dataset(name).source
    return raw_dir if source.path is not None else raw_dir / source.files[0].name


def class_folders(dataset: Dataset) -> list[tuple[str, str, str]]:
    """(split, class, its folder inside the archive or folder) of every class expected."""
    layout = folder_layout(dataset)
    roles = (dataset.train_split, dataset.validation_split, dataset.test_split)
    splits = list(dict.fromkeys(s for s in roles if s)) if layout.split_folders else [None]
    root = [part for part in layout.root.split("/") if part]
    return [
        (split or layout.single_split, folder, "/".join([*root, *filter(None, [split, folder])]))
        for split in splits
        for folder in layout.classes
    ]


def check_class_folders(name: str, dataset: Dataset, found: pd.DataFrame, where: Path) -> None:
    """Refuse a class folder params names that is missing or empty, naming it."""
    counts = found.groupby(["split", "class_name"]).size()
    missing = [
        path
        for split, folder, path in class_folders(dataset)
        if counts.get((split, folder), 0) == 0
    ]
    if missing:
        raise MissingClassError(
            f"datasets.{name}: no files in {', '.join(f'{where}/{m}' for m in missing)}; "
            f"every class of datasets.{name}.classes needs a folder of images"
        )


def scan_folders(
    settings: Settings, name: str, raw_dir: Path, out_dir: Path
) -> tuple[pd.DataFrame, dict]:
    """Inspect every image; write the manifest, quarantine and conversions to ``out_dir``."""
    dataset = settings.dataset(name)
    checks = dataset.file_checks
    policy = ImagePolicy(checks.convert_to_rgb, checks.max_pixels, checks.min_side)
    source = image_source(settings, name, raw_dir)
    with atomic_dir(out_dir) as tmp:
        scan = scan_image_archive(source, folder_layout(dataset), policy, tmp)
        check_class_folders(name, dataset, scan.manifest, source)
        manifest, conflicts = mark_label_conflicts(scan.manifest, QUARANTINED)
        keep_quarantined(source, {f["file"] for group in conflicts for f in group}, tmp)
        used = manifest["status"] != QUARANTINED
        manifest = add_derived_columns(manifest, dataset.split_counts or {}, used)
        manifest = add_class_ratio(manifest, used)
        quarantined = manifest[~used]
        write_text(
            tmp / QUARANTINE_LIST,
            quarantined[["image_id", "reason"]]
            .rename(columns={"image_id": "file"})
            .to_csv(index=False),
        )
        manifest.to_parquet(tmp / MANIFEST, index=False)
    converted = manifest[manifest["status"] == CONVERTED]
    files = {
        "files": {
            "in_class_folders": len(manifest),
            "accepted": int(used.sum()),
            "converted": len(converted),
            "quarantined": len(quarantined),
            "ignored": len(scan.ignored),
            "label_conflicts": len(conflicts),
        },
        "quarantined": [
            {"file": row.image_id, "reason": row.reason} for row in quarantined.itertuples()
        ],
        "converted": [
            {"file": row.image_id, "conversion": row.conversion} for row in converted.itertuples()
        ],
        "ignored": scan.ignored,
        # Each: the files of one image filed under more than one class (all quarantined).
        "label_conflicts": conflicts,
        "quarantine_folder": str(out_dir / "quarantine"),
    }
    for entry in files["quarantined"]:
        log.warning("%s: quarantined %s: %s", name, entry["file"], entry["reason"])
    return manifest, files


def scan_arrays(
    settings: Settings, name: str, raw_dir: Path, out_dir: Path
) -> tuple[pd.DataFrame, dict]:
    """One manifest row per array image, written to ``out_dir``; no files to report."""
    expectations = expectations_for(settings, name)
    assert isinstance(expectations, ImageExpectations)
    manifest = add_derived_columns(
        build_array_manifest(load_raw(settings.dataset(name), raw_dir)), expectations.split_counts
    )
    with atomic_dir(out_dir) as tmp:
        manifest.to_parquet(tmp / MANIFEST, index=False)
    return manifest, {}


def scan_dataset(
    settings: Settings, name: str, raw_dir: Path, out_dir: Path
) -> tuple[pd.DataFrame, dict]:
    """The manifest of ``datasets.<name>``, and for folder datasets what became of each file."""
    scan = scan_folders if settings.dataset(name).format == "image_folders" else scan_arrays
    return scan(settings, name, raw_dir, out_dir)
