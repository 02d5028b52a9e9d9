"""Benchmark: where a stage's time goes: DVC, the interpreter's start, imports, the work.

In a checkout that has run (its stage outputs in place, e.g. after ``make run``), each
listed stage is timed three ways, alternating over rounds, medians quoted:

- ``repro``: ``dvc --wait-for-lock repro --force --single-item STAGE``, what the flow
  pays for the stage;
- ``command``: the stage's command alone, as dvc.yaml resolves it, under
  ``python -X importtime``, which also gives the time spent importing (lazy imports
  included);
- ``start``: ``python -c pass``.

DVC's own share is repro - command; the work is command - start - imports.

    CONVBENCH_MIRROR=../shared/datasets .venv/bin/python -m bench.overhead --project ../run
    # writes bench/overhead.json
"""

from __future__ import annotations

import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STAGES = [
    "download@mnist",
    "validate@mnist",
    "prepare@mnist",
    "train@mnist-mlp",
    "evaluate@mnist-mlp",
    "train@mnist-random_forest",
    "evaluate@mnist-random_forest",
    "compare",
    "register@mnist",
]
# `import time:  self [us] | cumulative | name`; a top-level import has no indentation.
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| (\S.*)$")


def stage_command(project: Path, stage: str) -> list[str]:
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        (found,) = repo.stage.collect(stage)
        return shlex.split(found.cmd)


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stderr


def import_seconds(stderr: str) -> float:
    """The top-level imports' cumulative time from ``-X importtime``'s report."""
    return sum(int(m[1]) for m in map(IMPORT_LINE.match, stderr.splitlines()) if m) / 1e6


def section(report: dict) -> list[str]:
    """The lines bench/RESULTS.md shows for this benchmark."""
    lines = [
        "## Where a stage's time goes",
        "",
        "Rerun, in a checkout where `make run` has finished: `CONVBENCH_MIRROR=../shared/"
        "datasets .venv/bin/python -m bench.overhead --project PATH` (writes "
        "`bench/overhead.json`).",
        "",
        f"{report['cpus']} cores; {report['measured']}; {report['rounds']} rounds, medians. "
        "DVC: `dvc repro --force --single-item` minus the stage's command; start: "
        "`python -c pass`; imports: `python -X importtime` (lazy imports included); work: "
        "the rest of the command.",
        "",
        "| stage | total s | DVC | start | imports | work |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in report["stages"].items():
        lines.append(
            f"| `{name}` | {row['total']:.1f} | {row['dvc']:.1f} | {row['start']:.2f} | "
            f"{row['imports']:.1f} | {row['work']:.1f} |"
        )
    return [*lines, ""]


def main(
    project: Annotated[Path, typer.Option(help="a checkout whose stages have run")],
    stage: Annotated[list[str] | None, typer.Option(help="stages to time")] = None,
    rounds: Annotated[int, typer.Option(help="rounds")] = 2,
    output: Annotated[Path, typer.Option(help="results file")] = HERE / "overhead.json",
) -> None:
    project = project.resolve()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(project / "src"),
    }
    names = stage or STAGES
    commands = {name: stage_command(project, name) for name in names}
    samples: dict[str, dict[str, list[float]]] = {
        n: {"repro": [], "command": [], "imports": [], "start": []} for n in names
    }
    for attempt in range(rounds):
        for name in names if attempt % 2 == 0 else names[::-1]:
            repro = [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--force"]
            seconds, _ = timed([*repro, "--single-item", name], project, env)
            samples[name]["repro"].append(seconds)
            command = commands[name]
            assert command[0] == "python", command
            seconds, stderr = timed(
                [sys.executable, "-X", "importtime", *command[1:]], project, env
            )
            samples[name]["command"].append(seconds)
            samples[name]["imports"].append(import_seconds(stderr))
            samples[name]["start"].append(timed([sys.executable, "-c", "pass"], project, env)[0])
            print(name, {k: round(v[-1], 2) for k, v in samples[name].items()}, flush=True)
    table = {}
    for name, times in samples.items():
        median = {k: statistics.median(v) for k, v in times.items()}
        table[name] = {
            "total": round(median["repro"], 2),
            "dvc": round(median["repro"] - median["command"], 2),
            "start": round(median["start"], 2),
            "imports": round(median["imports"], 2),
            "work": round(median["command"] - median["start"] - median["imports"], 2),
        }
    report = {
        "measured": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "rounds": rounds,
        "stages": table,
    }
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
