"""Downloads known to be unavailable here, so a rerun with nothing changed does not try
them again.

A download stage that found its input unavailable (exit ``EX_UNAVAILABLE``) is recorded
in ``<root>/.convbench/unavailable.json`` with why, and with the state of everything
that could make it succeed next time: the source's declaration, the mirror setting and,
for a local mirror, each place a file of it would be found (present or not, its size and
time). While that state holds, the flows report the input as unavailable without running
the stage; a file put into the mirror, a new pin or another mirror tries again at once.
A URL that was down is not watched: ``--retry-unavailable`` tries every one again.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from convbench.core.atomic import write_json
from convbench.core.hashing import fingerprint
from convbench.data.transport import is_http, local_path
from convbench.ops.planning import DOWNLOAD_STAGES, stage_kind
from convbench.ops.runlock import LOCK_FOLDER
from convbench.settings import Settings, Source, load_settings

RECORD = "unavailable.json"
NOT_RETRIED = "not tried again: its declaration and the mirror are as they were when it failed"


def _source(settings: Settings, stage: str) -> Source:
    kind, _, item = stage.partition("@")
    if kind == "download_weights":  # else "download": a dataset's
        return settings.params.pretrained[item].source
    return settings.dataset(item).source


def _where(path: Path) -> list[Any]:
    """What a file's place says: whether it is there, its size and time."""
    try:
        found = path.stat()
    except OSError:
        return [str(path), None]
    return [str(path), found.st_size, found.st_mtime_ns]


def input_state(settings: Settings, stage: str) -> str:
    """A fingerprint of what decides whether download ``stage`` can succeed here."""
    item = stage.partition("@")[2]
    source = _source(settings, stage)
    mirror = settings.env.mirror
    places: list[Any] = []
    if source.path is not None:  # a local folder: its .dvc file and the folder
        folder = settings.env.project_root / source.path
        places += [_where(folder.with_name(folder.name + ".dvc")), _where(folder)]
    if mirror and not is_http(mirror):
        base = local_path(mirror)
        places += [_where(place / f.name) for f in source.files for place in (base / item, base)]
    return fingerprint(
        {"source": source.model_dump(mode="json"), "mirror": mirror, "places": places}
    )


def download_state(root: Path, stage: str, environ: Mapping[str, str]) -> str | None:
    """:func:`input_state` of a download stage run with ``environ``; None for other stages."""
    if stage_kind(stage) not in DOWNLOAD_STAGES:
        return None
    return input_state(load_settings(root / "params.yaml", environ=dict(environ)), stage)


def _read(root: Path) -> dict[str, dict[str, str]]:
    path = root / LOCK_FOLDER / RECORD
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: every download is simply tried


def known_unavailable(root: Path, stage: str, state: str) -> str | None:
    """Why ``stage`` was unavailable last time, if nothing that decides it changed since."""
    entry = _read(root).get(stage)
    return entry["why"] if entry and entry.get("state") == state else None


@contextlib.contextmanager
def _updating(root: Path) -> Iterator[dict[str, dict[str, str]]]:
    """The record to change, written back after: one writer at a time, as downloads
    running side by side finish at once."""
    folder = root / LOCK_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / f"{RECORD}.lock"):
        record = _read(root)
        before = dict(record)
        yield record
        if record != before:
            write_json(folder / RECORD, record)


def remember(root: Path, stage: str, state: str, why: str) -> None:
    with _updating(root) as record:
        record[stage] = {"state": state, "why": why}


def forget(root: Path, stage: str) -> None:
    with _updating(root) as record:
        record.pop(stage, None)
