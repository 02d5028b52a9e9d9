"""DVC stage `train_head`: see convbench.stages.train_head."""

from convbench.stages import train_head
from convbench.stages.entry import run_stage

if __name__ == "__main__":
    run_stage(train_head.main)
