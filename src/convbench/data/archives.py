"""Zip and tar archives (and plain folders), read or extracted without trusting their
member names.

Every member is checked before any of its bytes are used: no absolute path, no ``..``,
no link, device or other special file, no name given twice, nothing above a size limit.
A member that fails a check stops the whole operation with :class:`UnsafeArchiveError`
naming the archive, the member and the problem. :func:`safe_extract` writes into a
temporary folder beside the target and renames it into place only when every member
is out, so an interrupted or refused extraction leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from convbench.core.atomic import atomic_dir
from convbench.core.errors import ConvbenchError

# No member of the archives convbench reads comes near this; a zip bomb would.
DEFAULT_MAX_MEMBER_BYTES = 1 << 30
_CHUNK = 1 << 20


class UnsafeArchiveError(ConvbenchError, ValueError):
    """An archive member would escape the target folder, or is not a plain file."""

    def __init__(self, archive: Path, member: str, problem: str) -> None:
        self.archive = archive
        self.member = member
        self.problem = problem
        super().__init__(f"{archive}: member {member!r} refused: {problem}")


class ArchiveFormatError(ConvbenchError, ValueError):
    """The file is neither a readable zip nor a readable tar archive."""


@dataclass(frozen=True)
class Member:
    """A regular file of an archive, by its checked relative path."""

    name: str
    size: int


def _check_name(archive: Path, name: str) -> str:
    """The member's path, normalised; refuse absolute paths and any ``..`` component."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise UnsafeArchiveError(archive, name, "absolute path")
    parts = [part for part in posix.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(archive, name, "path escapes the target folder ('..')")
    if not parts:
        raise UnsafeArchiveError(archive, name, "empty path")
    return str(PurePosixPath(*parts))


def _zip_kind(info: zipfile.ZipInfo) -> str:
    # Unix zips keep the file type in the high bits; many writers record none (a file).
    kind = stat.S_IFMT(info.external_attr >> 16)
    if info.is_dir():
        return "dir"
    if kind == stat.S_IFLNK:
        return "link"
    if kind not in (0, stat.S_IFREG):
        return "special"
    return "file"


def _tar_kind(info: tarfile.TarInfo) -> str:
    if info.isdir():
        return "dir"
    if info.issym() or info.islnk():
        return "link"
    return "file" if info.isreg() else "special"


class _Checker:
    """Checks members one at a time, remembering names to refuse duplicates."""

    def __init__(self, archive: Path, max_member_bytes: int) -> None:
        self.archive = archive
        self.max_member_bytes = max_member_bytes
        self.seen: set[str] = set()

    def __call__(self, name: str, kind: str, size: int) -> Member | None:
        """The member if it is a regular file, None for a folder; raise if refused."""
        clean = _check_name(self.archive, name)
        if kind == "link":
            raise UnsafeArchiveError(self.archive, name, "link (symbolic or hard)")
        if kind == "special":
            raise UnsafeArchiveError(self.archive, name, "not a regular file (device, fifo)")
        if kind == "dir":
            return None
        if clean in self.seen:
            raise UnsafeArchiveError(self.archive, name, "the same path occurs twice")
        if size > self.max_member_bytes:
            raise UnsafeArchiveError(
                self.archive, name, f"{size:,} bytes, over the {self.max_member_bytes:,} limit"
            )
        self.seen.add(clean)
        return Member(clean, size)


def iter_members(
    archive: Path, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
) -> Iterator[tuple[Member, bytes]]:
    """Each regular file of a zip or tar archive (any compression) with its bytes.

    A zip's members are all checked before the first is read; a tar is checked member by
    member as it streams (a compressed tar cannot be listed without reading it whole).
    """
    archive = Path(archive)
    check = _Checker(archive, max_member_bytes)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            members = [(check(i.filename, _zip_kind(i), i.file_size), i) for i in infos]
            for member, info in members:
                if member is not None:
                    yield member, zf.read(info)
        return
    try:
        tf = tarfile.open(archive, mode="r:*")  # noqa: SIM115 - closed by the `with` below
    except (tarfile.TarError, OSError) as error:
        raise ArchiveFormatError(f"{archive}: not a zip or tar archive ({error})") from None
    with tf:
        for info in tf:
            member = check(info.name, _tar_kind(info), info.size)
            if member is not None:
                handle = tf.extractfile(info)
                assert handle is not None  # a regular file always has content
                yield member, handle.read()


def _path_kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "link"
    return "file" if stat.S_ISREG(mode) else "special"


def iter_folder(
    folder: Path, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
) -> Iterator[tuple[Member, bytes]]:
    """Each regular file under ``folder``, named by its relative POSIX path, with its bytes.

    The same checks as an archive's members: links and special files are refused, not
    followed. Hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``) are no data
    and are skipped. Sorted by path, so every reader sees the same order.
    """
    folder = Path(folder)
    check = _Checker(folder, max_member_bytes)
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(top)
        for name in [*dirs, *sorted(f for f in files if not f.startswith("."))]:
            path = here / name
            relative = path.relative_to(folder).as_posix()
            info = path.lstat()
            if stat.S_ISDIR(info.st_mode):
                continue  # os.walk goes into it next
            member = check(relative, _path_kind(info.st_mode), info.st_size)
            if member is not None:
                yield member, path.read_bytes()


def iter_files(source: Path) -> Iterator[tuple[Member, bytes]]:
    """The files of a folder (:func:`iter_folder`) or of an archive (:func:`iter_members`)."""
    return iter_folder(source) if Path(source).is_dir() else iter_members(source)


def safe_extract(
    archive: Path, dest: Path, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
) -> list[Path]:
    """Extract every regular file of ``archive`` under ``dest`` (replaced as a whole).

    File modes from the archive are ignored (no setuid, no executables): files get the
    usual permissions for new files.
    """
    written: list[Path] = []
    with atomic_dir(Path(dest)) as tmp:
        for member, data in iter_members(archive, max_member_bytes):
            target = tmp.joinpath(*member.name.split("/"))
            # Belt and braces: the name checks already rule this out.
            if not target.resolve().is_relative_to(tmp.resolve()):
                raise UnsafeArchiveError(Path(archive), member.name, "resolves outside the target")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            written.append(Path(dest).joinpath(*member.name.split("/")))
    return written


def content_fingerprint(archive: Path) -> str:
    """sha256 of the archive's member listing: ``"<sha256>  <path>\\n"`` sorted by path.

    It is the sha256 of what ``sha256sum`` prints for the extracted files (sorted), so it
    is the same for the original archive and any faithful repack of it.
    """
    rows = sorted(
        (member.name, hashlib.sha256(data).hexdigest()) for member, data in iter_members(archive)
    )
    listing = "".join(f"{digest}  {name}\n" for name, digest in rows)
    return hashlib.sha256(listing.encode()).hexdigest()
