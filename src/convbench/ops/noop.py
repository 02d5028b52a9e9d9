"""A run with nothing changed: said in seconds, with no Prefect server and no stage.

``make run`` asks this before it starts Prefect. Nothing to do means every selected stage
is up to date in DVC's eyes, apart from downloads known to be unavailable here (and what
they hold back), which are not tried again while nothing that decides them changed.
"""

from __future__ import annotations

from pathlib import Path

from convbench.ops import planning, unavailable
from convbench.settings import load_settings


def nothing_to_do(root: Path, datasets: list[str] | None, variants: list[str] | None) -> str | None:
    """What a run with nothing changed says, or None when there is work to do."""
    order, graph = planning.stage_order(root)
    settings = load_settings(root / "params.yaml")
    selected = planning.select_stages(settings, order, datasets or None, variants or None)
    changed = planning.changed_stages(root, selected)
    known = {}
    for stage in planning.of_kinds(sorted(changed), planning.DOWNLOAD_STAGES):
        # The settings loaded above, with this process's environment: what the stage sees.
        why = unavailable.known_unavailable(root, stage, unavailable.input_state(settings, stage))
        if why is not None:
            known[stage] = why
    dependents = planning.download_dependents(selected, graph)
    if planning.left_to_run(changed, set(known), dependents):
        return None
    lines = [f"Nothing changed: the {len(selected)} selected stages are up to date."]
    if known:
        lines.append(f"Not run here ({unavailable.NOT_RETRIED}; --retry-unavailable tries):")
        for stage, why in known.items():
            held = len(dependents.get(stage, ()))
            lines.append(f"- {stage}, holding back {held} stages: {why.splitlines()[0]}")
    report = root / "reports" / "compare" / "comparison.md"
    if report.exists():
        lines.append(f"The comparison: {report.relative_to(root)}")
    return "\n".join(lines)
