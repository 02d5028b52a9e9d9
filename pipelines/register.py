"""DVC stage `register`: see convbench.stages.register."""

from convbench.stages import register
from convbench.stages.entry import run_stage

if __name__ == "__main__":
    run_stage(register.main)
