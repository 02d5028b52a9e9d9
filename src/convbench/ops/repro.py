"""One DVC stage run as a process (``dvc repro --single-item``): the environment it
runs in, and what its output says."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

# How `dvc repro` reports a stage command's exit status.
EXITED = re.compile(r"exited with (\d+)")
# How `dvc repro` says it took a stage's outputs from its run cache instead of running it.
RESTORED = "is cached - skipping run"


def stage_environment(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a stage command runs in: this interpreter, the checkout's code."""
    return {
        **os.environ,
        # Stage commands say `python`: make it this environment's interpreter.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        # The checkout's own library, not the one the environment was installed from: a
        # runner's checkout may be at another commit than the worker's.
        "PYTHONPATH": str(root / "src"),
        **(extra or {}),
    }


def exit_status(tail: list[str]) -> int | None:
    """The stage command's exit status, as the last lines of `dvc repro` report it."""
    exits = EXITED.findall("\n".join(tail))
    return int(exits[-1]) if exits else None


def unavailable_message(tail: list[str]) -> str:
    """The stage's own error message: from its ERROR line to DVC's."""
    start = max((i for i, line in enumerate(tail) if " ERROR convbench" in line), default=0)
    lines = [line for line in tail[start:] if not line.startswith("ERROR: failed to reproduce")]
    return "\n".join(lines).split(" ERROR convbench: ", 1)[-1]
