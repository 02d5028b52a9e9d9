"""Which stages the flow runs at once: ready ones only, within the machine's limits."""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from convbench.ops.scheduling import Limits, limits, ready, upstream_of
from convbench.settings import Runtime
from convbench.training.slots import GIB, fit_slot, memory_bytes

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
    assert limits(auto, cores=2, memory=24 * GIB) == Limits(stages=3, trainings=1)
    assert limits(auto, cores=16, memory=128 * GIB) == Limits(stages=17, trainings=2)
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
    one_slot = Limits(stages=4, trainings=1)
    started = ready(pending, upstream, outcome, [], one_slot)
    # One training fitting, one starting up to take the slot next: the third waits.
    assert len(started) == 2 and all(s.startswith("train@") for s in started)
    assert ready(pending, upstream, outcome, started, one_slot) == []
    two = Limits(stages=2, trainings=3)
    assert len(ready(pending, upstream, outcome, [], two)) == 2  # the stages' bound


def test_fits_take_turns_in_their_slots(tmp_path: Path) -> None:
    order: list[str] = []
    with fit_slot(tmp_path, 1) as slot:
        assert slot == 0
        order.append("first in")
        # Another process would wait here; a second slot lets a second fit in at once.
        with fit_slot(tmp_path, 2) as other:
            assert other == 1
            order.append("second in")
    # Freed with the first: the next one gets slot 0 at once.
    with fit_slot(tmp_path, 1, poll_seconds=0.01) as slot:
        assert slot == 0
    assert order == ["first in", "second in"]
