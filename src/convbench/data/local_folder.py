"""A dataset that is a local folder tracked with ``dvc add``: verified, then copied.

The folder's pin in params.yaml (``source.md5``) is the md5 DVC records for it in
``<path>.dvc``. Before anything is copied, the ``.dvc`` file must record that md5 (else
the folder was re-added since it was pinned) and the folder must still match its
``.dvc`` file, as DVC itself sees it (``dvc status``; else it changed since
``dvc add``). So the pin in params, which the download stage depends on, always says
which images the pipeline trained on.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from convbench.core.atomic import atomic_dir
from convbench.core.errors import ConvbenchError, InputUnavailableError
from convbench.data.archives import iter_folder
from convbench.settings import Source

log = logging.getLogger(__name__)


class FolderChangedError(ConvbenchError, ValueError):
    """The folder or its ``.dvc`` file no longer matches the pin in params.yaml."""


class FolderUnavailableError(InputUnavailableError):
    """The folder, or its ``.dvc`` file, is not here."""


def dvc_file_of(folder: Path) -> Path:
    """Where ``dvc add <folder>`` records it: ``<folder>.dvc`` beside it."""
    return folder.with_name(f"{folder.name}.dvc")


def recorded_md5(dvc_file: Path) -> str:
    """The md5 ``dvc add`` recorded for its one output (``<hex>.dir`` for a folder)."""
    try:
        outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or [{}]
    except yaml.YAMLError as error:
        raise FolderChangedError(f"{dvc_file}: not a valid .dvc file ({error})") from None
    md5 = outs[0].get("md5")
    if not isinstance(md5, str):
        raise FolderChangedError(f"{dvc_file}: records no md5 for its output")
    return md5


def workspace_status(dvc_file: Path) -> dict[str, str]:
    """What ``dvc status`` says of the folder ``dvc_file`` tracks: {} when it matches,
    else ``{path: "modified" | "deleted"}``. DVC hashes only files changed since it last
    looked (its state database), so an unchanged folder is checked quickly."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        repo = Repo(str(dvc_file.parent))
    except NotDvcRepoError:
        raise FolderUnavailableError(
            f"{dvc_file}: not in a DVC repository (`dvc init` makes one)"
        ) from None
    with repo:
        stage = repo.stage.load_one(str(dvc_file.resolve()))
        return stage.outs[0].workspace_status()


def _repin(name: str, path: str, md5: str) -> str:
    return (
        f"re-pin it: set datasets.{name}.source.md5 to {md5} (or `convbench dataset add "
        f"{name} {path} --force`, which writes the whole entry afresh)"
    )


def verify_folder(name: str, source: Source, root: Path) -> Path:
    """The folder of ``datasets.<name>``, checked against its ``.dvc`` file and the pin."""
    assert source.path is not None and source.md5 is not None
    folder = root / source.path
    dvc_file, shown = dvc_file_of(folder), dvc_file_of(Path(source.path))  # shown: relative
    if not dvc_file.is_file():
        raise FolderUnavailableError(
            f"datasets.{name}.source.path: {shown} not found; the folder is tracked with "
            f"`dvc add {source.path}` (`convbench dataset add {name} {source.path}` runs it "
            f"and pins it). {source.help}"
        )
    recorded = recorded_md5(dvc_file)
    if recorded != source.md5:
        raise FolderChangedError(
            f"datasets.{name}.source.md5 is {source.md5} but {shown} records {recorded}: "
            f"the folder was added again since it was pinned. If its new contents are "
            f"intended, {_repin(name, source.path, recorded)}"
        )
    if not folder.is_dir():
        raise FolderUnavailableError(
            f"datasets.{name}: the folder {source.path} is not here; `dvc checkout {shown}` "
            f"restores it from the DVC cache (`dvc pull {shown}` from a remote)"
        )
    changed = workspace_status(dvc_file)
    if changed:
        how = ", ".join(sorted(set(changed.values())))
        raise FolderChangedError(
            f"datasets.{name}: {source.path} changed since `dvc add` ({how}). If the change "
            f"is intended, run `dvc add {source.path}`, then re-pin it: set "
            f"datasets.{name}.source.md5 to the md5 {shown} then records (or `convbench "
            f"dataset add {name} {source.path} --force`); else `dvc checkout {shown}` puts "
            "back the pinned images"
        )
    return folder


def copy_folder(folder: Path, out_dir: Path) -> list[Path]:
    """Copy every file of ``folder`` (hidden ones aside) into ``out_dir``, replaced as a
    whole, keeping the relative layout; return the copies' paths."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    copied = []
    with atomic_dir(out_dir) as tmp:
        for member, data in iter_folder(folder):
            target = tmp.joinpath(*member.name.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            copied.append(out_dir.joinpath(*member.name.split("/")))
    log.info("copied %d files of %s into %s", len(copied), folder, out_dir)
    return copied


def fetch_local_folder(name: str, source: Source, root: Path, out_dir: Path) -> list[Path]:
    """Verify the folder of ``datasets.<name>`` (under the project ``root``), copy it."""
    return copy_folder(verify_folder(name, source, root), out_dir)
