"""The data stages (download, validate, prepare) as functions of settings and paths.

Each composes library steps for one dataset; the DVC stage entry points in
``pipelines/`` call these and nothing else.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from convbench.core.atomic import atomic_dir, write_text
from convbench.core.errors import ConvbenchError
from convbench.data.download import fetch_source
from convbench.data.image_archive import FolderLayout, accepted_image_bytes, scan_image_archive
from convbench.data.images import CONVERTED, QUARANTINED, ImagePolicy
from convbench.data.manifest import add_class_ratio, add_derived_columns, build_array_manifest
from convbench.data.prepare import Roles, prepare, prepare_shards, save_prepared
from convbench.data.readers import load_raw
from convbench.data.sources import SOURCES
from convbench.data.validation import (
    FileExpectations,
    ImageExpectations,
    validate_manifest,
    write_summary,
)
from convbench.settings import Dataset, Settings

log = logging.getLogger(__name__)

MANIFEST = "manifest.parquet"
QUARANTINE_LIST = "quarantine.csv"


class ValidationNotPassedError(ConvbenchError, RuntimeError):
    """Preparing data whose validation did not pass."""


def download_dataset(settings: Settings, name: str, out_dir: Path) -> list[Path]:
    source = SOURCES[settings.dataset(name).source]
    out_dir.mkdir(parents=True, exist_ok=True)
    return fetch_source(source, out_dir, mirror=settings.env.mirror)


def download_weights(settings: Settings, name: str, out_dir: Path) -> list[Path]:
    """Fetch the pretrained weights ``pretrained.<name>`` names, verified against their pin."""
    if name not in settings.params.pretrained:
        raise KeyError(
            f"pretrained: unknown {name!r}; allowed: {sorted(settings.params.pretrained)}"
        )
    source = SOURCES[settings.params.pretrained[name].source]
    out_dir.mkdir(parents=True, exist_ok=True)
    return fetch_source(source, out_dir, mirror=settings.env.mirror)


def _published_splits(dataset: Dataset) -> tuple[str, ...]:
    named = (dataset.train_split, dataset.validation_split, dataset.test_split)
    return tuple(dict.fromkeys(split for split in named if split))


def expectations_for(settings: Settings, name: str) -> ImageExpectations | FileExpectations:
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


def _layout(dataset: Dataset) -> FolderLayout:
    assert dataset.folders is not None
    return FolderLayout(
        root=dataset.folders.root,
        classes=tuple(str(c) for c in dataset.classes),
        split_folders=dataset.folders.split_folders,
        single_split=dataset.train_split,
    )


def _archive(settings: Settings, name: str, raw_dir: Path) -> Path:
    return raw_dir / SOURCES[settings.dataset(name).source].files[0].name


def _scan_folders(
    settings: Settings, name: str, raw_dir: Path, out_dir: Path
) -> tuple[pd.DataFrame, dict]:
    """Inspect every image; write the manifest, quarantine and conversions to ``out_dir``."""
    dataset = settings.dataset(name)
    checks = dataset.file_checks
    policy = ImagePolicy(checks.convert_to_rgb, checks.max_pixels, checks.min_side)
    with atomic_dir(out_dir) as tmp:
        scan = scan_image_archive(_archive(settings, name, raw_dir), _layout(dataset), policy, tmp)
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


def _scan_arrays(
    settings: Settings, name: str, raw_dir: Path, out_dir: Path
) -> tuple[pd.DataFrame, dict]:
    expectations = expectations_for(settings, name)
    assert isinstance(expectations, ImageExpectations)
    manifest = add_derived_columns(
        build_array_manifest(load_raw(settings.dataset(name), raw_dir)), expectations.split_counts
    )
    with atomic_dir(out_dir) as tmp:
        manifest.to_parquet(tmp / MANIFEST, index=False)
    return manifest, {}


def validate_dataset(
    settings: Settings, name: str, raw_dir: Path, out_dir: Path, report_dir: Path
) -> dict:
    """Build the manifest (and, for image files, quarantine the bad ones), then validate it.

    ``out_dir`` gets the manifest, and for folder datasets the quarantined files, the
    converted images and ``quarantine.csv``; it is written before the suite runs, so a
    failed validation still shows every file and reason. The summary and Data Docs are
    written whether or not the data passes.
    """
    scan = _scan_folders if settings.dataset(name).format == "image_folders" else _scan_arrays
    manifest, files = scan(settings, name, raw_dir, out_dir)
    try:
        summary = validate_manifest(
            manifest, expectations_for(settings, name), name, report_dir / "data_docs"
        )
    except Exception as error:
        failed = getattr(error, "summary", None)
        if failed is not None:
            write_summary({**failed, **files}, report_dir / "summary.json")
        raise
    summary |= files
    write_summary(summary, report_dir / "summary.json")
    log.info(
        "%s: %d images valid (%d expectations)%s",
        name,
        summary["rows"],
        summary["evaluated_expectations"],
        f"; {files['files']}" if files else "",
    )
    return summary


def prepare_dataset(
    settings: Settings,
    name: str,
    raw_dir: Path,
    validated_dir: Path,
    validation_summary: Path,
    out_dir: Path,
) -> dict:
    summary = json.loads(validation_summary.read_text())
    if not summary.get("success"):
        raise ValidationNotPassedError(
            f"{validation_summary}: validation of {name} did not pass; fix the data first"
        )
    dataset = settings.dataset(name)
    seed, profile = settings.params.seed, settings.profile
    if dataset.format == "image_folders":
        manifest = pd.read_parquet(validated_dir / MANIFEST)
        rows = list(
            accepted_image_bytes(_archive(settings, name, raw_dir), manifest, validated_dir)
        )
        info = prepare_shards(
            images=[data for _, data in rows],
            labels=np.array([row["label"] for row, _ in rows], dtype=np.int64),
            ids=[row["image_id"] for row, _ in rows],
            published=np.array([row["split"] for row, _ in rows]),
            roles=Roles.of(dataset),
            seed=seed,
            profile=profile,
            out_dir=out_dir,
            classes=dataset.classes,
            shard_size=dataset.shard_size,
        )
    else:
        splits = prepare(load_raw(dataset, raw_dir), Roles.of(dataset), seed, profile)
        info = save_prepared(splits, out_dir, dataset.classes)
    log.info("%s prepared: %s", name, {s: v["count"] for s, v in info["splits"].items()})
    return info
