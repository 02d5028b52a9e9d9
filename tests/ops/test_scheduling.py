"""Which stages the flow runs at once: ready ones only, within the machine's limits."""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from convbench.ops.scheduling import GIB, Limits, limits, memory_bytes, ready, upstream_of
from convbench.settings import Runtime

# A DAG like dvc.yaml's (edges point to dependencies).
GRAPH = nx.DiGraph(
    [
        ("validate@mnist", "download@mnist"),
        ("prepare@mnist", "validate@mnist"),
        ("train@mnist-cnn", "prepare@mnist"),
        ("train@mnist-mlp", "prepare@mnist"),
        ("evaluate@mnist-cnn", "train@mnist-cnn"),
        ("prepare@cats", "download@cats"),
        ("train@cats-small_cnn", "prepare@cats"),
        ("compare", "evaluate@mnist-cnn"),
        ("compare", "train@cats-small_cnn"),
    ]
)
ORDER = list(reversed(list(nx.topological_sort(GRAPH))))


def test_auto_takes_one_stage_per_core_and_memory_and_fewer_trainings() -> None:
    auto = Runtime()
    assert limits(auto, cores=2, memory=24 * GIB) == Limits(stages=2, trainings=1)
    assert limits(auto, cores=16, memory=128 * GIB) == Limits(stages=16, trainings=2)
    assert limits(auto, cores=16, memory=16 * GIB) == Limits(stages=4, trainings=2)
    assert limits(auto, cores=4, memory=2 * GIB) == Limits(stages=1, trainings=1)
    assert limits(Runtime(stages_at_once=1), cores=64, memory=512 * GIB) == Limits(1, 1)
    assert limits(Runtime(stages_at_once=3), cores=2, memory=GIB) == Limits(3, 1)


def test_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24576000 kB\nMemFree: 1 kB\n")
    assert memory_bytes(meminfo) == 24576000 * 1024
    assert memory_bytes(tmp_path / "absent") is None


def test_a_stage_starts_only_when_its_upstream_stages_have_an_outcome() -> None:
    upstream = upstream_of(ORDER, GRAPH)
    assert upstream["compare"] == sorted(set(ORDER) - {"compare"} - {"train@mnist-mlp"})
    wide = Limits(stages=8, trainings=8)
    # Both downloads at once; nothing that needs them yet.
    assert sorted(ready(ORDER, upstream, {}, [], wide)) == ["download@cats", "download@mnist"]
    outcome = {"download@mnist": "ran", "download@cats": "unavailable: no file"}
    pending = [s for s in ORDER if s not in outcome]
    started = ready(pending, upstream, outcome, [], wide)
    # prepare@cats is started too: whether it is skipped is the flow's call (it says why).
    assert sorted(started) == ["prepare@cats", "validate@mnist"]
    # A running stage is not an outcome: what depends on it waits.
    assert (
        ready(["prepare@mnist"], upstream, {"download@mnist": "ran"}, ["validate@mnist"], wide)
        == []
    )


def test_limits_hold_and_trainings_wait_for_each_other() -> None:
    upstream = upstream_of(ORDER, GRAPH)
    outcome = dict.fromkeys(
        ["download@mnist", "validate@mnist", "prepare@mnist", "download@cats", "prepare@cats"],
        "ran",
    )
    pending = [s for s in ORDER if s not in outcome]
    two = Limits(stages=2, trainings=1)
    started = ready(pending, upstream, outcome, [], two)
    assert len(started) == 1 and started[0].startswith("train@")  # one training at a time
    assert ready(pending, upstream, outcome, started, two) == []  # the other one waits
    three_trainings = Limits(stages=2, trainings=3)
    assert len(ready(pending, upstream, outcome, [], three_trainings)) == 2  # stages bound
