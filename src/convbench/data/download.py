"""Fetch a source's files from the mirror or the internet, trusting only pinned checksums.

Every candidate (the mirror first, then each URL of the file) is written to a temporary
file beside the destination and renamed into place only once it matches every pin of
the file (sha256, md5, or an archive's content fingerprint), so an interrupted or
corrupted transfer never leaves bytes under the file's real name. A transfer that ends
early is retried: the connection broke, the body fell short of its Content-Length, or,
with no Content-Length to go by, of the file's pinned size. Temporary files that a killed
download left behind are removed by the next fetch of the same file. URLs are shown
redacted (no userinfo, no token values) in logs and errors.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse, urlsplit, urlunsplit
from urllib.request import url2pathname

import pooch
import requests
from urllib3.exceptions import NameResolutionError

from convbench.core.atomic import atomic_path, remove_stale_temporaries
from convbench.core.errors import ConvbenchError, InputUnavailableError
from convbench.core.redact import redact
from convbench.data.sources import Source, SourceFile

log = logging.getLogger("convbench.data.download")

CHUNK_SIZE = 1 << 20
DEFAULT_TIMEOUT_S = 60.0
# Client errors that may go away on their own; any other 4xx will not, so is not retried.
_RETRYABLE_4XX = frozenset({408, 425, 429})


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


class _CandidateFailed(Exception):
    """Internal: this candidate could not deliver; the next one is tried."""


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


def _is_http(location: str) -> bool:
    return urlparse(location).scheme in ("http", "https")


def _local_path(location: str) -> Path:
    """A plain path or a ``file://`` URI as a path."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(url2pathname(unquote(parsed.path)))
    return Path(location).expanduser()


def _in_http_mirror(mirror: str, name: str) -> str:
    """The URL of ``name`` under an http(s) mirror prefix, keeping its query (``?token=``)."""
    parts = urlsplit(mirror)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + name))


def _candidates(file: SourceFile, mirror: str | None) -> list[tuple[str, bool]]:
    """(location, is_mirror) in the order they are tried."""
    found: list[tuple[str, bool]] = []
    if mirror:
        if _is_http(mirror):
            found.append((_in_http_mirror(mirror, file.name), True))
        else:
            found.append((str(_local_path(mirror) / file.name), True))
    found.extend((url, False) for url in file.urls)
    return found


def _copy_local(location: str, tmp: Path) -> None:
    src = _local_path(location)
    if not src.is_file():
        raise _CandidateFailed("no such file")
    try:
        shutil.copyfile(src, tmp)
    except OSError as err:
        raise _CandidateFailed(f"copy failed: {err}") from err


def _unresolvable_host(err: Exception) -> bool:
    """The host name did not resolve: offline, or no such host. Seconds will not fix it."""
    reason = getattr(err.args[0], "reason", None) if err.args else None
    return isinstance(reason, NameResolutionError)


def _retryable(err: Exception) -> bool:
    if isinstance(err, requests.HTTPError) and err.response is not None:
        status = err.response.status_code
        return status >= 500 or status in _RETRYABLE_4XX
    # Connection refused/reset, timeouts and transfers cut short may pass; a name lookup
    # that failed will not within the backoff.
    return not _unresolvable_host(err)


class _TransferCut(OSError):
    """The body ended early with no Content-Length to tell (a close-delimited response)."""


def _cut_short(tmp: Path, size: int | None, content_length: str | None) -> str | None:
    """Why the transfer looks cut, or None.

    Only when the server gave no Content-Length: urllib3 already raises when a body falls
    short of one, and a complete body that is not the pinned size is a wrong file, for
    the checksum to report.
    """
    got = tmp.stat().st_size
    if size is None or content_length is not None or got >= size:
        return None
    return f"connection closed after {got:,} of {size:,} bytes"


def _download_http(
    url: str, tmp: Path, retries: int, backoff: float, timeout: float, size: int | None = None
) -> None:
    shown = redact(url)
    lengths: list[str | None] = []  # Content-Length of each response, redirects included

    def record_length(response: requests.Response, *args: object, **kwargs: object) -> None:
        lengths.append(response.headers.get("Content-Length"))

    # A progress bar only helps a person at a terminal; in DVC or Prefect logs it is noise.
    downloader = pooch.HTTPDownloader(
        progressbar=sys.stderr.isatty(), timeout=timeout, hooks={"response": record_length}
    )
    attempts = 1 + max(0, retries)
    for attempt in range(1, attempts + 1):
        try:
            # pooch opens the path with "w+b", so a retry starts from an empty file.
            downloader(url, str(tmp), None)
            cut = _cut_short(tmp, size, lengths[-1] if lengths else None)
            # The last try's bytes go to the checksum: a short file every time may be the
            # mirror's wrong file, which must fail loudly, not pass as "unavailable".
            if cut is None or attempt == attempts:
                return
            raise _TransferCut(cut)
        except (requests.RequestException, OSError) as err:
            # Exception texts quote the URL (requests) or its path and query (urllib3).
            reason = redact(f"{type(err).__name__}: {err}")
            if attempt == attempts or not _retryable(err):
                tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                # Not chained: the cause's text would show the URL unredacted.
                raise _CandidateFailed(reason + tries) from None
            delay = backoff * 2 ** (attempt - 1)
            log.warning(
                "attempt %d/%d of %s failed (%s); retrying in %.2fs",
                attempt,
                attempts,
                shown,
                reason,
                delay,
            )
            time.sleep(delay)


def fetch_file(
    file: SourceFile,
    dest_dir: Path,
    mirror: str | None = None,
    retries: int = 3,
    how_to_provide: str = "",
    *,
    backoff: float = 1.0,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Put ``file`` at ``dest_dir/file.name``, verified against its pins.

    ``mirror`` is a folder (path or ``file://`` URI) or an http(s) prefix holding the same
    file names; it is tried before ``file.urls``. ``retries`` is how many more times a failed
    HTTP transfer is tried, waiting ``backoff`` seconds, doubled each time.
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
    for location, is_mirror in _candidates(file, mirror):
        origin = redact(f"mirror {location}" if is_mirror else location)
        log.info("fetching %s from %s", file.name, origin)
        try:
            # atomic_path removes the temporary file whenever the block raises.
            with atomic_path(target) as tmp:
                if _is_http(location):
                    _download_http(location, tmp, retries, backoff, timeout, file.size)
                else:
                    _copy_local(location, tmp)
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
        except _CandidateFailed as err:
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
    backoff: float = 1.0,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[Path]:
    """Fetch and verify every file of ``source`` into ``dest_dir``; return their paths.

    Unavailable files are gathered so that one error lists everything missing; a checksum
    mismatch stops at once.
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
                    source.how_to_provide,
                    backoff=backoff,
                    timeout=timeout,
                )
            )
        except SourceUnavailableError as err:
            missing.update(err.failures)
    if missing:
        raise SourceUnavailableError(missing, source.how_to_provide)
    return paths
