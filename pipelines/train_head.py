"""DVC stage `train_head`: the classifier on stored features (run `<transfer>_features`)."""

from pathlib import Path

from convbench.settings import load_settings
from convbench.stages.entry import run_stage
from convbench.training.transfer import train_head


def main(
    transfer: str,
    features_dir: Path,
    model_dir: Path,
    out_dir: Path,
    params: Path = Path("params.yaml"),
) -> None:
    train_head(load_settings(params), transfer, features_dir, model_dir, out_dir)


if __name__ == "__main__":
    run_stage(main)
