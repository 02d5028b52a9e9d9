"""Which stages a flow runs at once: independent ones, within the machine's limits.

DVC holds its repository lock only while it reads and writes its own files (``dvc.lock``,
the cache, the run cache), not while a stage's command runs, so stages whose inputs are
ready can run side by side, each as ``dvc --wait-for-lock repro --single-item``. A
stage starts once every selected stage it depends on has an outcome. Keras fits each
use every core, so fewer of them run at once than light stages (downloads, validation,
scoring, the report): a training stage fits in a slot (``training.slots``), and the next
one starts while the slot is taken, so its start is ready when the slot frees.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import networkx as nx

from convbench.ops.planning import stage_kind
from convbench.training.slots import Limits, limits

__all__ = ["TRAINING_STAGES", "Limits", "limits", "ready", "upstream_of"]

# The stages that train or run a Keras network over a whole dataset: each fits in a slot
# (``training.slots``), and one more per slot may start, to be ready when it frees.
TRAINING_STAGES = ("train", "train_head", "finetune", "extract_features")


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
            if trainings >= 2 * bounds.trainings:  # fitting, and ready to fit next
                continue
            trainings += 1
        started.append(name)
    return started
