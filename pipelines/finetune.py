"""DVC stage `finetune`: the base's last block trained with the head (`<transfer>_finetune`)."""

from pathlib import Path

from convbench.settings import load_settings
from convbench.stages.entry import run_stage
from convbench.training.transfer import finetune, load_base_for


def main(
    transfer: str,
    prepared_dir: Path,
    weights_dir: Path,
    head_dir: Path,
    model_dir: Path,
    out_dir: Path,
    params: Path = Path("params.yaml"),
) -> None:
    settings = load_settings(params)
    base = load_base_for(settings, transfer, weights_dir)
    finetune(settings, transfer, prepared_dir, head_dir, base, model_dir, out_dir)


if __name__ == "__main__":
    run_stage(main)
