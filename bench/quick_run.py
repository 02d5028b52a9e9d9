"""Benchmark: the whole quick-profile ``make run`` against the training compute inside it.

A fresh clone of this checkout, its environment set up first (not timed), then
``make run`` timed from start to end; the training compute is the sum of the runs'
own ``training_seconds`` (their ``fit``, or the forest's), read from each run's
``metrics.json``. The ratio says what the pipeline around the training costs.

    CONVBENCH_MIRROR=../shared/datasets .venv/bin/python -m bench.quick_run   # quick_run.json
    # the other settings, kept beside: --stages-at-once 1, --no-warm
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


def run_metrics(clone: Path) -> dict[Path, str]:
    """The runs' metrics files and their text (the clone holds the committed ones)."""
    return {p: p.read_text() for p in (clone / "results" / "runs").glob("*/*/metrics.json")}


def training_seconds(clone: Path, before: dict[Path, str]) -> dict[str, float]:
    """Each run's training time, from the metrics its train stage wrote in this run (not
    the committed ones a stage that did not run leaves as they were)."""
    found = {}
    for metrics, text in sorted(run_metrics(clone).items()):
        if before.get(metrics) == text:
            continue
        summary = json.loads(text)
        if "training_seconds" in summary:
            found[f"{metrics.parent.parent.name}/{metrics.parent.name}"] = summary[
                "training_seconds"
            ]
    return found


def setting(row: dict) -> tuple[str, bool]:
    """What a row measured: ``runtime.stages_at_once`` and ``runtime.warm_stages``."""
    return str(row.get("stages_at_once", "auto")), bool(row.get("warm", False))


def section(report: dict) -> list[str]:
    """The lines bench/RESULTS.md shows for this benchmark."""
    lines = [
        f"## The whole `make run` ({report['profile']} profile) against its training",
        "",
        "Rerun: `CONVBENCH_MIRROR=../shared/datasets .venv/bin/python -m bench.quick_run "
        "[--stages-at-once 1] [--no-warm]` (a fresh clone; writes `bench/quick_run.json`).",
        "",
        f"{report['cpus']} cores; {report['measured']}. Training compute: the runs' own "
        "`training_seconds` summed. Beside other stages a training shares the cores, so "
        "its time includes that sharing.",
        "",
        "| `runtime.stages_at_once` | `runtime.warm_stages` | whole `make run` s | "
        "training compute s | ratio | target |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in [report, *report.get("compared", [])]:
        ratio = row["ratio"]
        lines.append(
            f"| {row.get('stages_at_once', 'auto')} | {str(row.get('warm', False)).lower()} | "
            f"{row['whole_seconds']:.0f} | "
            f"{row['training_seconds']:.0f} | **{ratio}** | "
            f"≤ 1.3 ({'met' if ratio <= 1.3 else 'NOT met'}) |"
        )
    rows = {setting(r): r for r in [report, *report.get("compared", [])]}
    for warm in (True, False):
        auto, one = rows.get(("auto", warm)), rows.get(("1", warm))
        if auto and one:  # side by side against training that shared nothing
            whole, alone = auto["whole_seconds"], one["training_seconds"]
            lines += [
                "",
                f"Warm stages {'on' if warm else 'off'}, side by side against the training "
                f"compute of the one-at-a-time run (no sharing): {whole:.0f} / {alone:.0f} = "
                f"**{whole / alone:.2f}**; the whole run took "
                f"{whole / one['whole_seconds']:.2f}× as long as one stage at a time.",
            ]
    return [*lines, ""]


def main(
    profile: Annotated[str, typer.Option(help="the profile make run runs")] = "quick",
    stages_at_once: Annotated[
        str, typer.Option(help="runtime.stages_at_once in the clone: auto or a number")
    ] = "auto",
    warm: Annotated[bool, typer.Option(help="runtime.warm_stages in the clone")] = True,
    keep: Annotated[Path | None, typer.Option(help="clone here and keep it")] = None,
    output: Annotated[Path, typer.Option(help="results file")] = HERE / "quick_run.json",
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clone = (keep or Path(tmp) / "convbench").resolve()
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        subprocess.run(["make", "env"], cwd=clone, check=True, capture_output=True)
        from dvc.utils.hydra import apply_overrides  # as `dvc exp run -S` writes them

        overrides = [f"runtime.stages_at_once={stages_at_once}", f"runtime.warm_stages={warm}"]
        apply_overrides(clone / "params.yaml", overrides)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
        mirror = env.get("CONVBENCH_MIRROR", "")
        if mirror and "://" not in mirror:  # a folder named from here, not from the clone
            env["CONVBENCH_MIRROR"] = str(Path(mirror).resolve())
        before = run_metrics(clone)
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
        runs = training_seconds(clone, before)
        if not runs:
            raise SystemExit(
                "make run trained nothing (see bench/quick_run.log): is CONVBENCH_MIRROR "
                "set to the datasets' folder?"
            )
    training = sum(runs.values())
    report: dict[str, Any] = {
        "measured": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "profile": profile,
        "stages_at_once": stages_at_once,
        "warm": warm,
        "whole_seconds": round(whole, 1),
        "training_seconds": round(training, 1),
        "ratio": round(whole / training, 2),
        "runs": {k: round(v, 1) for k, v in runs.items()},
    }
    if output.exists():  # the other setting's figures, shown beside these
        earlier = json.loads(output.read_text())
        others = [earlier, *earlier.pop("compared", [])]
        report["compared"] = [r for r in others if setting(r) != setting(report)]
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
