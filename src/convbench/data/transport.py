"""Moving one candidate's bytes into a temporary file: a local copy, or HTTP with retries.

A transfer that ends early is retried: the connection broke, the body fell short of its
Content-Length, or, with no Content-Length to go by, of the file's pinned size. Whatever
cannot deliver raises :class:`CandidateFailed` for the caller to try the next candidate.
URLs are shown redacted (no userinfo, no token values) in logs and errors.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import pooch
import requests
from urllib3.exceptions import NameResolutionError

from convbench.core.redact import redact

# The download's own logger: its retries belong with the fetch they are part of.
log = logging.getLogger("convbench.data.download")

# Client errors that may go away on their own; any other 4xx will not, so is not retried.
_RETRYABLE_4XX = frozenset({408, 425, 429})


class CandidateFailed(Exception):
    """This candidate could not deliver; the next one is tried."""


def is_http(location: str) -> bool:
    """Whether ``location`` is fetched over HTTP(S) rather than copied."""
    return urlparse(location).scheme in ("http", "https")


def local_path(location: str) -> Path:
    """A plain path or a ``file://`` URI as a path."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(url2pathname(unquote(parsed.path)))
    return Path(location).expanduser()


def copy_local(location: str, tmp: Path) -> None:
    """Copy a local file (path or ``file://`` URI) to ``tmp``."""
    src = local_path(location)
    if not src.is_file():
        raise CandidateFailed("no such file")
    try:
        shutil.copyfile(src, tmp)
    except OSError as err:
        raise CandidateFailed(f"copy failed: {err}") from err


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


def download_http(
    url: str, tmp: Path, retries: int, backoff: float, timeout: float, size: int | None = None
) -> None:
    """Download ``url`` to ``tmp``, retrying up to ``retries`` more times what may pass,
    waiting ``backoff`` seconds, doubled each time; ``size``: the pinned size, if any."""
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
                raise CandidateFailed(reason + tries) from None
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
