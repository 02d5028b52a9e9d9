"""A warm interpreter for a flow's stage commands: the libraries imported once, each
stage command forked from it.

Every stage is ``python -m pipelines.<stage>`` under ``dvc repro``, and most of a short
stage's time went to importing TensorFlow, Keras, MLflow and scikit-learn again (5-9 s
each). While a flow runs, it keeps one process that has imported them (``serve``), and
a stage command started with ``CONVBENCH_WARM_SOCKET`` set hands its arguments,
environment, working folder and standard streams to it (``forward``): the server forks,
the child runs the stage's module as ``__main__``, and the command exits with the
child's status. DVC still starts, records and times the stage as before; what the stage
computes does not change. Libraries whose state would be wrong after a fork are only
imported, never initialised (no TensorFlow or JAX context, no MLflow client, no thread
pool): the child sets those up as a fresh process does.

A command the warm interpreter cannot serve runs as usual: no socket, no ``os.fork``
(not Linux), another Keras backend than the one loaded, a server that has gone away.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import runpy
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SOCKET_VARIABLE = "CONVBENCH_WARM_SOCKET"
# What the stages import at their top, slowest first; one that is not installed is
# left out (a GPU runner without TensorFlow, say).
PRELOAD = (
    "keras",
    "mlflow",
    "mlflow.keras",
    "mlflow.sklearn",
    "great_expectations",
    "skops.io",
    "sklearn.ensemble",
    "sklearn.metrics",
    "sklearn.model_selection",
    "scipy.stats",
    "pandas",
    "matplotlib.figure",
    "PIL.Image",
)
HEADER = struct.Struct("!I")  # the request's length, before its JSON
STANDARD_STREAMS = [0, 1, 2]


def available() -> bool:
    """Forking a process that imported these libraries is sound on Linux alone."""
    return sys.platform == "linux" and hasattr(os, "fork")


# -- the stage command's side ----------------------------------------------------------


def forward(name: str) -> None:
    """From a stage's entry point (its ``__name__``): when it runs as the command, run it
    in the warm interpreter and exit with its status; return (and run here) when there is
    none to take it."""
    path = os.environ.get(SOCKET_VARIABLE)
    main = sys.modules["__main__"]
    if name != "__main__" or not path or not available() or main.__spec__ is None:
        return
    request = {
        "module": main.__spec__.name,
        "argv": sys.argv,
        "path": sys.path,
        "cwd": os.getcwd(),
        "env": {k: v for k, v in os.environ.items() if k != SOCKET_VARIABLE},
    }
    body = json.dumps(request).encode()
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
        socket.send_fds(connection, [HEADER.pack(len(body)) + body], STANDARD_STREAMS)
        reader = connection.makefile("r")
        first = json.loads(reader.readline() or "{}")
    except (OSError, ValueError):  # no server (any more): run here
        connection.close()
        return
    if "pid" not in first:  # declined, e.g. another Keras backend
        connection.close()
        return
    child = int(first["pid"])
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda signum, _frame: os.kill(child, signum))
    answer = json.loads(reader.readline() or '{"exit": 1, "lost": true}')
    if answer.get("lost"):
        print(f"convbench: the stage process {child} ended without a status", file=sys.stderr)
    sys.exit(int(answer["exit"]))


# -- the server's side ------------------------------------------------------------------


def preload(backend: str) -> None:
    """Import what the stages import (nothing initialised)."""
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in PRELOAD:
        # A library that cannot load is the stage's to report, in its own process.
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def keras_default_backend(environ: dict[str, str]) -> str:
    """The backend Keras loads when ``KERAS_BACKEND`` is unset: its config file's, or
    TensorFlow."""
    home = Path(environ.get("KERAS_HOME") or Path(environ.get("HOME", "~"), ".keras"))
    try:
        return str(json.loads((home.expanduser() / "keras.json").read_text())["backend"])
    except (OSError, ValueError, KeyError, TypeError):
        return "tensorflow"


def receive(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One request: its JSON and the command's standard streams."""
    data, fds, _flags, _address = socket.recv_fds(connection, 1 << 16, len(STANDARD_STREAMS))
    while len(data) < HEADER.size or len(data) < HEADER.size + HEADER.unpack_from(data)[0]:
        more = connection.recv(1 << 16)
        if not more:
            raise ConnectionError("the stage command went away mid-request")
        data += more
    (size,) = HEADER.unpack_from(data)
    return json.loads(data[HEADER.size : HEADER.size + size]), fds


def run_child(connection: socket.socket, request: dict[str, Any], fds: list[int]) -> int:
    """In the forked child: become the stage command and run its module."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the stage may wait on its own children
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for fd, target in zip(fds, STANDARD_STREAMS, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv, sys.path[:] = list(request["argv"]), list(request["path"])
    connection.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
    # The command killed (DVC stopped, the task cancelled): the stage goes with it.
    threading.Thread(target=_follow, args=(connection,), daemon=True).start()
    code: Any = 0
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as done:
        code = done.code
    except BaseException:  # reported as a fresh interpreter would
        traceback.print_exc()
        code = 1
    if not isinstance(code, int):
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    atexit._run_exitfuncs()  # MLflow and logging flush as they would at a normal exit
    return code


def _follow(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.recv(1)  # only returns when the command's end closes
    os.kill(os.getpid(), signal.SIGTERM)


def handle(listener: socket.socket, connection: socket.socket, backend: str) -> None:
    """One connection: decline it, or fork a child that runs it (the server goes on)."""
    try:
        request, fds = receive(connection)
    except (OSError, ValueError, ConnectionError):
        connection.close()
        return
    try:
        # A fresh process would load Keras' own default where no backend was chosen.
        wanted = request["env"].get("KERAS_BACKEND") or keras_default_backend(request["env"])
        if wanted != backend:
            with contextlib.suppress(OSError):
                connection.sendall(b'{"declined": "another Keras backend"}\n')
            return
        sys.stdout.flush(), sys.stderr.flush()
        if os.fork() == 0:  # the child never leaves this block
            listener.close()
            code = 1
            try:
                code = run_child(connection, request, fds)
            finally:
                with contextlib.suppress(BaseException):
                    sys.stdout.flush(), sys.stderr.flush()
                    connection.sendall(json.dumps({"exit": code}).encode() + b"\n")
                os._exit(code)
    finally:  # the server's copies: the child has its own
        for fd in fds:
            os.close(fd)
        connection.close()


def serve(path: Path, backend: str) -> None:
    """Import, then listen on ``path`` until the parent that started this goes away. The
    stages that start while the imports run (downloads, say) run as usual: the socket
    is not there yet."""
    parent = os.getppid()
    preload(backend)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reap themselves
    listener.settimeout(1.0)
    while os.getppid() == parent:
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            continue
        connection.settimeout(None)
        handle(listener, connection, backend)


@contextlib.contextmanager
def interpreter(
    root: Path, environment: dict[str, str], backend: str, enabled: bool = True
) -> Iterator[dict[str, str]]:
    """A warm interpreter, started in ``root`` with the stages' ``environment``, for the
    stages run inside: the variables that send their commands to it (none when it is off
    or not available here)."""
    if not (enabled and available()):
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="convbench-warm-") as folder:
        path = Path(folder) / "stages.sock"
        server = subprocess.Popen(
            [sys.executable, "-m", "convbench.ops.warm", str(path), backend],
            cwd=root,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # TensorFlow's start-up notices: the stages say them
            stderr=subprocess.DEVNULL,
        )
        try:
            yield {SOCKET_VARIABLE: str(path)}
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), sys.argv[2])
