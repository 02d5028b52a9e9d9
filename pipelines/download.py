"""DVC stage `download`: fetch a dataset's source files, verified, into a folder."""

from pathlib import Path

from convbench.settings import load_settings
from convbench.stages.data import download_dataset
from convbench.stages.entry import run_stage


def main(dataset: str, out_dir: Path, params: Path = Path("params.yaml")) -> None:
    download_dataset(load_settings(params), dataset, out_dir)


if __name__ == "__main__":
    run_stage(main)
