"""Atomic writes: a half-written output must never look like a finished one.

Everything is written to a temporary sibling first and renamed into place, so an
interrupted stage leaves the previous output (or nothing), never a truncated file that
DVC or the next stage would trust. A temporary file is locked by its writer while it
lives, so one that nobody holds was left by a writer that was killed and can go.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _usual_mode(path: Path, mode: int) -> None:
    """The permissions a plain open/mkdir would give (mkstemp/mkdtemp make them private)."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(mode & ~umask)


def _temporary_pattern(path: Path) -> str:
    """The names :func:`atomic_path` gives the temporaries of ``path``, as a glob."""
    return f".{glob.escape(path.name)}.*.tmp{glob.escape(path.suffix)}"


def _temporary_file(path: Path) -> tuple[int, Path]:
    """A new temporary file beside ``path``, locked by this writer: (its fd, its path).

    The lock is held until the fd is closed (once the temporary is gone); the kernel
    drops it when the process dies, which is how a killed writer's leftover is known.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix
    )
    fcntl.flock(fd, fcntl.LOCK_EX)
    _usual_mode(Path(tmp), 0o666)
    return fd, Path(tmp)


def _temporary_folder(path: Path) -> tuple[int, Path]:
    """A new empty temporary folder beside ``path``, locked by this writer through a
    sidecar file (``<folder>.lock``): (the lock's fd, the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    _usual_mode(tmp, 0o777)
    fd = os.open(_folder_lock(tmp), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd, tmp


def _folder_lock(folder: Path) -> Path:
    return folder.with_name(f"{folder.name}.lock")


def _aside(path: Path) -> Path:
    """Where a commit puts the previous ``path`` while it swaps the new one in."""
    return path.with_name(f".{path.name}.old")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``."""
    fd, tmp_path = _temporary_file(path)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
        os.close(fd)


def lock_held(path: Path) -> bool:
    """Whether a live process holds the lock on ``path``: a missing file holds none; a
    failed lookup counts as held (a file system without locks: leave its files alone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries of ``path`` that killed writers left; return them.

    Those of a writer still at work (in this process or another) are locked and kept.
    A previous version set aside by a commit that was killed mid-swap goes too, or, if
    ``path`` itself is missing, is put back: it is the last complete output.
    """
    removed = []
    for tmp in sorted(path.parent.glob(_temporary_pattern(path))):
        if tmp.is_file() and not lock_held(tmp):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        elif tmp.is_dir() and not tmp.is_symlink():
            lock = _folder_lock(tmp)
            if not lock_held(lock):
                _remove(tmp)
                lock.unlink(missing_ok=True)
                removed.append(tmp)
    old = _aside(path)
    if old.exists() or old.is_symlink():
        if path.exists():
            _remove(old)
            removed.append(old)
        else:
            os.replace(old, path)
    return removed


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it becomes ``path``."""
    with all_or_nothing() as staging:
        yield staging.folder(path)


def write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


class Staging:
    """Temporary siblings of several outputs, to be put in place together."""

    def __init__(self) -> None:
        self.staged: list[tuple[Path, Path]] = []  # (temporary, target)
        self._locks: list[int] = []  # the staged files' writer locks, held until discard

    def file(self, target: Path) -> Path:
        """A temporary path that becomes ``target`` when the staging commits."""
        remove_stale_temporaries(target)  # a killed run's leftovers of this output
        fd, tmp = _temporary_file(target)
        self._locks.append(fd)
        self.staged.append((tmp, target))
        return tmp

    def folder(self, target: Path) -> Path:
        """An empty temporary folder that becomes ``target`` when the staging commits."""
        remove_stale_temporaries(target)
        fd, tmp = _temporary_folder(target)
        self._locks.append(fd)
        self.staged.append((tmp, target))
        return tmp

    def commit(self) -> None:
        """Swap every staged output in; should one rename fail, put the previous ones back.

        Renames within a folder need no free space, so after the writes succeeded this
        does not fail for a full disk.
        """
        done: list[tuple[Path, Path | None]] = []  # (target, its previous version aside)
        try:
            for tmp, target in self.staged:
                old = None
                if target.exists():
                    old = _aside(target)
                    _remove(old)
                    os.replace(target, old)
                done.append((target, old))
                os.replace(tmp, target)
        except BaseException:
            for target, old in reversed(done):
                _remove(target)
                if old is not None:
                    os.replace(old, target)
            raise
        for _, old in done:
            if old is not None:
                _remove(old)

    def discard(self) -> None:
        for tmp, _ in self.staged:
            _remove(tmp)
            _folder_lock(tmp).unlink(missing_ok=True)
        for fd in self._locks:
            os.close(fd)
        self._locks.clear()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def all_or_nothing() -> Iterator[Staging]:
    """Write a stage's outputs to temporary siblings; replace the old ones only if all succeed.

    A failure (a full disk, a refused permission, an error) while writing any of them
    leaves every previous output as it was, and no temporary behind.
    """
    staging = Staging()
    try:
        yield staging
        staging.commit()
    finally:
        staging.discard()
