"""DVC stage `download`: fetch a dataset's source files, verified, into a folder."""

from pathlib import Path

from convbench.config import load_settings
from convbench.entry import run_stage
from convbench.stages import download_dataset


def main(dataset: str, out_dir: Path, params: Path = Path("params.yaml")) -> None:
    download_dataset(load_settings(params), dataset, out_dir)


if __name__ == "__main__":
    run_stage(main)
