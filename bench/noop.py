"""Benchmark: `make run` with nothing changed, against the whole flow that checks every
stage in Prefect and tries the unavailable downloads again (`make run RETRY=1`).

Run in a checkout where `make run` has already finished (everything up to date):
    CONVBENCH_MIRROR=../shared/datasets .venv/bin/python -m bench.noop [--runs 3]
The two commands alternate (A B A B ...) so a drifting machine affects both alike; the
medians and the median of the per-pair ratios go to bench/noop.json, and `make bench`
adds them to bench/RESULTS.md.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from convbench.training.devices import describe_device

COMMANDS = {"noop": ["make", "run"], "full_flow": ["make", "run", "RETRY=1"]}
OUT = Path(__file__).with_name("noop.json")


def _seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def measure(runs: int) -> dict:
    _seconds(COMMANDS["noop"])  # warm-up: records the unavailable downloads if needed
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, command in COMMANDS.items():
            times[name].append(_seconds(command))
    ratios = [a / b for a, b in zip(times["noop"], times["full_flow"], strict=True)]
    return {
        "seconds": times,
        "median": {name: statistics.median(values) for name, values in times.items()},
        "ratio_median": statistics.median(ratios),
        "machine": describe_device()["device_name"],
        "date": date.today().isoformat(),
    }


def section(noop: dict) -> list[str]:
    """The lines bench/RESULTS.md shows for this benchmark."""
    median = noop["median"]
    return [
        "## `make run` with nothing changed",
        "",
        "Rerun, in a checkout where `make run` has finished: `CONVBENCH_MIRROR=../shared/datasets "
        ".venv/bin/python -m bench.noop` (writes `bench/noop.json`).",
        "",
        f"Machine: {noop['machine']}; {noop['date']}; {len(noop['seconds']['noop'])} "
        "alternating pairs, medians.",
        "",
        "| seconds | `make run` (nothing changed) | `make run RETRY=1` (every stage checked "
        "in Prefect, unavailable downloads tried) | ratio | target |",
        "|---|---:|---:|---:|---|",
        f"| whole command | {median['noop']:.1f} | {median['full_flow']:.1f} | "
        f"**{noop['ratio_median']:.2f}** | no-op ≤ 10 s "
        f"({'met' if median['noop'] <= 10 else 'NOT met'}) |",
        "",
    ]


def main(runs: Annotated[int, typer.Option(help="alternating pairs")] = 3) -> None:
    noop = measure(runs)
    OUT.write_text(json.dumps(noop, indent=2) + "\n")
    print("\n".join(section(noop)))


if __name__ == "__main__":
    typer.run(main)
