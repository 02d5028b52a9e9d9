"""Archives are read and extracted without trusting member names: crafted ones are refused."""

from __future__ import annotations

import hashlib
import io
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from convbench.data.archives import (
    ArchiveFormatError,
    UnsafeArchiveError,
    content_fingerprint,
    iter_members,
    safe_extract,
)


def make_zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16  # how zip stores a symlink
            archive.writestr(info, target)
    return path


def make_tar(path: Path, add: Callable[[tarfile.TarFile], None]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        add(archive)
    return path


def tar_file(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def tar_special(archive: tarfile.TarFile, name: str, kind: bytes, target: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    archive.addfile(info)


GOOD = {"data/a.txt": b"alpha", "data/sub/b.txt": b"beta"}


def test_extracts_a_plain_zip_and_tar(tmp_path: Path) -> None:
    for archive in (
        make_zip(tmp_path / "good.zip", GOOD),
        make_tar(
            tmp_path / "good.tar.gz",
            lambda t: [tar_file(t, n, d) for n, d in GOOD.items()],
        ),
    ):
        dest = tmp_path / f"out-{archive.name}"
        written = safe_extract(archive, dest)
        assert sorted(p.relative_to(dest).as_posix() for p in written) == sorted(GOOD)
        assert (dest / "data" / "sub" / "b.txt").read_bytes() == b"beta"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../escape.txt", "escapes the target folder"),
        ("data/../../escape.txt", "escapes the target folder"),
        ("/etc/passwd", "absolute path"),
        ("C:/windows/evil.dll", "absolute path"),
        ("..\\windows\\escape.txt", "escapes the target folder"),
    ],
)
def test_zip_members_that_escape_are_refused(tmp_path: Path, name: str, problem: str) -> None:
    archive = make_zip(tmp_path / "evil.zip", {"data/ok.txt": b"fine", name: b"pwned"})
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=problem) as refused:
        safe_extract(archive, dest)
    assert refused.value.member == name and str(archive) in str(refused.value)
    # Nothing was extracted, not even the harmless member, and nothing escaped.
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.zip"]


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "link.zip", GOOD, links={"data/passwd": "/etc/passwd"})
    with pytest.raises(UnsafeArchiveError, match="link"):
        safe_extract(archive, tmp_path / "out")
    with pytest.raises(UnsafeArchiveError, match="link"):
        list(iter_members(archive))  # reading in place checks just the same
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("add", "problem"),
    [
        (lambda t: tar_file(t, "../escape.txt", b"x"), "escapes"),
        (lambda t: tar_file(t, "/tmp/abs.txt", b"x"), "absolute path"),
        (lambda t: tar_special(t, "data/link", tarfile.SYMTYPE, "/etc/passwd"), "link"),
        (lambda t: tar_special(t, "data/hard", tarfile.LNKTYPE, "data/a.txt"), "link"),
        (lambda t: tar_special(t, "data/dev", tarfile.CHRTYPE), "not a regular file"),
        (lambda t: tar_file(t, "data/a.txt", b"again"), "occurs twice"),
    ],
)
def test_tar_members_that_escape_are_refused(
    tmp_path: Path, add: Callable[[tarfile.TarFile], None], problem: str
) -> None:
    def build(archive: tarfile.TarFile) -> None:
        tar_file(archive, "data/a.txt", b"alpha")
        add(archive)

    archive = make_tar(tmp_path / "evil.tar.gz", build)
    with pytest.raises(UnsafeArchiveError, match=problem):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz"]


def test_oversized_member_is_refused_before_it_is_read(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "big.zip", {"big.bin": b"\0" * 10_000})
    with pytest.raises(UnsafeArchiveError, match="10,000 bytes, over the 1,000 limit"):
        list(iter_members(archive, max_member_bytes=1_000))


def test_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "notes.zip"
    path.write_text("just text")
    with pytest.raises(ArchiveFormatError, match=r"notes\.zip"):
        list(iter_members(path))


def test_content_fingerprint_survives_a_repack(tmp_path: Path) -> None:
    deflated = make_zip(tmp_path / "a.zip", GOOD)
    with zipfile.ZipFile(tmp_path / "b.zip", "w", compression=zipfile.ZIP_STORED) as repack:
        for name, data in reversed(GOOD.items()):
            repack.writestr(name, data)
    assert deflated.read_bytes() != (tmp_path / "b.zip").read_bytes()
    listing = "".join(
        f"{hashlib.sha256(GOOD[n]).hexdigest()}  {n}\n" for n in sorted(GOOD)
    )  # what `sha256sum` prints for the extracted files
    expected = hashlib.sha256(listing.encode()).hexdigest()
    assert content_fingerprint(deflated) == content_fingerprint(tmp_path / "b.zip") == expected
    make_zip(tmp_path / "c.zip", {**GOOD, "data/a.txt": b"altered"})
    assert content_fingerprint(tmp_path / "c.zip") != expected
