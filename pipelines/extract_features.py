"""DVC stage `extract_features`: the frozen pretrained base, run once over every split."""

from pathlib import Path

from convbench.settings import load_settings
from convbench.stages.entry import run_stage
from convbench.training.transfer import extract_features, load_base_for


def main(
    transfer: str,
    prepared_dir: Path,
    weights_dir: Path,
    out_dir: Path,
    params: Path = Path("params.yaml"),
) -> None:
    settings = load_settings(params)
    base = load_base_for(settings, transfer, weights_dir)
    extract_features(settings, transfer, prepared_dir, base, out_dir)


if __name__ == "__main__":
    run_stage(main)
