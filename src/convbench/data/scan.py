"""A dataset's raw files scanned into its manifest: one row per image, bad files quarantined.

Folder datasets (an archive of image files) get each image inspected, converted or
quarantined; array datasets get one row per array image. Either way the manifest lands
in the validated folder, before any validation runs, so a failed validation still shows
every file and reason.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from convbench.core.atomic import atomic_dir, write_text
from convbench.data.image_archive import FolderLayout, scan_image_archive
from convbench.data.images import CONVERTED, QUARANTINED, ImagePolicy
from convbench.data.manifest import add_class_ratio, add_derived_columns, build_array_manifest
from convbench.data.readers import load_raw
from convbench.data.sources import SOURCES
from convbench.data.validation.expectations import ImageExpectations, expectations_for
from convbench.settings import Dataset, Settings

log = logging.getLogger(__name__)

MANIFEST = "manifest.parquet"
QUARANTINE_LIST = "quarantine.csv"


def folder_layout(dataset: Dataset) -> FolderLayout:
    """Where a folder dataset's classes and splits are inside its archive."""
    assert dataset.folders is not None
    return FolderLayout(
        root=dataset.folders.root,
        classes=tuple(str(c) for c in dataset.classes),
        split_folders=dataset.folders.split_folders,
        single_split=dataset.train_split,
    )


def archive_path(settings: Settings, name: str, raw_dir: Path) -> Path:
    """The downloaded archive of a folder dataset (its source's first file)."""
    return raw_dir / SOURCES[settings.dataset(name).source].files[0].name


def scan_folders(
    settings: Settings, name: str, raw_dir: Path, out_dir: Path
) -> tuple[pd.DataFrame, dict]:
    """Inspect every image; write the manifest, quarantine and conversions to ``out_dir``."""
    dataset = settings.dataset(name)
    checks = dataset.file_checks
    policy = ImagePolicy(checks.convert_to_rgb, checks.max_pixels, checks.min_side)
    with atomic_dir(out_dir) as tmp:
        archive = archive_path(settings, name, raw_dir)
        scan = scan_image_archive(archive, folder_layout(dataset), policy, tmp)
        manifest = add_derived_columns(scan.manifest, dataset.split_counts or {})
        manifest = add_class_ratio(manifest, manifest["status"] != QUARANTINED)
        quarantined = manifest[manifest["status"] == QUARANTINED]
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
            "accepted": int((manifest["status"] != QUARANTINED).sum()),
            "converted": len(converted),
            "quarantined": len(quarantined),
            "ignored": len(scan.ignored),
        },
        "quarantined": [
            {"file": row.image_id, "reason": row.reason} for row in quarantined.itertuples()
        ],
        "converted": [
            {"file": row.image_id, "conversion": row.conversion} for row in converted.itertuples()
        ],
        "ignored": scan.ignored,
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
