"""DVC stage `compare`: every run in one table, charts and an MLflow comparison run."""

from pathlib import Path

from convbench.config import load_settings
from convbench.entry import run_stage
from convbench.reporting import compare


def main(runs_dir: Path, out_dir: Path, params: Path = Path("params.yaml")) -> None:
    compare(load_settings(params), runs_dir, out_dir)
    print((out_dir / "comparison.md").read_text())


if __name__ == "__main__":
    run_stage(main)
