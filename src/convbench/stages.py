"""The data stages (download, validate, prepare) as functions of settings and paths.

Each composes library steps for one dataset; the DVC stage entry points in
``pipelines/`` call these and nothing else.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from convbench.atomic import atomic_path
from convbench.config import Settings
from convbench.datasets import load_raw
from convbench.download import fetch_source
from convbench.manifest import add_derived_columns, build_array_manifest
from convbench.prepare import prepare, save_prepared
from convbench.sources import SOURCES
from convbench.validation import ImageExpectations, validate_manifest, write_summary

log = logging.getLogger(__name__)


class ValidationNotPassedError(RuntimeError):
    """Preparing data whose validation did not pass."""


def download_dataset(settings: Settings, name: str, out_dir: Path) -> list[Path]:
    source = SOURCES[settings.dataset(name).source]
    out_dir.mkdir(parents=True, exist_ok=True)
    return fetch_source(source, out_dir, mirror=settings.env.mirror)


def expectations_for(settings: Settings, name: str) -> ImageExpectations:
    dataset = settings.dataset(name)
    return ImageExpectations(
        labels=tuple(range(len(dataset.classes))),
        split_counts=dict(dataset.split_counts),
        height=dataset.image.height,
        width=dataset.image.width,
        channels=dataset.image.channels,
    )


def validate_dataset(
    settings: Settings, name: str, raw_dir: Path, manifest_path: Path, report_dir: Path
) -> dict:
    """Build the manifest, validate it (summary + Data Docs written even on failure)."""
    expectations = expectations_for(settings, name)
    manifest = add_derived_columns(
        build_array_manifest(load_raw(settings.dataset(name), raw_dir)), expectations.split_counts
    )
    try:
        summary = validate_manifest(manifest, expectations, name, report_dir / "data_docs")
    except Exception as error:
        failed = getattr(error, "summary", None)
        if failed is not None:
            write_summary(failed, report_dir / "summary.json")
        raise
    write_summary(summary, report_dir / "summary.json")
    with atomic_path(manifest_path) as tmp:
        manifest.to_parquet(tmp, index=False)
    log.info(
        "%s: %d images valid (%d expectations)",
        name,
        summary["rows"],
        summary["evaluated_expectations"],
    )
    return summary


def prepare_dataset(
    settings: Settings, name: str, raw_dir: Path, validation_summary: Path, out_dir: Path
) -> dict:
    summary = json.loads(validation_summary.read_text())
    if not summary.get("success"):
        raise ValidationNotPassedError(
            f"{validation_summary}: validation of {name} did not pass; fix the data first"
        )
    dataset = settings.dataset(name)
    splits = prepare(
        load_raw(dataset, raw_dir),
        dataset.validation_fraction,
        settings.params.seed,
        settings.profile,
    )
    info = save_prepared(splits, out_dir, dataset.classes)
    log.info("%s prepared: %s", name, {s: v["count"] for s, v in info["splits"].items()})
    return info
