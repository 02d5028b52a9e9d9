"""DVC stage `train`: see convbench.stages.train."""

from convbench.stages import train
from convbench.stages.entry import run_stage

if __name__ == "__main__":
    run_stage(train.main)
