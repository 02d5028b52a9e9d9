"""fetch_file/fetch_source against local mirrors and a local HTTP server (127.0.0.1 only)."""

from __future__ import annotations

import base64
import hashlib
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from convbench.core.atomic import atomic_path, remove_stale_temporaries
from convbench.data.download import (
    ChecksumMismatchError,
    SourceUnavailableError,
    fetch_file,
    fetch_source,
    sha256_of,
)
from convbench.settings import Source, SourceFile, load_params

pytestmark = pytest.mark.timeout(10)

NAME = "digits.bin"
CONTENT = bytes(range(256)) * 40  # 10 KiB, several chunks on the wire
SHA = hashlib.sha256(CONTENT).hexdigest()
HOW = "copy digits.bin into a folder and set CONVBENCH_MIRROR to it"
FAST = {"backoff": 0.01, "timeout": 2.0}


def pinned(*urls: str, name: str = NAME, sha: str = SHA) -> SourceFile:
    return SourceFile(name=name, sha256=sha, urls=urls, size=len(CONTENT))


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


def unused_url(name: str = NAME) -> str:
    # Bound then closed: nothing listens there, so connecting is refused at once.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


Respond = Callable[[BaseHTTPRequestHandler, int], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Respond], str]]:
    """Start a server whose GET handler is ``respond(handler, request_number)``; give its URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(respond: Respond) -> str:
        count = 0
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                nonlocal count
                with lock:
                    count += 1
                    n = count
                respond(self, n)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll interval keeps shutdown (and so each test) quick.
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def send_full(handler: BaseHTTPRequestHandler, body: bytes = CONTENT) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / NAME).write_bytes(CONTENT)
    return folder


def test_sha256_of(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(CONTENT)
    assert sha256_of(path) == SHA


def test_mirror_folder_is_used_first(tmp_path: Path, mirror: Path) -> None:
    dest = tmp_path / "out"
    # The URL would fail: the mirror must be tried first and suffice.
    path = fetch_file(pinned(unused_url()), dest, mirror=str(mirror), retries=0, **FAST)
    assert path == dest / NAME
    assert path.read_bytes() == CONTENT
    assert leftovers(dest) == [NAME]


def test_the_datasets_own_mirror_folder_comes_first(tmp_path: Path, mirror: Path) -> None:
    # Another dataset's file of the same name sits at the top of the mirror: this one's
    # folder is read first, so two idx sets published under MNIST's names share a mirror.
    (mirror / "other").mkdir()
    (mirror / "other" / NAME).write_bytes(b"not these bytes")
    ours = mirror / "ours"
    ours.mkdir()
    (ours / NAME).write_bytes(CONTENT)
    (mirror / NAME).write_bytes(b"another dataset's file")
    path = fetch_file(pinned(), tmp_path / "out", mirror=str(mirror), folder="ours", **FAST)
    assert path.read_bytes() == CONTENT
    with pytest.raises(ChecksumMismatchError, match=f"{SHA}.*pinned"):
        fetch_file(pinned(), tmp_path / "top", mirror=str(mirror), folder="none", **FAST)


def test_http_mirror_tries_the_datasets_folder_then_the_top(tmp_path: Path, serve) -> None:
    paths: list[str] = []

    def respond(h: BaseHTTPRequestHandler, n: int) -> None:
        paths.append(h.path)
        if h.path.startswith("/data/ours/"):
            h.send_error(404)
        else:
            send_full(h)

    base = serve(respond)
    fetch_file(pinned(), tmp_path / "out", mirror=base + "/data/", folder="ours", **FAST)
    assert paths == [f"/data/ours/{NAME}", f"/data/{NAME}"]


def test_base_urls_come_before_a_files_own(tmp_path: Path) -> None:
    source = Source(base_urls=["https://a.example/x/"], files=[pinned("https://b.example/f")])
    assert source.urls_of(source.files[0]) == (f"https://a.example/x/{NAME}", "https://b.example/f")


def test_file_uri_mirror(tmp_path: Path, mirror: Path) -> None:
    dest = tmp_path / "out"
    path = fetch_file(pinned(), dest, mirror=mirror.as_uri(), **FAST)
    assert sha256_of(path) == SHA


def test_present_good_file_is_not_copied_again(tmp_path: Path, mirror: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / NAME).write_bytes(CONTENT)
    mtime = (dest / NAME).stat().st_mtime_ns
    (mirror / NAME).unlink()  # a copy would now fail
    path = fetch_file(pinned(), dest, mirror=str(mirror), **FAST)
    assert path.stat().st_mtime_ns == mtime


def test_present_bad_file_is_replaced(tmp_path: Path, mirror: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / NAME).write_bytes(b"stale")
    path = fetch_file(pinned(), dest, mirror=str(mirror), **FAST)
    assert path.read_bytes() == CONTENT
    assert leftovers(dest) == [NAME]


def test_wrong_file_in_mirror_is_loud(tmp_path: Path, mirror: Path, serve) -> None:
    (mirror / NAME).write_bytes(b"not the digits")
    bad = hashlib.sha256(b"not the digits").hexdigest()
    hits: list[int] = []
    good_url = serve(lambda h, n: (hits.append(n), send_full(h))) + "/" + NAME
    dest = tmp_path / "out"
    with pytest.raises(ChecksumMismatchError) as info:
        fetch_file(pinned(good_url), dest, mirror=str(mirror), **FAST)
    assert hits == []  # the good URL was not used to paper over the bad mirror
    err = info.value
    assert (err.file_name, err.expected, err.actual) == (NAME, SHA, bad)
    assert str(mirror) in err.origin
    for part in (NAME, SHA, bad, str(mirror)):
        assert part in str(err)
    assert leftovers(dest) == []  # neither the final name nor a temporary file


def test_http_url(tmp_path: Path, serve) -> None:
    base = serve(lambda h, n: send_full(h))
    path = fetch_file(pinned(f"{base}/{NAME}"), tmp_path / "out", **FAST)
    assert sha256_of(path) == SHA


def test_http_mirror_prefix(tmp_path: Path, serve) -> None:
    paths: list[str] = []

    def respond(h: BaseHTTPRequestHandler, n: int) -> None:
        paths.append(h.path)
        send_full(h)

    base = serve(respond)
    fetch_file(pinned(), tmp_path / "out", mirror=base + "/data/", **FAST)
    assert paths == [f"/data/{NAME}"]


def test_dropped_connection_is_retried(
    tmp_path: Path, serve, caplog: pytest.LogCaptureFixture
) -> None:
    def respond(h: BaseHTTPRequestHandler, n: int) -> None:
        if n == 1:  # promise the whole file, send half, hang up
            h.send_response(200)
            h.send_header("Content-Length", str(len(CONTENT)))
            h.end_headers()
            h.wfile.write(CONTENT[: len(CONTENT) // 2])
            h.wfile.flush()
            h.close_connection = True
        else:
            send_full(h)

    base = serve(respond)
    dest = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="convbench.data.download"):
        path = fetch_file(pinned(f"{base}/{NAME}"), dest, retries=2, **FAST)
    assert sha256_of(path) == SHA
    assert leftovers(dest) == [NAME]
    assert "attempt 1/3" in caplog.text  # the first transfer really was cut short
    assert f"verified (sha256 {SHA}) from {base}" in caplog.text


def test_dropped_connection_every_time_leaves_nothing(tmp_path: Path, serve) -> None:
    def respond(h: BaseHTTPRequestHandler, n: int) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(CONTENT) + 1000))
        h.end_headers()
        h.wfile.write(CONTENT)
        h.close_connection = True

    url = serve(respond) + "/" + NAME
    dest = tmp_path / "out"
    with pytest.raises(SourceUnavailableError) as info:
        fetch_file(pinned(url), dest, retries=1, how_to_provide=HOW, **FAST)
    assert url in str(info.value)
    assert "2 attempts" in str(info.value)
    assert leftovers(dest) == []


def test_wrong_bytes_from_url_fall_through_to_next(tmp_path: Path, serve) -> None:
    bad_url = serve(lambda h, n: send_full(h, b"corrupted")) + "/" + NAME
    good_url = serve(lambda h, n: send_full(h)) + "/" + NAME
    dest = tmp_path / "out"
    path = fetch_file(pinned(bad_url, good_url), dest, **FAST)
    assert sha256_of(path) == SHA
    assert leftovers(dest) == [NAME]


def test_only_wrong_bytes_raise_mismatch(tmp_path: Path, serve) -> None:
    bad_url = serve(lambda h, n: send_full(h, b"corrupted")) + "/" + NAME
    dest = tmp_path / "out"
    with pytest.raises(ChecksumMismatchError) as info:
        fetch_file(pinned(unused_url(), bad_url), dest, retries=0, **FAST)
    assert info.value.origin == bad_url
    bad = hashlib.sha256(b"corrupted").hexdigest()
    for part in (NAME, SHA, bad, bad_url, f"9 bytes, {len(CONTENT):,} expected"):
        assert part in str(info.value)
    assert leftovers(dest) == []


def test_not_found_is_not_retried(tmp_path: Path, serve) -> None:
    def respond(h: BaseHTTPRequestHandler, n: int) -> None:
        h.send_error(404)

    url = serve(respond) + "/" + NAME
    with pytest.raises(SourceUnavailableError, match="404"):
        fetch_file(pinned(url), tmp_path / "out", retries=3, **FAST)


def test_all_unreachable(tmp_path: Path) -> None:
    urls = (unused_url(), unused_url())
    missing_mirror = tmp_path / "no-mirror"
    dest = tmp_path / "out"
    with pytest.raises(SourceUnavailableError) as info:
        fetch_file(
            pinned(*urls), dest, mirror=str(missing_mirror), retries=1, how_to_provide=HOW, **FAST
        )
    message = str(info.value)
    for part in (NAME, HOW, str(missing_mirror / NAME), *urls):
        assert part in message
    assert info.value.file_names == (NAME,)
    assert leftovers(dest) == []


def test_fetch_source_names_every_missing_file(tmp_path: Path, mirror: Path) -> None:
    other = hashlib.sha256(b"other").hexdigest()
    source = Source(
        description="test",
        files=(pinned(), pinned(name="a.bin", sha=other), pinned(name="b.bin", sha=other)),
        how_to_provide=HOW,
    )
    dest = tmp_path / "out"
    with pytest.raises(SourceUnavailableError) as info:
        fetch_source(source, dest, mirror=str(mirror), **FAST)
    assert info.value.file_names == ("a.bin", "b.bin")
    assert HOW in str(info.value)
    # The file that was available is kept, verified, for the next run.
    assert leftovers(dest) == [NAME]

    for name in ("a.bin", "b.bin"):
        (mirror / name).write_bytes(b"other")
    paths = fetch_source(source, dest, mirror=str(mirror), **FAST)
    assert [p.name for p in paths] == [NAME, "a.bin", "b.bin"]


def test_md5_pin_is_enforced(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / NAME).write_bytes(CONTENT)
    md5 = hashlib.md5(CONTENT, usedforsecurity=False).hexdigest()
    good = SourceFile(name=NAME, md5=md5, urls=())
    assert fetch_file(good, tmp_path / "a", str(mirror)).read_bytes() == CONTENT
    wrong = SourceFile(name=NAME, md5="0" * 32, urls=())
    with pytest.raises(ChecksumMismatchError, match=f"has md5 {md5}, but 0{{32}} is pinned"):
        fetch_file(wrong, tmp_path / "b", str(mirror))
    assert leftovers(tmp_path / "b") == []


def test_archive_pinned_by_content_accepts_a_repack(tmp_path: Path) -> None:
    import zipfile

    from convbench.data.archives import content_fingerprint

    members = {"set/a.jpg": b"first", "set/b.jpg": b"second"}
    official = tmp_path / "official" / "set.zip"
    official.parent.mkdir()
    with zipfile.ZipFile(official, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    pin = SourceFile(name="set.zip", content_sha256=content_fingerprint(official), urls=())

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "set.zip", "w", zipfile.ZIP_STORED) as repack:
        for name, data in reversed(members.items()):
            repack.writestr(name, data)
    assert fetch_file(pin, tmp_path / "ok", str(mirror)).is_file()

    with zipfile.ZipFile(mirror / "set.zip", "w") as altered:
        altered.writestr("set/a.jpg", b"first")
        altered.writestr("set/b.jpg", b"tampered")
    with pytest.raises(ChecksumMismatchError, match=r"has content fingerprint [0-9a-f]{64}, but"):
        fetch_file(pin, tmp_path / "bad", str(mirror))
    (mirror / "set.zip").write_text("not an archive")
    with pytest.raises(ChecksumMismatchError, match="not a readable archive"):
        fetch_file(pin, tmp_path / "bad", str(mirror))
    assert leftovers(tmp_path / "bad") == []


def test_real_filtered_zip_matches_its_content_pin(tmp_path: Path) -> None:
    from tests.conftest import ROOT, SHARED_DATASETS

    pinned_zip = load_params(ROOT / "params.yaml").datasets["cats_and_dogs"].source

    if not (SHARED_DATASETS / "cats_and_dogs_filtered.zip").exists():
        pytest.skip(f"the dataset mirror {SHARED_DATASETS} is absent")
    fetched = fetch_source(pinned_zip, tmp_path, str(SHARED_DATASETS))
    assert [p.name for p in fetched] == ["cats_and_dogs_filtered.zip"]


# Cut transfers without a Content-Length, killed downloads, credentials in URLs.


def send_cut(handler: BaseHTTPRequestHandler, framing: str) -> None:
    """Half the file, then hang up, with nothing in the headers to tell it was cut short."""
    half = CONTENT[: len(CONTENT) // 2]
    if framing == "chunked":
        handler.protocol_version = "HTTP/1.1"
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        # One chunk of the whole file announced, half of it sent.
        handler.wfile.write(f"{len(CONTENT):x}\r\n".encode() + half)
    else:  # HTTP/1.0 without Content-Length: the body ends where the connection does
        handler.send_response(200)
        handler.end_headers()
        handler.wfile.write(half)
    handler.wfile.flush()
    handler.close_connection = True


@pytest.mark.parametrize("framing", ["close-delimited", "chunked"])
def test_a_cut_without_content_length_is_retried_not_judged(
    tmp_path: Path, serve, caplog: pytest.LogCaptureFixture, framing: str
) -> None:
    hits: list[int] = []

    def respond(h: BaseHTTPRequestHandler, n: int) -> None:
        hits.append(n)
        send_cut(h, framing) if n == 1 else send_full(h)

    # Through the mirror: were the half file judged by its checksum, it would fail loudly.
    base = serve(respond)
    dest = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="convbench.data.download"):
        path = fetch_file(pinned(), dest, mirror=base, retries=2, **FAST)
    assert sha256_of(path) == SHA
    assert hits == [1, 2]
    assert "attempt 1/3" in caplog.text
    assert leftovers(dest) == [NAME]


def test_a_cut_every_time_ends_as_a_loud_mismatch_naming_the_sizes(tmp_path: Path, serve) -> None:
    hits: list[int] = []
    base = serve(lambda h, n: (hits.append(n), send_cut(h, "close-delimited")))
    dest = tmp_path / "out"
    with pytest.raises(ChecksumMismatchError) as info:
        fetch_file(pinned(), dest, mirror=base, retries=2, **FAST)
    assert hits == [1, 2, 3]  # retried, then the last bytes were judged, not trusted
    half = hashlib.sha256(CONTENT[: len(CONTENT) // 2]).hexdigest()
    for part in (NAME, SHA, half, f"5,120 bytes, {len(CONTENT):,} expected"):
        assert part in str(info.value)
    assert leftovers(dest) == []


def test_a_short_but_complete_file_in_an_http_mirror_is_loud_at_once(tmp_path: Path, serve) -> None:
    hits: list[int] = []
    short = CONTENT[:100]  # sent whole, with its Content-Length: another file, not a cut
    base = serve(lambda h, n: (hits.append(n), send_full(h, short)))
    good_url = serve(lambda h, n: send_full(h)) + "/" + NAME
    dest = tmp_path / "out"
    with pytest.raises(ChecksumMismatchError) as info:
        fetch_file(pinned(good_url), dest, mirror=base + "/m", retries=3, **FAST)
    assert hits == [1]
    wrong = hashlib.sha256(short).hexdigest()
    for part in (NAME, SHA, wrong, f"mirror {base}/m/{NAME}"):
        assert part in str(info.value)
    assert leftovers(dest) == []


KILLED_FETCH = """
import sys
from pathlib import Path
from convbench.data.download import fetch_file
from convbench.settings import SourceFile
url, dest, sha, size = sys.argv[1:]
fetch_file(SourceFile(name=Path(url).name, sha256=sha, size=int(size), urls=(url,)),
           Path(dest), retries=0, timeout=30)
