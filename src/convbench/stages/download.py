"""Stage ``download``: a dataset's source files, fetched and verified, into a folder; or
its local folder, checked against its ``.dvc`` file and pin, copied there."""

from __future__ import annotations

from pathlib import Path

from convbench.data.download import fetch_source
from convbench.data.local_folder import fetch_local_folder
from convbench.settings import Settings
from convbench.stages.entry import stage_command


def download_dataset(settings: Settings, dataset: str, out_dir: Path) -> list[Path]:
    """Fetch the source files of ``datasets.<dataset>`` into ``out_dir``; return their paths.

    A local folder (``source.path``) is copied into ``out_dir`` with its layout kept.
    """
    source = settings.dataset(dataset).source
    if source.path is not None:
        return fetch_local_folder(dataset, source, settings.env.project_root, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return fetch_source(source, out_dir, mirror=settings.env.mirror, name=dataset)


main = stage_command(download_dataset)
