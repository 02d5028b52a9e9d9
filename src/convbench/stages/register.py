"""DVC stage ``register``: a dataset's best model into the MLflow model registry, behind
the gate (see :mod:`convbench.tracking.model_registry`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from convbench.settings import Settings
from convbench.stages.entry import stage_command
from convbench.tracking.model_registry import Decision, decide, write_decision


def register(
    settings: Settings, dataset: str, comparison: Path, prepared_dir: Path, out: Path
) -> Decision:
    """Register ``dataset``'s best run of ``comparison`` and write the decision to ``out``."""
    decision = decide(settings, dataset, pd.read_csv(comparison), prepared_dir)
    write_decision(decision, out)
    verdict = "promoted" if decision.promoted else "kept"
    print(f"{dataset}: {decision.run or '-'}: {verdict}: {decision.reason}")
    return decision


main = stage_command(register)
