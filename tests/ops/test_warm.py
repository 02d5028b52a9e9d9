"""The warm interpreter: stage commands forked from one process that imported the
libraries, with their own arguments, folder, environment, streams and exit status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from convbench.ops import warm
from convbench.ops.repro import stage_environment
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(not warm.available(), reason="forking needs Linux")

# A stage entry point as pipelines/<stage>.py has it: forward first, then the work.
STAGE = """
import os, sys, time
from convbench.ops.warm import forward
forward(__name__)
warm = "tensorflow" in sys.modules  # this module imports no TensorFlow: only a warm one has it
print(f"pid={os.getpid()} warm={warm} cwd={os.getcwd()} args={sys.argv[1:]}", flush=True)
print(f"X={os.environ.get('X')} socket={os.environ.get('CONVBENCH_WARM_SOCKET')}", flush=True)
if sys.argv[1] == "sleep":
    time.sleep(60)
if sys.argv[1] == "raise":
    raise ValueError("the stage's own error")
sys.exit(int(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def socket_env() -> Iterator[dict[str, str]]:
    """A warm interpreter (TensorFlow loaded), once it listens."""
    with warm.interpreter(ROOT, stage_environment(ROOT), "tensorflow") as env:
        path = Path(env[warm.SOCKET_VARIABLE])
        deadline = time.monotonic() + 120
        while not path.exists():
            assert time.monotonic() < deadline, "the warm interpreter never listened"
            time.sleep(0.2)
        yield env
    assert not path.exists()  # its folder goes with it


def _module(tmp_path: Path, module: str, source: str) -> dict[str, str]:
    """``module`` (``package.name``) written under tmp_path: the environment that finds it."""
    package, name = module.split(".")
    (tmp_path / package).mkdir(exist_ok=True)
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / f"{name}.py").write_text(source)
    return {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT / 'src'}"}


def _stage(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stagepkg.echo", *args],
        cwd=tmp_path,
        env={**_module(tmp_path, "stagepkg.echo", STAGE), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_forwarded_stage_runs_warm_as_its_own_command(
    socket_env: dict[str, str], tmp_path: Path
) -> None:
    done = _stage(tmp_path, {**socket_env, "X": "from the command"}, "3", "--flag")
    assert done.returncode == 3, done.stderr
    assert "warm=True" in done.stdout
    assert f"cwd={tmp_path} args=['3', '--flag']" in done.stdout
    assert "X=from the command socket=None" in done.stdout  # no forwarding from the child

    failed = _stage(tmp_path, socket_env, "raise")
    assert failed.returncode == 1
    assert "ValueError: the stage's own error" in failed.stderr


def test_what_it_cannot_serve_runs_as_usual(socket_env: dict[str, str], tmp_path: Path) -> None:
    other_backend = _stage(tmp_path, {**socket_env, "KERAS_BACKEND": "jax"}, "4")
    assert other_backend.returncode == 4 and "warm=False" in other_backend.stdout

    gone = {warm.SOCKET_VARIABLE: str(tmp_path / "no-such.sock")}
    alone = _stage(tmp_path, gone, "5")
    assert alone.returncode == 5 and "warm=False" in alone.stdout


def test_a_killed_command_takes_its_stage_with_it(
    socket_env: dict[str, str], tmp_path: Path
) -> None:
    for how in (signal.SIGTERM, signal.SIGKILL):
        command = subprocess.Popen(
            [sys.executable, "-m", "stagepkg.echo", "sleep"],
            cwd=tmp_path,
            env={**_module(tmp_path, "stagepkg.echo", STAGE), **socket_env},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert command.stdout is not None
        line = command.stdout.readline()
        assert "warm=True" in line
        child = int(line.split()[0].removeprefix("pid="))
        assert child != command.pid
        command.send_signal(how)
        command.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _alive(child):
            assert time.monotonic() < deadline, f"the stage outlived its command ({how.name})"
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# A seeded Keras fit, as a training stage runs one: its weights, to the last bit.
FIT = """
import hashlib, sys
from convbench.ops.warm import forward
forward(__name__)
warm = "mlflow" in sys.modules  # this script imports no MLflow: only a warm one has it
import keras, numpy as np
keras.utils.set_random_seed(7)
x = np.random.default_rng(0).normal(size=(256, 12)).astype("float32")
y = (x.sum(axis=1) > 0).astype("int64")
model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(2, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy")
model.fit(x, y, batch_size=32, epochs=2, verbose=0)
digest = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()
print(f"warm={warm} {digest}")
"""


def test_a_seeded_fit_gives_the_same_weights_warm_or_fresh(
    socket_env: dict[str, str], tmp_path: Path
) -> None:
    base = {**_module(tmp_path, "fitpkg.fit", FIT), "KERAS_BACKEND": "tensorflow"}
    digests = {}
    for name, env in (("warm", {**base, **socket_env}), ("fresh", base)):
        done = subprocess.run(
            [sys.executable, "-m", "fitpkg.fit"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert f"warm={name == 'warm'}" in done.stdout
        digests[name] = done.stdout.split()[-1]
    assert digests["warm"] == digests["fresh"]
