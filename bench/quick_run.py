"""Benchmark: the whole quick-profile ``make run`` against the training compute inside it.

A fresh clone of this checkout, its environment set up first (not timed), then
``make run`` timed from start to end; the training compute is the sum of the runs'
own ``training_seconds`` (their ``fit``, or the forest's), read from each run's
``metrics.json``. The ratio says what the pipeline around the training costs.

    CONVBENCH_MIRROR=../shared/datasets .venv/bin/python -m bench.quick_run   # quick_run.json
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def training_seconds(clone: Path) -> dict[str, float]:
    """Each run's training time, from the metrics its train stage wrote."""
    found = {}
    for metrics in sorted((clone / "results" / "runs").glob("*/*/metrics.json")):
        summary = json.loads(metrics.read_text())
        if "training_seconds" in summary:
            found[f"{metrics.parent.parent.name}/{metrics.parent.name}"] = summary[
                "training_seconds"
            ]
    return found


def section(report: dict) -> list[str]:
    """The lines bench/RESULTS.md shows for this benchmark."""
    lines = [
        f"## The whole `make run` ({report['profile']} profile) against its training",
        "",
        "Rerun: `CONVBENCH_MIRROR=../shared/datasets .venv/bin/python -m bench.quick_run "
        "[--stages-at-once 1]` (a fresh clone; writes `bench/quick_run.json`).",
        "",
        f"{report['cpus']} cores; {report['measured']}. Training compute: the runs' own "
        "`training_seconds` summed. Beside other stages a training shares the cores, so "
        "its time includes that sharing.",
        "",
        "| `runtime.stages_at_once` | whole `make run` s | training compute s | ratio | target |",
        "|---|---:|---:|---:|---|",
    ]
    for row in [report, *report.get("compared", [])]:
        ratio = row["ratio"]
        lines.append(
            f"| {row.get('stages_at_once', 'auto')} | {row['whole_seconds']:.0f} | "
            f"{row['training_seconds']:.0f} | **{ratio}** | "
            f"≤ 1.3 ({'met' if ratio <= 1.3 else 'NOT met'}) |"
        )
    rows = {str(r.get("stages_at_once", "auto")): r for r in [report, *report.get("compared", [])]}
    if "auto" in rows and "1" in rows:  # side by side against training that shared nothing
        whole, alone = rows["auto"]["whole_seconds"], rows["1"]["training_seconds"]
        lines += [
            "",
            f"Side by side against the training compute of the one-at-a-time run (no "
            f"sharing): {whole:.0f} / {alone:.0f} = **{whole / alone:.2f}**; the whole run "
            f"took {whole / rows['1']['whole_seconds']:.2f}× as long as one stage at a time.",
        ]
    return [*lines, ""]


def main(
    profile: Annotated[str, typer.Option(help="the profile make run runs")] = "quick",
    stages_at_once: Annotated[
        str, typer.Option(help="runtime.stages_at_once in the clone: auto or a number")
    ] = "auto",
    keep: Annotated[Path | None, typer.Option(help="clone here and keep it")] = None,
    output: Annotated[Path, typer.Option(help="results file")] = HERE / "quick_run.json",
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clone = (keep or Path(tmp) / "convbench").resolve()
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        subprocess.run(["make", "env"], cwd=clone, check=True, capture_output=True)
        if stages_at_once != "auto":  # as `dvc exp run -S` would write it
            from dvc.utils.hydra import apply_overrides

            apply_overrides(clone / "params.yaml", [f"runtime.stages_at_once={stages_at_once}"])
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
        env["PREFECT_HOME"] = str(clone / ".prefect")
        started = time.perf_counter()
        done = subprocess.run(
            ["make", "run", f"PROFILE={profile}"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
        )
        whole = time.perf_counter() - started
        (HERE / "quick_run.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise SystemExit(f"make run failed ({done.returncode}): see bench/quick_run.log")
        runs = training_seconds(clone)
    training = sum(runs.values())
    report: dict[str, Any] = {
        "measured": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "profile": profile,
        "stages_at_once": stages_at_once,
        "whole_seconds": round(whole, 1),
        "training_seconds": round(training, 1),
        "ratio": round(whole / training, 2),
        "runs": {k: round(v, 1) for k, v in runs.items()},
    }
    if output.exists():  # the other setting's figures, shown beside these
        earlier = json.loads(output.read_text())
        others = [earlier, *earlier.pop("compared", [])]
        report["compared"] = [r for r in others if r.get("stages_at_once") != stages_at_once]
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
