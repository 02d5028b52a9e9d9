"""Which stages a flow runs at once: independent ones, within the machine's limits.

DVC holds its repository lock only while it reads and writes its own files (``dvc.lock``,
the cache, the run cache), not while a stage's command runs, so stages whose inputs are
ready can run side by side, each as ``dvc --wait-for-lock repro --single-item``. A
stage starts once every selected stage it depends on has an outcome. Keras trainings
each use every core, so fewer of them run at once than light stages (downloads,
validation, scoring, the report).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from convbench.ops.planning import stage_kind
from convbench.settings import Runtime

# The stages that train or run a Keras network over a whole dataset.
TRAINING_STAGES = ("train", "train_head", "finetune", "extract_features")
GIB = 1024**3


@dataclass(frozen=True)
class Limits:
    stages: int  # stages at once
    trainings: int  # of them, training stages at once


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
    """``runtime.stages_at_once``: a number, or ``auto``: one stage per core, at most one
    per 4 GiB of memory (a stage holds a dataset and TensorFlow). Trainings: one per 8
    cores, as each one's kernels already use all of them."""
    cores = cores or os.cpu_count() or 1
    memory = memory if memory is not None else memory_bytes()
    if runtime.stages_at_once == "auto":
        stages = cores if memory is None else min(cores, memory // (4 * GIB))
    else:
        stages = runtime.stages_at_once
    stages = max(1, stages)
    return Limits(stages=stages, trainings=max(1, min(stages, cores // 8)))


def upstream_of(selected: list[str], graph: nx.DiGraph) -> dict[str, list[str]]:
    """For each selected stage, the selected stages it depends on (directly or not)."""
    chosen = set(selected)
    return {name: sorted(nx.descendants(graph, name) & chosen) for name in selected}


def ready(
    pending: list[str],
    upstream: Mapping[str, Collection[str]],
    outcome: Mapping[str, str],
    running: Collection[str],
    bounds: Limits,
) -> list[str]:
    """The pending stages to start now, in order: each one's upstream stages all have an
    outcome, and the limits leave room for it."""
    started: list[str] = []
    trainings = sum(stage_kind(s) in TRAINING_STAGES for s in running)
    for name in pending:
        if len(running) + len(started) >= bounds.stages:
            break
        if any(dep not in outcome for dep in upstream[name]):
            continue
        if stage_kind(name) in TRAINING_STAGES:
            if trainings >= bounds.trainings:
                continue
            trainings += 1
        started.append(name)
    return started
