"""DVC stage `prepare`: train/validation/test roles, profile subsets, arrays or shards."""

from pathlib import Path

from convbench.settings import load_settings
from convbench.stages.data import prepare_dataset
from convbench.stages.entry import run_stage


def main(
    dataset: str,
    raw_dir: Path,
    validated_dir: Path,
    validation_summary: Path,
    out_dir: Path,
    params: Path = Path("params.yaml"),
) -> None:
    prepare_dataset(
        load_settings(params), dataset, raw_dir, validated_dir, validation_summary, out_dir
    )


if __name__ == "__main__":
    run_stage(main)
