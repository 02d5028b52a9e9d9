"""DVC stage `download_weights`: a pretrained base's weights, verified against their pin."""

from convbench.stages import download_weights
from convbench.stages.entry import run_stage

if __name__ == "__main__":
    run_stage(download_weights.main)
