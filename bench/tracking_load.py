"""Benchmark: eight trainings logging per-epoch metrics at once into the MLflow server,
its store on PostgreSQL against SQLite.

Each store gets its own MLflow server, started as ``make ui`` starts it (``DB=postgres``:
on a PostgreSQL cluster from the wheel, as compose runs it; else over ``mlflow.db``).
Eight writer processes, started together, each open a run and send EPOCHS epochs of
METRICS metrics the way the training stages do: one ``log_batch`` per epoch
(``convbench.tracking.training_run``). Afterwards every point is counted back through the
API (``get_metric_history``). Rounds alternate the stores (PostgreSQL, SQLite, ...);
the time per logged point is each writer's logging seconds over its points, the median
over writers and rounds.

    .venv/bin/python -m bench.tracking_load        # writes bench/tracking_load.json
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

HERE = Path(__file__).resolve().parent
WRITERS = 8
EPOCHS = 150
METRICS = 6  # loss, accuracy, val_loss, val_accuracy, learning rate, epoch seconds
STORES = ("postgres", "sqlite")


def writer(uri: str, experiment: str, epochs: int, metrics: int, start_at: float) -> None:
    """One training's metric traffic; prints what it sent, how long it took, its errors."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    try:
        experiment_id = client.create_experiment(experiment)
    except Exception:  # another writer made it first
        experiment_id = client.get_experiment_by_name(experiment).experiment_id
    run_id = client.create_run(experiment_id).info.run_id
    time.sleep(max(0.0, start_at - time.time()))  # all writers at once
    errors, calls = [], []
    began = time.perf_counter()
    for epoch in range(1, epochs + 1):
        stamp = int(time.time() * 1000)
        batch = [Metric(f"m{k}", epoch + k / 10, stamp, epoch) for k in range(metrics)]
        call = time.perf_counter()
        try:
            client.log_batch(run_id, metrics=batch)
        except Exception as error:  # counted, not hidden: the figure must show it
            errors.append(repr(error)[:300])
        calls.append(time.perf_counter() - call)
    seconds = time.perf_counter() - began
    client.set_terminated(run_id)
    print(
        json.dumps(
            {
                "run_id": run_id,
                "points": epochs * metrics,
                "seconds": seconds,
                "median_call_seconds": statistics.median(calls),
                "p95_call_seconds": statistics.quantiles(calls, n=20)[-1],
                "max_call_seconds": max(calls),
                "errors": errors,
            }
        )
    )


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def start_store(store: str, folder: Path) -> tuple[str, Path]:
    """An MLflow server on ``store`` in ``folder``; its URL and state folder."""
    from convbench.ops import servers
    from convbench.ops.processes import start
    from convbench.ops.stack import Stack, free_port

    stack = Stack(
        folder,
        mlflow_port=free_port(),
        state_dir=folder / ".services",
        db=store,
        postgres_port=free_port(),
    )
    if stack.postgres is not None:
        stack.postgres.up(stack.state)
    start(servers.mlflow_server(stack), stack.state)
    return stack.mlflow_url, stack.state


def one_round(uri: str, experiment: str, writers: int, epochs: int, metrics: int) -> dict:
    start_at = time.time() + 10  # after every writer imported MLflow and made its run
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.tracking_load",
                "--writer",
                uri,
                "--experiment",
                experiment,
                "--epochs",
                str(epochs),
                "--metrics",
                str(metrics),
                "--start-at",
                str(start_at),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(writers)
    ]
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in processes]
    round_seconds = max(r["seconds"] for r in results)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = sum(
        len(client.get_metric_history(r["run_id"], f"m{k}"))
        for r in results
        for k in range(metrics)
    )
    return {
        "written": sum(r["points"] for r in results),
        "found": found,
        "errors": [e for r in results for e in r["errors"]],
        "seconds_per_point": [r["seconds"] / r["points"] for r in results],
        "median_call_seconds": [r["median_call_seconds"] for r in results],
        "p95_call_seconds": [r["p95_call_seconds"] for r in results],
        "max_call_seconds": max(r["max_call_seconds"] for r in results),
        "round_seconds": round_seconds,
    }


