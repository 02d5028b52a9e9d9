"""DVC stage `extract_features`: see convbench.stages.extract_features."""

from convbench.stages import extract_features
from convbench.stages.entry import run_stage

if __name__ == "__main__":
    run_stage(extract_features.main)
