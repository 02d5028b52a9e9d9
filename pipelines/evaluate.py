"""DVC stage `evaluate`: test metrics, confusion matrix and throughput of one run."""

from pathlib import Path

import typer

from convbench.config import load_settings
from convbench.evaluation import evaluate_run
from convbench.logs import setup_logging


def main(run: str, prepared_dir: Path, model_dir: Path, train_dir: Path, out_dir: Path,
         params: Path = Path("params.yaml")) -> None:
    setup_logging()
    evaluate_run(load_settings(params), run, prepared_dir, model_dir, train_dir, out_dir)


if __name__ == "__main__":
    typer.run(main)