def main(
    writer_uri: Annotated[str | None, typer.Option("--writer", hidden=True)] = None,
    experiment: Annotated[str, typer.Option(hidden=True)] = "load",
    start_at: Annotated[float, typer.Option(hidden=True)] = 0.0,
    writers: int = WRITERS,
    epochs: int = EPOCHS,
    metrics: int = METRICS,
    rounds: Annotated[int, typer.Option(help="rounds per store, alternating")] = 2,
) -> None:
    if writer_uri:
        writer(writer_uri, experiment, epochs, metrics, start_at)
        return
    from convbench.ops.processes import stop

    figures: dict[str, Any] = {store: [] for store in STORES}
    with tempfile.TemporaryDirectory() as tmp:
        servers = {store: start_store(store, Path(tmp) / store) for store in STORES}
        try:
            for index in range(rounds):
                for store in STORES:
                    uri = servers[store][0]
                    result = one_round(uri, f"load-{index}", writers, epochs, metrics)
                    figures[store].append(result)
                    print(store, index, {k: v for k, v in result.items() if k != "errors"})
        finally:
            for _, state in servers.values():
                stop(state)
    summary = {
        store: {
            "written": sum(r["written"] for r in results),
            "found": sum(r["found"] for r in results),
            "errors": sum(len(r["errors"]) for r in results),
            "first_errors": [e for r in results for e in r["errors"]][:3],
            "ms_per_point": 1000
            * statistics.median(s for r in results for s in r["seconds_per_point"]),
            "ms_per_call": 1000
            * statistics.median(s for r in results for s in r["median_call_seconds"]),
            "p95_ms_per_call": 1000
            * statistics.median(s for r in results for s in r["p95_call_seconds"]),
            "max_ms_per_call": 1000 * max(r["max_call_seconds"] for r in results),
            "round_seconds": [round(r["round_seconds"], 1) for r in results],
        }
        for store, results in figures.items()
    }
    output = {
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "date": str(date.today())},
        "writers": writers,
        "epochs": epochs,
        "metrics": metrics,
        "rounds": rounds,
        "stores": summary,
        "ratio_postgres_over_sqlite": summary["postgres"]["ms_per_point"]
        / summary["sqlite"]["ms_per_point"],
    }
    (HERE / "tracking_load.json").write_text(json.dumps(output, indent=2))
    print(json.dumps(output, indent=2))


def section(results: dict[str, Any]) -> list[str]:
    """The RESULTS.md section for bench/tracking_load.json."""
    rows = []
    for store in STORES:
        s = results["stores"][store]
        rows.append(
            f"| {store} | {s['written']:,} | {s['found']:,} | {s['errors']} | "
            f"{s['ms_per_point']:.2f} | {s['ms_per_call']:.1f} | {s['p95_ms_per_call']:.0f} | "
            f"{s['max_ms_per_call']:.0f} | "
            f"{', '.join(str(x) for x in s['round_seconds'])} |"
        )
    return [
        "",
        "## The tracking store under load: PostgreSQL against SQLite",
        "",
        "Rerun: `.venv/bin/python -m bench.tracking_load` (writes `bench/tracking_load.json`).",
        "",
        f"{results['writers']} processes at once, each one run of {results['epochs']} epochs "
        f"× {results['metrics']} metrics sent as the training stages send them (one "
        f"`log_batch` per epoch), {results['rounds']} rounds per store, alternating; every "
        f"point counted back through the API afterwards. {results['machine']['cpu']}, "
        f"{results['machine']['cores']} cores, {results['machine']['date']}. Each server as "
        "`make ui` runs it: on SQLite one worker process (SQLite has one writer at a time), "
        "on PostgreSQL MLflow's default worker processes, as in docker/compose.yaml.",
        "",
        "ms per point: a writer's logging seconds over its points (median over writers and "
        "rounds); per call: one epoch's `log_batch`.",
        "",
        "| store | points written | points found | errors | ms per point | ms per call "
        "(median) | p95 | max | seconds per round |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        *rows,
        "",
        f"Time per logged point, PostgreSQL over SQLite: "
        f"**{results['ratio_postgres_over_sqlite']:.2f}**.",
        "",
    ]


if __name__ == "__main__":
    typer.run(main)
