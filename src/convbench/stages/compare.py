"""Stage ``compare``: every run in one table, charts and an MLflow comparison run.

The data and weights folders are read only to say why a run has no results. A fan-out
tells the stage which downloads its selection included (``CONVBENCH_SELECTED_DOWNLOADS``,
set by its dispatcher), so the runs outside it read "not selected", not "unavailable";
without it (``make run``, ``dvc repro``) every run counts as selected.
"""

from __future__ import annotations

from pathlib import Path

from convbench.reporting.compare import compare as compare_runs
from convbench.reporting.missing import InputFolders, Selection
from convbench.settings import Settings
from convbench.stages.entry import stage_command

# The dvc.yaml stages whose items are data sets and pretrained weights.
DATASET_DOWNLOAD = "download"
WEIGHTS_DOWNLOAD = "download_weights"


def selection(downloads: frozenset[str] | None) -> Selection | None:
    """The selection the download stages ``downloads`` (``download@mnist``, ...) stand for."""
    if downloads is None:
        return None
    items = [name.partition("@") for name in downloads]
    return Selection(
        datasets=frozenset(item for stage, _, item in items if stage == DATASET_DOWNLOAD),
        weights=frozenset(item for stage, _, item in items if stage == WEIGHTS_DOWNLOAD),
    )


def compare(
    settings: Settings,
    runs_dir: Path,
    out_dir: Path,
    raw_dir: Path | None = None,
    weights_dir: Path | None = None,
) -> str:
    """Compare the runs under ``runs_dir`` into ``out_dir``; print and return the report."""
    inputs = InputFolders(raw_dir, weights_dir)
    compare_runs(settings, runs_dir, out_dir, inputs, selection(settings.env.selected_downloads))
    report = (out_dir / "comparison.md").read_text()
    print(report)
    return report


main = stage_command(compare)
