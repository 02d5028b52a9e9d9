"""DVC stages `evaluate`, `evaluate_head`, `evaluate_finetune`: one run on the test split."""

from pathlib import Path

from convbench.evaluation.scoring import evaluate_run
from convbench.settings import load_settings
from convbench.stages.entry import run_stage


def main(
    run: str,
    inputs_dir: Path,
    model_dir: Path,
    train_dir: Path,
    out_dir: Path,
    params: Path = Path("params.yaml"),
) -> None:
    evaluate_run(load_settings(params), run, inputs_dir, model_dir, train_dir, out_dir)


if __name__ == "__main__":
    run_stage(main)
