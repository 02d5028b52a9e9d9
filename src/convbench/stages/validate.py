"""Stage ``validate``: the manifest of every image (bad files quarantined), checked by a GX
suite, with its summary and Data Docs."""

from __future__ import annotations

import logging
from pathlib import Path

from convbench.data.scan import scan_dataset
from convbench.data.validation.checkpoint import validate_manifest
from convbench.data.validation.expectations import expectations_for
from convbench.data.validation.summary import write_summary
from convbench.settings import Settings
from convbench.stages.entry import stage_command

log = logging.getLogger(__name__)


def validate_dataset(
    settings: Settings, dataset: str, raw_dir: Path, out_dir: Path, report_dir: Path
) -> dict:
    """Build the manifest (and, for image files, quarantine the bad ones), then validate it.

    ``out_dir`` gets the manifest, and for folder datasets the quarantined files, the
    converted images and ``quarantine.csv``; it is written before the suite runs, so a
    failed validation still shows every file and reason. The summary and Data Docs are
    written whether or not the data passes.
    """
    manifest, files = scan_dataset(settings, dataset, raw_dir, out_dir)
    try:
        summary = validate_manifest(
            manifest, expectations_for(settings, dataset), dataset, report_dir / "data_docs"
        )
    except Exception as error:
        failed = getattr(error, "summary", None)
        if failed is not None:
            write_summary({**failed, **files}, report_dir / "summary.json")
        for group in files.get("label_conflicts", []):  # GX counts them; say which they are
            same = " = ".join(f"{f['file']} ({f['class']})" for f in group)
            log.error("%s: label conflict, the same image under two classes: %s", dataset, same)
        raise
    summary |= files
    write_summary(summary, report_dir / "summary.json")
    log.info(
        "%s: %d images valid (%d expectations)%s",
        dataset,
        summary["rows"],
        summary["evaluated_expectations"],
        f"; {files['files']}" if files else "",
    )
    return summary


main = stage_command(validate_dataset)
