"""DVC stage `evaluate`: test metrics, confusion matrix and throughput of one run."""

from pathlib import Path

from convbench.config import load_settings
from convbench.entry import run_stage
from convbench.evaluation import evaluate_run


def main(
    run: str,
    prepared_dir: Path,
    model_dir: Path,
    train_dir: Path,
    out_dir: Path,
    params: Path = Path("params.yaml"),
) -> None:
    evaluate_run(load_settings(params), run, prepared_dir, model_dir, train_dir, out_dir)


if __name__ == "__main__":
    run_stage(main)
