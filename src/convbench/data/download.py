"""Fetch a source's files from the mirror or the internet, trusting only pinned checksums.

Every candidate (the mirror first, then each URL of the file) is written to a temporary
file beside the destination and renamed into place only once it matches every pin of
the file (sha256, md5, or an archive's content fingerprint), so an interrupted or
corrupted transfer never leaves bytes under the file's real name (the transfer itself,
with its retries, is :mod:`convbench.data.transport`'s). Temporary files that a killed
download left behind are removed by the next fetch of the same file. URLs are shown
redacted (no userinfo, no token values) in logs and errors.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from convbench.core.atomic import atomic_path, remove_stale_temporaries
from convbench.core.errors import ConvbenchError, InputUnavailableError
from convbench.core.redact import redact
from convbench.data.transport import CandidateFailed, copy_local, download_http, is_http, local_path
from convbench.settings import Source, SourceFile

log = logging.getLogger("convbench.data.download")

CHUNK_SIZE = 1 << 20
DEFAULT_TIMEOUT_S = 60.0


class DownloadError(ConvbenchError, RuntimeError):
    """A source file could not be fetched and verified."""


class ChecksumMismatchError(DownloadError):
    """A candidate delivered bytes that do not match a pin (``kind``: which checksum)."""

    def __init__(
        self,
        file_name: str,
        expected: str,
        actual: str,
        origin: str,
        kind: str = "sha256",
        note: str = "",
    ) -> None:
        self.file_name = file_name
        self.expected = expected
        self.actual = actual
        self.origin = redact(origin)
        self.kind = kind
        super().__init__(
            f"{file_name} from {self.origin} has {kind} {actual}, but {expected} is pinned"
            f"{note}; the bytes were discarded"
        )


@dataclass(frozen=True)
class Attempt:
    """One place a file was looked for, and why it did not deliver."""

    origin: str
    reason: str


class SourceUnavailableError(InputUnavailableError, DownloadError):
    """No candidate could deliver one or more files; says where it looked and how to help."""

    def __init__(self, failures: dict[str, tuple[Attempt, ...]], how_to_provide: str) -> None:
        self.failures = failures
        self.file_names = tuple(failures)
        self.how_to_provide = how_to_provide
        lines = [f"could not fetch {', '.join(self.file_names)}:"]
        for name, attempts in failures.items():
            lines.append(f"  {name}:")
            lines.extend(f"    - {a.origin}: {a.reason}" for a in attempts)
            if not attempts:
                lines.append("    - no mirror and no URLs to try")
        if how_to_provide:
            lines.append(f"to provide them: {how_to_provide}")
        super().__init__("\n".join(lines))


class WeightsUnavailableError(InputUnavailableError, DownloadError):
    """Pretrained weights are not where the download stage puts them, or fail their pin."""


def sha256_of(path: Path) -> str:
    return _digests(path)["sha256"]


def _digests(path: Path) -> dict[str, str]:
    """sha256 and md5 of a file, in one pass."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            sha256.update(chunk)
            md5.update(chunk)
    return {"sha256": sha256.hexdigest(), "md5": md5.hexdigest()}


def _content_fingerprint(path: Path) -> str:
    from convbench.data.archives import ArchiveFormatError, UnsafeArchiveError, content_fingerprint

    try:
        return content_fingerprint(path)
    except (ArchiveFormatError, UnsafeArchiveError, OSError, EOFError) as error:
        return f"none (not a readable archive: {error})"


def mismatch(file: SourceFile, path: Path, origin: str) -> ChecksumMismatchError | None:
    """The first pin of ``file`` that ``path`` fails, or None when it matches them all."""
    digests = _digests(path)
    got = path.stat().st_size
    # Hashes decide; the size only helps whoever reads the message tell a cut from a wrong file.
    note = f" ({got:,} bytes, {file.size:,} expected)" if file.size not in (None, got) else ""
    for kind in ("sha256", "md5"):
        expected = getattr(file, kind)
        if expected and digests[kind] != expected:
            return ChecksumMismatchError(file.name, expected, digests[kind], origin, kind, note)
    if file.content_sha256:
        actual = _content_fingerprint(path)
        if actual != file.content_sha256:
            return ChecksumMismatchError(
                file.name, file.content_sha256, actual, origin, "content fingerprint", note
            )
    return None


def pins_of(file: SourceFile) -> str:
    """The pins of a file, as a log line shows them."""
    pins = {"sha256": file.sha256, "md5": file.md5, "content fingerprint": file.content_sha256}
    return ", ".join(f"{kind} {value}" for kind, value in pins.items() if value)


