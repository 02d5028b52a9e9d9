"""DVC stage `download_weights`: a pretrained base's weights, verified against their pin."""

from pathlib import Path

from convbench.settings import load_settings
from convbench.stages.data import download_weights
from convbench.stages.entry import run_stage


def main(name: str, out_dir: Path, params: Path = Path("params.yaml")) -> None:
    download_weights(load_settings(params), name, out_dir)


if __name__ == "__main__":
    run_stage(main)