"""


def test_a_rerun_after_a_killed_download_ends_with_exactly_the_verified_file(
    tmp_path: Path, serve, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()

    def respond(h: BaseHTTPRequestHandler, n: int) -> None:
        if n == 1:  # half the file, then stall until the client is dead
            h.send_response(200)
            h.send_header("Content-Length", str(len(CONTENT)))
            h.end_headers()
            h.wfile.write(CONTENT[: len(CONTENT) // 2])
            h.wfile.flush()
            release.wait(10)
            h.close_connection = True
        else:
            send_full(h)

    url = serve(respond) + "/" + NAME
    dest = tmp_path / "out"
    script = [sys.executable, "-c", KILLED_FETCH, url, str(dest), SHA, str(len(CONTENT))]
    child = subprocess.Popen(script)
    try:
        deadline = time.monotonic() + 8
        while not any(p.stat().st_size for p in dest.glob(f".{NAME}.*")):
            assert child.poll() is None and time.monotonic() < deadline, "no transfer began"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        release.set()
        if child.poll() is None:
            child.kill()
    # The kill left half a file, but only under a temporary name.
    (stale,) = dest.iterdir()
    assert stale.name.startswith(f".{NAME}.") and stale.name.endswith(".tmp.bin")

    with caplog.at_level(logging.INFO, logger="convbench.data.download"):
        path = fetch_file(pinned(url), dest, **FAST)
    assert sha256_of(path) == SHA
    assert leftovers(dest) == [NAME]
    assert f"removed {stale.name}, left by an interrupted download" in caplog.text


def test_a_temporary_still_being_written_is_kept(tmp_path: Path) -> None:
    target = tmp_path / NAME
    stale = tmp_path / f".{NAME}.dead1234.tmp.bin"  # as atomic_path names them
    other = tmp_path / ".other.bin.dead1234.tmp.bin"
    for path in (stale, other):
        path.write_bytes(b"half")
    with atomic_path(target) as live:  # a writer at work, here in this process
        assert remove_stale_temporaries(target) == [stale]
        assert live.exists() and other.exists()
        live.write_bytes(CONTENT)
    assert leftovers(tmp_path) == [".other.bin.dead1234.tmp.bin", NAME]


def test_a_mirror_archive_failing_its_pin_is_never_extracted(tmp_path: Path) -> None:
    import zipfile

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "set.zip", "w") as archive:
        archive.writestr("set/a.jpg", b"first")
        archive.writestr("../escaped.txt", b"outside the target")
    pin = SourceFile(name="set.zip", content_sha256="0" * 64, urls=())
    dest = tmp_path / "deep" / "out"
    with pytest.raises(ChecksumMismatchError, match=r"not a readable archive.*refused"):
        fetch_file(pin, dest, str(mirror))
    assert leftovers(dest) == []
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not list(tmp_path.rglob("a.jpg"))


SECRET = "s3cr3t-Value"


def error_texts(error: BaseException) -> str:
    """The error's message and those of every exception chained to it."""
    texts = []
    seen: BaseException | None = error
    while seen is not None:
        texts.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return "\n".join(texts)