def _in_http_mirror(mirror: str, name: str) -> str:
    """The URL of ``name`` under an http(s) mirror prefix, keeping its query (``?token=``)."""
    parts = urlsplit(mirror)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + name))


def _candidates(
    file: SourceFile, urls: tuple[str, ...], mirror: str | None, folder: str | None
) -> list[tuple[str, bool]]:
    """(location, is_mirror) in the order they are tried.

    In the mirror, ``<folder>/<file>`` comes first: datasets that publish files under the
    same names (many idx sets use MNIST's) share one mirror, each in its own folder.
    """
    found: list[tuple[str, bool]] = []
    names = [f"{folder}/{file.name}", file.name] if folder else [file.name]
    if mirror and is_http(mirror):
        found.extend((_in_http_mirror(mirror, name), True) for name in names)
    elif mirror:
        local = [local_path(mirror) / name for name in names]
        # A local mirror: only the copies that are there (the first one found decides).
        found.extend((str(path), True) for path in local if path.is_file())
        if not any(path.is_file() for path in local):
            found.append((str(local[-1]), True))
    found.extend((url, False) for url in urls)
    return found


def fetch_file(
    file: SourceFile,
    dest_dir: Path,
    mirror: str | None = None,
    retries: int = 3,
    how_to_provide: str = "",
    *,
    urls: tuple[str, ...] | None = None,
    folder: str | None = None,
    backoff: float = 1.0,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Put ``file`` at ``dest_dir/file.name``, verified against its pins.

    ``mirror`` is a folder (path or ``file://`` URI) or an http(s) prefix holding the same
    file names, under ``folder`` or at its top; it is tried before ``urls`` (default: the
    file's own). ``retries`` is how many more times a failed HTTP transfer is tried,
    waiting ``backoff`` seconds, doubled each time.
    """
    target = dest_dir / file.name
    # A killed download leaves its temporary; one still being written is locked, and kept.
    for stale in remove_stale_temporaries(target):
        log.info("removed %s, left by an interrupted download", stale.name)
    if target.is_file():
        if mismatch(file, target, str(target)) is None:
            log.info("%s already present and verified at %s", file.name, target)
            return target
        # Removed now so that, should every candidate fail, no stage can pick up bad bytes.
        log.warning("%s at %s does not match its pin; removing it", file.name, target)
        target.unlink()

    tried: list[Attempt] = []
    mismatches: list[ChecksumMismatchError] = []
    candidates = _candidates(file, tuple(file.urls) if urls is None else urls, mirror, folder)
    for location, is_mirror in candidates:
        origin = redact(f"mirror {location}" if is_mirror else location)
        log.info("fetching %s from %s", file.name, origin)
        try:
            # atomic_path removes the temporary file whenever the block raises.
            with atomic_path(target) as tmp:
                if is_http(location):
                    download_http(location, tmp, retries, backoff, timeout, file.size)
                else:
                    copy_local(location, tmp)
                failed = mismatch(file, tmp, origin)
                if failed is not None:
                    raise failed
        except ChecksumMismatchError as err:
            # A wrong file in the mirror is the operator's to fix; the internet must not hide it.
            if is_mirror:
                raise
            log.warning("%s", err)
            mismatches.append(err)
            tried.append(Attempt(origin, f"{err.kind} mismatch (got {err.actual})"))
            continue
        except CandidateFailed as err:
            log.warning("could not fetch %s from %s: %s", file.name, origin, err)
            tried.append(Attempt(origin, str(err)))
            continue
        log.info("%s verified (%s) from %s", file.name, pins_of(file), origin)
        return target

    if mismatches:
        raise mismatches[0]
    raise SourceUnavailableError({file.name: tuple(tried)}, how_to_provide)


def fetch_source(
    source: Source,
    dest_dir: Path,
    mirror: str | None = None,
    retries: int = 3,
    *,
    name: str | None = None,
    backoff: float = 1.0,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[Path]:
    """Fetch and verify every file of ``source`` into ``dest_dir``; return their paths.

    ``name`` (the dataset's or base's) is the mirror folder tried first. Unavailable files
    are gathered so that one error lists everything missing; a checksum mismatch stops
    at once.
    """
    paths: list[Path] = []
    missing: dict[str, tuple[Attempt, ...]] = {}
    for file in source.files:
        try:
            paths.append(
                fetch_file(
                    file,
                    dest_dir,
                    mirror,
                    retries,
                    source.help,
                    urls=source.urls_of(file),
                    folder=name,
                    backoff=backoff,
                    timeout=timeout,
                )
            )
        except SourceUnavailableError as err:
            missing.update(err.failures)
    if missing:
        raise SourceUnavailableError(missing, source.help)
    return paths
