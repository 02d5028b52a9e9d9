"""One experiment run per checkout: a lock file, and a note of who holds it.

Two flows in one checkout would interleave their ``dvc repro`` stages and params.yaml
overrides and leave outputs of mixed settings. ``make run`` takes
``<root>/.convbench/run.lock`` before Prefect starts: a second run stops at once with a
message naming the holder, or (``--wait``) waits for it. The lock is the operating
system's (``flock``), so a run that crashes or is killed frees it: no stale locks.

``make repro`` runs plain ``dvc repro`` under the same lock:
    python -m convbench.ops.runlock [--wait] -- dvc repro
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from filelock import FileLock, Timeout

from convbench.core.atomic import atomic_path
from convbench.ops.processes import alive
from convbench.settings import SettingsError, load_params

log = logging.getLogger(__name__)

LOCK_FOLDER = ".convbench"
LOCK_NAME = "run.lock"
# sysexits' EX_TEMPFAIL: busy now, try again later.
EXIT_BUSY = 75
WAIT_REPORT_S = 600.0  # how often a waiting run says again whom it waits for


class RunLockBusyError(RuntimeError):
    """Another run holds this checkout's lock; the message names it and what to do."""


@dataclass(frozen=True)
class Holder:
    """Who holds the lock, as the next run is told."""

    pid: int
    host: str
    started: str  # ISO 8601, UTC
    profile: str
    command: str

    def describe(self) -> str:
        return (
            f"pid {self.pid} on {self.host}, since {self.started}, profile {self.profile}: "
            f"{self.command}"
        )


# The locks this process holds: `main` takes the lock, then the flow it starts finds it here.
_held: dict[Path, Holder] = {}


def lock_path(root: Path) -> Path:
    return root.resolve() / LOCK_FOLDER / LOCK_NAME


def holder_path(lock: Path) -> Path:
    # A file of its own: the lock file is opened by every contender, never written.
    return lock.with_name(f"{lock.name}.json")


def this_process(profile: str, command: str | None = None) -> Holder:
    return Holder(
        pid=os.getpid(),
        host=socket.gethostname(),
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        profile=profile,
        command=command or shlex.join([Path(sys.executable).name, *sys.argv]),
    )


def read_holder(lock: Path) -> Holder | None:
    """The holder's note; None if absent, unreadable, or left by a process that is gone."""
    try:
        holder = Holder(**json.loads(holder_path(lock).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if holder.host == socket.gethostname() and not alive(holder.pid):
        return None  # the new holder has not written its note yet
    return holder


def busy_message(lock: Path, holder: Holder | None) -> str:
    who = holder.describe() if holder else "a process that has not said who it is yet"
    return (
        f"another convbench run is using this checkout (lock {lock}):\n"
        f"  {who}\n"
        "Let it finish or stop it, or queue behind it: `make run WAIT=1` "
        "(python -m flows.experiment --wait)."
    )


def _acquire(
    lock: FileLock, path: Path, wait: bool, logger: logging.Logger | logging.LoggerAdapter[Any]
) -> None:
    try:
        lock.acquire(blocking=False)
        return
    except Timeout:
        if not wait:
            raise RunLockBusyError(busy_message(path, read_holder(path))) from None
    while True:
        holder = read_holder(path)
        logger.warning("waiting for %s, held by %s", path, holder.describe() if holder else "?")
        try:
            lock.acquire(timeout=WAIT_REPORT_S)
            return
        except Timeout:
            continue


@contextlib.contextmanager
def hold(
    root: Path,
    profile: str,
    *,
    wait: bool = False,
    command: str | None = None,
    logger: logging.Logger | logging.LoggerAdapter[Any] = log,
) -> Iterator[Holder]:
    """Hold ``root``'s run lock for the block; busy: RunLockBusyError, or wait with ``wait``.

    Re-entrant within a process, so the flow can take the lock whether or not its
    command line already did.
    """
    path = lock_path(root)
    if path in _held:
        yield _held[path]
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, thread_local=False)
    started = time.monotonic()
    _acquire(lock, path, wait, logger)
    if time.monotonic() - started > 1:
        logger.info("%s is free now: starting", path)
    holder = this_process(profile, command)
    try:
        with atomic_path(holder_path(path)) as tmp:
            tmp.write_text(json.dumps(asdict(holder), indent=2) + "\n")
        _held[path] = holder
        yield holder
    finally:
        _held.pop(path, None)
        holder_path(path).unlink(missing_ok=True)  # before the release: never the next one's
        lock.release()


@contextlib.contextmanager
def held_or_exit(
    root: Path, profile: str, *, wait: bool, command: str | None = None
) -> Iterator[None]:
    """``hold`` for a command line: a busy checkout prints whose it is and exits 75."""
    try:
        with hold(root, profile, wait=wait, command=command):
            yield
    except RunLockBusyError as busy:
        typer.echo(f"error: {busy}", err=True)
        raise typer.Exit(EXIT_BUSY) from None


def run_locked(root: Path, command: list[str], *, wait: bool = False) -> int:
    """``command`` (``dvc repro``, say) run while holding ``root``'s run lock; its exit status.

    Busy: RunLockBusyError, or with ``wait`` wait for the holder first.
    """
    with hold(root, _profile(root), wait=wait, command=shlex.join(command)):
        process = subprocess.Popen(command, cwd=root)
        # A stop asked of this process is passed on: no command outlives the lock guarding it.
        before = signal.signal(signal.SIGTERM, lambda signum, _: process.send_signal(signum))
        try:
            status = process.wait()
        except KeyboardInterrupt:  # Ctrl-C reached the command too: let it finish stopping
            status = process.wait()
        finally:
            signal.signal(signal.SIGTERM, before)
    return 128 - status if status < 0 else status  # killed by signal N: 128 + N, as shells say


def _profile(root: Path) -> str:
    """The profile params.yaml names, for the holder's note (the command reports bad params)."""
    try:
        return load_params(root / "params.yaml").profile
    except SettingsError:
        return "unknown"


app = typer.Typer(add_completion=False, context_settings={"allow_interspersed_args": False})


@app.command()
def main(
    command: Annotated[list[str], typer.Argument(help="the command to run, after --")],
    project_dir: Annotated[Path, typer.Option(help="the convbench checkout")] = Path("."),
    wait: Annotated[
        bool, typer.Option(help="if another run holds this checkout, wait for it (else stop)")
    ] = False,
) -> None:
    """Run COMMAND holding the checkout's run lock, as `make run` does (`make repro`)."""
    with held_or_exit(project_dir, _profile(project_dir), wait=wait, command=shlex.join(command)):
        status = run_locked(project_dir, command, wait=wait)
    raise typer.Exit(status)


if __name__ == "__main__":
    app()