def with_credentials(base: str, path: str) -> str:
    return base.replace("http://", f"http://reader:{SECRET}@") + f"{path}?token={SECRET}"


def test_credentials_in_a_mirror_url_are_used_but_never_shown(
    tmp_path: Path, serve, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, str | None]] = []

    def respond(h: BaseHTTPRequestHandler, n: int) -> None:
        seen.append((h.path, h.headers.get("Authorization")))
        if n == 1:
            h.send_error(503)
        elif n == 2:
            send_cut(h, "close-delimited")
        else:
            send_full(h)

    base = serve(respond)
    caplog.set_level(logging.INFO)  # every logger, as a stage logs
    path = fetch_file(pinned(), tmp_path / "a", mirror=with_credentials(base, "/data"), **FAST)
    assert sha256_of(path) == SHA
    basic = "Basic " + base64.b64encode(f"reader:{SECRET}".encode()).decode()
    assert seen == [(f"/data/{NAME}?token={SECRET}", basic)] * 3  # really sent, every time
    assert "attempt 2/4" in caplog.text
    assert f"mirror http://***@127.0.0.1:{base.rsplit(':', 1)[1]}/data/{NAME}?token=***" in (
        caplog.text
    )

    # Failing: unavailable, then a wrong file; neither error nor log may show the secret.
    unavailable = with_credentials(serve(lambda h, n: h.send_error(404)), "")
    with pytest.raises(SourceUnavailableError) as missing:
        fetch_file(pinned(), tmp_path / "b", mirror=unavailable, **FAST)
    wrong = with_credentials(serve(lambda h, n: send_full(h, b"wrong")), "")
    with pytest.raises(ChecksumMismatchError) as mismatched:
        fetch_file(pinned(), tmp_path / "c", mirror=wrong, **FAST)
    shown = [error_texts(missing.value), error_texts(mismatched.value), caplog.text]
    shown += [record.getMessage() for record in caplog.records]
    assert "404" in shown[0] and "token=***" in shown[0] and "***@127.0.0.1" in shown[1]
    assert not [text for text in shown if SECRET in text]
