"""Flow parameters written into params.yaml as DVC parameter overrides."""

from __future__ import annotations

from pathlib import Path

from convbench.models.variants import VARIANTS
from convbench.stages.entry import stage_settings


def write_overrides(root: Path, overrides: list[str]) -> None:
    """Write ``key=value`` overrides into params.yaml the way ``dvc exp run -S`` does, then
    check the result: a bad value fails here, naming the key, not in a stage."""
    from dvc.utils.hydra import apply_overrides as dvc_apply

    if overrides:
        dvc_apply(root / "params.yaml", overrides)
    stage_settings(root / "params.yaml", VARIANTS)
