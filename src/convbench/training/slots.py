"""How many trainings fit at once on this machine, and the slots they fit in.

A Keras fit uses every core, so only ``trainings`` of them run at once. A training
stage takes a slot only for its fit: its start (DVC's checks, TensorFlow's import,
loading the data, building the model) runs beside another stage's fit, which is what
the flow's scheduler counts on to hide that start. The slots are lock files in the
checkout: the operating system frees a killed stage's slot with its process.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from convbench.settings import Runtime

log = logging.getLogger(__name__)

GIB = 1024**3
# Beside ops.runlock's lock: the checkout's own folder of run state (git-ignored).
SLOTS_FOLDER = Path(".convbench") / "fit-slots"


@dataclass(frozen=True)
class Limits:
    stages: int  # stages at once
    trainings: int  # of them, fits at once


def memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The machine's memory, or None where it cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def limits(runtime: Runtime, cores: int | None = None, memory: int | None = None) -> Limits:
    """``runtime.stages_at_once``: a number, or ``auto``: one stage per core plus one (a
    training starting while another fits), at most one per 4 GiB of memory (a stage
    holds a dataset and TensorFlow). Fits: one per 8 cores, as each uses all of them."""
    cores = cores or os.cpu_count() or 1
    memory = memory if memory is not None else memory_bytes()
    if runtime.stages_at_once == "auto":
        stages = cores + 1 if memory is None else min(cores + 1, memory // (4 * GIB))
    else:
        stages = runtime.stages_at_once
    stages = max(1, stages)
    return Limits(stages=stages, trainings=max(1, min(stages, cores // 8)))


@contextlib.contextmanager
def fit_slot(project_root: Path, slots: int, poll_seconds: float = 0.5) -> Iterator[int]:
    """Hold one of the checkout's ``slots`` fit slots (waiting for one) while fitting."""
    folder = project_root / SLOTS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    waiting_since = None
    while True:
        for slot in range(slots):
            fd = os.open(folder / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                if waiting_since is not None:
                    log.info("fit slot %d free after %.1fs", slot, time.monotonic() - waiting_since)
                yield slot
            finally:
                os.close(fd)  # closing drops the lock
            return
        if waiting_since is None:
            waiting_since = time.monotonic()
            log.info("waiting for a fit slot: %d training(s) already fitting here", slots)
        time.sleep(poll_seconds)


def stage_fit_slot(project_root: Path, runtime: Runtime) -> contextlib.AbstractContextManager[int]:
    """The fit slot a training stage under ``runtime`` takes: one of ``limits``' fits."""
    return fit_slot(project_root, limits(runtime).trainings)
