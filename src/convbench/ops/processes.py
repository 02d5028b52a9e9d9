"""Background processes that outlive the command starting them (``make ui``'s servers).

Each starts in a session of its own, is recorded in a state file, is waited for until
its health check answers, and is stopped with its whole process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "services.json"


class ServiceError(RuntimeError):
    """A service did not start, or a command against it failed; the message says why."""


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    url: str | None = None  # what a person opens
    health: str | None = None  # answers 2xx once the service is ready
    ready: list[str] | None = None  # or: exits 0 once it is (a server that speaks no HTTP)
    stop_signal: str = "SIGTERM"


@dataclass(frozen=True)
class Running:
    name: str
    pid: int
    url: str | None
    log: str
    stop_signal: str = "SIGTERM"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def _ready(command: list[str]) -> bool:
    return subprocess.run(command, capture_output=True, check=False, timeout=30).returncode == 0


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def start(service: Service, state_dir: Path, timeout: float = 180) -> Running:
    """Start ``service`` in its own process group and wait until it is healthy."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir / f"{service.name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            service.command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **service.env},
            start_new_session=True,  # survives the caller; stopped as a group
        )
    running = Running(service.name, process.pid, service.url, str(log), service.stop_signal)
    _record(state_dir, running)
    deadline = time.monotonic() + timeout
    while not _up(service):
        if process.poll() is not None:
            raise ServiceError(
                f"{service.name} exited with {process.returncode} while starting; "
                f"{log}:\n{_tail(log)}"
            )
        if time.monotonic() > deadline:
            raise ServiceError(
                f"{service.name} not healthy after {timeout:.0f} s "
                f"({service.health or ' '.join(service.ready or [])}); "
                f"{log}:\n{_tail(log)}"
            )
        time.sleep(0.5)
    return running


def _up(service: Service) -> bool:
    if service.health and not _healthy(service.health):
        return False
    return not service.ready or _ready(service.ready)


def _record(state_dir: Path, running: Running) -> None:
    entries = [r for r in read_state(state_dir) if r.name != running.name]
    path = state_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(r) for r in [*entries, running]], indent=2))
    os.replace(tmp, path)


def read_state(state_dir: Path) -> list[Running]:
    path = state_dir / STATE_FILE
    if not path.exists():
        return []
    return [Running(**entry) for entry in json.loads(path.read_text())]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(state_dir: Path, grace: float = 20, only: str | None = None) -> list[str]:
    """Stop every recorded service (or the one named ``only``), each with its process
    group: the workers first, then the servers, then the database they use."""
    stopped = []
    for running in sorted(read_state(state_dir), key=_stop_order):
        if only is not None and running.name != only:
            continue
        if alive(running.pid) and _terminate(running, grace):
            stopped.append(running.name)
    if only is None:
        (state_dir / STATE_FILE).unlink(missing_ok=True)
    return stopped


def _terminate(running: Running, grace: float) -> bool:
    try:
        os.killpg(running.pid, signal.Signals[running.stop_signal])
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while alive(running.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
        _reap(running.pid)
    if alive(running.pid):
        os.killpg(running.pid, signal.SIGKILL)
    return True


def _stop_order(running: Running) -> int:
    return 0 if running.name.startswith("worker") else 2 if running.name == "postgres" else 1


def _reap(pid: int) -> None:
    """Collect the exit status when we are the parent (tests), so the pid goes away."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
