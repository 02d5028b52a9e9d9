"""Image datasets of class folders, published as an archive (Cats vs Dogs) or a local
folder (copied by the download stage).

:func:`scan_image_archive` reads every file of the archive or folder in place (checked
as in :mod:`convbench.data.archives`), decodes each image once (:func:`inspect_image`) and
returns the manifest: one row per file under a class folder, with its outcome. Files
it refuses are copied, as they are, into ``quarantine/`` and images it converts into
``converted/``, both under the output folder and under their member paths, so nothing
is lost and the next stage never decodes an image again. Files outside the class
folders (a README, a script) are listed as ignored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import pandas as pd

from convbench.data.archives import Member, iter_files
from convbench.data.images import CONVERTED, QUARANTINED, ImageCheck, ImagePolicy, inspect_image

QUARANTINE_DIR = "quarantine"
CONVERTED_DIR = "converted"
_CHUNK = 128  # images decoded concurrently (Pillow releases the GIL while decoding)

FILE_MANIFEST_COLUMNS = (
    "image_id",
    "split",
    "label",
    "class_name",
    "status",
    "reason",
    "conversion",
    "format",
    "mode",
    "width",
    "height",
    "min_side",
    "channels",
    "file_bytes",
    "sha256",
    "content_hash",
    "label_conflict",
)


@dataclass(frozen=True)
class FolderLayout:
    """Where the images sit: ``root/<split>/<class>/<file>`` or ``root/<class>/<file>``."""

    root: str
    classes: tuple[str, ...]  # class folder names, in label order
    split_folders: bool
    single_split: str = "all"  # the split name when there are no split folders

    def locate(self, name: str) -> tuple[str, int] | None:
        """(split, label) of an archive member, or None when it is not in a class folder."""
        prefix = [part for part in self.root.split("/") if part]
        parts = name.split("/")
        if parts[: len(prefix)] != prefix:
            return None
        rest = parts[len(prefix) :]
        if self.split_folders and len(rest) == 3:
            split, folder = rest[0], rest[1]
        elif not self.split_folders and len(rest) == 2:
            split, folder = self.single_split, rest[0]
        else:
            return None
        if folder not in self.classes:
            return None
        return split, self.classes.index(folder)


@dataclass
class ScanResult:
    manifest: pd.DataFrame
    ignored: list[dict[str, str]]


def _chunks(items: Iterable[tuple[Member, bytes]], size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _keep(folder: Path, name: str, data: bytes) -> None:
    path = folder.joinpath(*name.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _row(
    member: Member, split: str, label: int, layout: FolderLayout, check: ImageCheck, data: bytes
) -> dict:
    width, height = check.width, check.height
    return {
        "image_id": member.name,
        "split": split,
        "label": label,
        "class_name": layout.classes[label],
        "status": check.status,
        "reason": check.reason,
        "conversion": check.conversion,
        "format": check.format,
        "mode": check.mode,
        "width": width,
        "height": height,
        "min_side": min(width, height) if width and height else None,
        "channels": 3 if check.accepted else None,
        "file_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_hash": check.content_hash,
        "label_conflict": None,  # the content hash, when filed under two classes
    }


def scan_image_archive(
    archive: Path, layout: FolderLayout, policy: ImagePolicy, out_dir: Path, workers: int = 4
) -> ScanResult:
    """Inspect every image of ``archive`` (a zip, a tar or a folder); quarantined and
    converted files go to ``out_dir``."""
    rows: list[dict] = []
    ignored: list[dict[str, str]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for chunk in _chunks(iter_files(archive), _CHUNK):
            located = []
            for member, data in chunk:
                where = layout.locate(member.name)
                if where is None:
                    ignored.append({"file": member.name, "reason": "not in a class folder"})
                else:
                    located.append((member, data, *where))
            checks = pool.map(lambda item: inspect_image(item[1], policy), located)
            for (member, data, split, label), check in zip(located, checks, strict=True):
                if check.status == QUARANTINED:
                    _keep(out_dir / QUARANTINE_DIR, member.name, data)
                elif check.status == CONVERTED:
                    assert check.data is not None
                    _keep(out_dir / CONVERTED_DIR, member.name, check.data)
                rows.append(_row(member, split, label, layout, check, data))
    manifest = pd.DataFrame(rows, columns=list(FILE_MANIFEST_COLUMNS))
    for column in ("width", "height", "min_side", "channels"):
        manifest[column] = manifest[column].astype("Int64")
    return ScanResult(manifest.sort_values("image_id", ignore_index=True), ignored)


def keep_quarantined(archive: Path, names: set[str], out_dir: Path) -> None:
    """Copy the named files of ``archive``, as they are, into ``out_dir``'s quarantine and
    drop their converted copies: files quarantined after the scan (label conflicts)."""
    if not names:
        return
    for member, data in iter_files(archive):
        if member.name in names:
            _keep(out_dir / QUARANTINE_DIR, member.name, data)
            out_dir.joinpath(CONVERTED_DIR, *member.name.split("/")).unlink(missing_ok=True)


def accepted_image_bytes(
    archive: Path, manifest: pd.DataFrame, validated_dir: Path
) -> Iterator[tuple[dict, bytes]]:
    """(manifest row, bytes to train on) of every accepted image, in archive (or folder)
    order.

    Converted images come from ``validated_dir/converted``, the others straight from the
    archive: nothing is decoded here.
    """
    accepted = manifest[manifest["status"] != QUARANTINED].set_index("image_id", drop=False)
    for member, data in iter_files(archive):
        if member.name not in accepted.index:
            continue
        row = accepted.loc[member.name].to_dict()
        if row["status"] == CONVERTED:
            data = validated_dir.joinpath(CONVERTED_DIR, *member.name.split("/")).read_bytes()
        yield row, data
