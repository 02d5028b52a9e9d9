"""DVC stage `train`: one run (a variant on a dataset), tracked in MLflow."""

from pathlib import Path

from convbench.settings import load_settings
from convbench.stages.entry import run_stage
from convbench.training.fit import train_run


def main(
    run: str, prepared_dir: Path, model_dir: Path, out_dir: Path, params: Path = Path("params.yaml")
) -> None:
    train_run(load_settings(params), run, prepared_dir, model_dir, out_dir)


if __name__ == "__main__":
    run_stage(main)
