"""Stage ``download``: a dataset's source files, fetched and verified, into a folder."""

from __future__ import annotations

from pathlib import Path

from convbench.data.download import fetch_source
from convbench.data.sources import SOURCES
from convbench.settings import Settings
from convbench.stages.entry import stage_command


def download_dataset(settings: Settings, dataset: str, out_dir: Path) -> list[Path]:
    """Fetch the source files of ``datasets.<dataset>`` into ``out_dir``; return their paths."""
    source = SOURCES[settings.dataset(dataset).source]
    out_dir.mkdir(parents=True, exist_ok=True)
    return fetch_source(source, out_dir, mirror=settings.env.mirror)


main = stage_command(download_dataset)
