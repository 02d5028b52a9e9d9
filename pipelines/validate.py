"""DVC stage `validate`: the manifest of every image (bad files quarantined), a GX suite."""

from pathlib import Path

from convbench.settings import load_settings
from convbench.stages.data import validate_dataset
from convbench.stages.entry import run_stage


def main(
    dataset: str,
    raw_dir: Path,
    out_dir: Path,
    report_dir: Path,
    params: Path = Path("params.yaml"),
) -> None:
    validate_dataset(load_settings(params), dataset, raw_dir, out_dir, report_dir)


if __name__ == "__main__":
    run_stage(main)
