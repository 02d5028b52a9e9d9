"""DVC stage `finetune`: see convbench.stages.finetune."""

from convbench.stages import finetune
from convbench.stages.entry import run_stage

if __name__ == "__main__":
    run_stage(finetune.main)
