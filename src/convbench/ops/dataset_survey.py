"""What a folder of class folders (on disk or in an archive) holds, for `dataset add`.

The classes are the subfolder names, sorted as Keras' ``flow_from_directory`` sorts them
(label = index); split folders (train/validation/test) are recognised; a folder that
only wraps another (``PetImages/``) is looked through. Image sizes and colour come from
an even sample of the files, read with Pillow: the bad files among them are validation's
business, not this survey's.
"""

from __future__ import annotations

import io
import os
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image, ImageChops, ImageStat

from convbench.core.errors import ConvbenchError
from convbench.data.archives import iter_members

SAMPLE = 200  # images read for sizes and colour
# Split folder names, by the role they play (the others' names are kept as published).
SPLIT_ROLES = {"train": "train", "validation": "validation", "valid": "validation"}
SPLIT_ROLES |= {"val": "validation", "test": "test"}
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
_GREY_SPREAD = 3.0  # mean channel difference (0-255) below which an RGB picture is grey


class SurveyError(ConvbenchError, ValueError):
    """The folder is not a dataset of class folders; the message names the folder."""


@dataclass(frozen=True)
class FolderSurvey:
    where: str  # the folder or archive, for messages
    root: str  # the folder holding the split or class folders, inside ``where``; "": top
    split_folders: bool
    classes: tuple[str, ...]  # sorted: label = index
    counts: dict[str, dict[str, int]]  # files per split, per class
    height: int  # medians of the sample
    width: int
    min_side: int  # median of the shorter sides
    grey: bool

    def split_of(self, role: str) -> str | None:
        """The published split folder playing ``role`` (train, validation, test)."""
        return next((s for s in self.counts if SPLIT_ROLES.get(s.lower()) == role), None)

    @property
    def files(self) -> int:
        return sum(sum(per_class.values()) for per_class in self.counts.values())


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))


def _subfolders(names: Iterable[str], dirs: Iterable[str], prefix: tuple[str, ...]) -> set[str]:
    """Folders directly under ``prefix``: those holding files, and (on disk) empty ones."""
    found = set()
    for name in (*names, *(f"{d}/" for d in dirs)):
        parts = tuple(name.split("/"))
        if len(parts) > len(prefix) + 1 and parts[: len(prefix)] == prefix:
            found.add(parts[len(prefix)])
    return found


def _grey(image: Image.Image) -> bool:
    """Grey by its mode, or an RGB picture whose channels (nearly) agree."""
    if image.mode in _GREY_MODES:
        return True
    rgb = image.convert("RGB")
    rgb.thumbnail((64, 64))
    red, green, blue = rgb.split()
    spread = [
        ImageStat.Stat(ImageChops.difference(a, b)).mean[0]
        for a, b in ((red, green), (green, blue), (red, blue))
    ]
    return max(spread) < _GREY_SPREAD


Reader = Callable[[list[str]], dict[str, bytes]]  # file names -> their bytes


def _sample(images: list[str], read: Reader) -> list[tuple[int, int, bool]]:
    """(width, height, grey) of up to SAMPLE images spread over the sorted files."""
    chosen = sorted(images)[:: max(1, len(images) // SAMPLE)][:SAMPLE]
    found = []
    for data in read(chosen).values():
        try:
            with Image.open(io.BytesIO(data)) as image:
                found.append((image.width, image.height, _grey(image)))
        except (OSError, ValueError, SyntaxError):
            continue  # not an image: validation will quarantine it, with its reason
    return found


def survey(names: list[str], dirs: list[str], read: Reader, where: str) -> FolderSurvey:
    """The classes, splits, counts and image sizes of files ``names`` (POSIX paths)."""
    names = [n for n in names if not _hidden(n)]
    dirs = [d for d in dirs if not _hidden(d)]
    prefix: tuple[str, ...] = ()
    # A lone folder that holds folders wraps the dataset (PetImages/): look inside.
    while len(sub := _subfolders(names, dirs, prefix)) == 1 and _subfolders(
        names, dirs, (*prefix, *sub)
    ):
        prefix = (*prefix, sub.pop())
    top = _subfolders(names, dirs, prefix)
    split_folders = bool(top) and all(s.lower() in SPLIT_ROLES for s in top)
    splits = sorted(top) if split_folders else [""]
    classes = sorted(
        {c for s in splits for c in _subfolders(names, dirs, (*prefix, *filter(None, [s])))}
    )
    root = "/".join(prefix)
    shown = "/".join(filter(None, [where, root]))
    if len(classes) < 2:
        raise SurveyError(
            f"{shown}: {len(classes)} class folder(s) {classes}; a dataset needs at least 2, "
            "one folder of images per class (or train/, validation/, test/ folders of them)"
        )
    if split_folders and not any(SPLIT_ROLES[s.lower()] == "train" for s in splits):
        raise SurveyError(f"{shown}: split folders {splits} but no train folder")
    by_folder: dict[tuple[str, ...], list[str]] = {}
    for name in names:
        by_folder.setdefault(PurePosixPath(name).parent.parts, []).append(name)
    counts: dict[str, dict[str, int]] = {}
    images = []
    for split in splits:
        per_class = counts.setdefault(split or "all", {})
        for cls in classes:
            folder = (*prefix, *filter(None, [split]), cls)
            inside = by_folder.get(folder, [])
            if not inside:
                raise SurveyError(
                    f"{'/'.join([where, *folder])}: no files (the class folder is empty or "
                    "missing); every class needs images in every split"
                )
            per_class[cls] = len(inside)
            images += inside
    sample = _sample(images, read)
    if not sample:
        raise SurveyError(f"{shown}: no file Pillow can read as an image")
    widths, heights, greys = zip(*sample, strict=True)
    return FolderSurvey(
        where=where,
        root=root,
        split_folders=split_folders,
        classes=tuple(classes),
        counts=counts,
        height=int(statistics.median_low(heights)),
        width=int(statistics.median_low(widths)),
        min_side=int(statistics.median_low([min(w, h) for w, h, _ in sample])),
        grey=sum(greys) > len(greys) / 2,
    )


def survey_folder(folder: Path, shown: str) -> FolderSurvey:
    """Survey a folder on disk (``shown``: how messages name it)."""
    names, dirs = [], []
    for top, subdirs, files in os.walk(folder):
        here = Path(top).relative_to(folder)
        dirs += [(here / d).as_posix() for d in subdirs]
        names += [(here / f).as_posix() for f in files]
    return survey(names, dirs, lambda chosen: {n: (folder / n).read_bytes() for n in chosen}, shown)


def survey_archive(archive: Path) -> FolderSurvey:
    """Survey a zip or tar of class folders: names first, then the sampled files' bytes."""
    names = [member.name for member, _ in iter_members(archive)]

    def read(chosen: list[str]) -> dict[str, bytes]:
        wanted = set(chosen)
        return {m.name: data for m, data in iter_members(archive) if m.name in wanted}

    return survey(names, [], read, archive.name)
