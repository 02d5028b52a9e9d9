"""DVC stage `compare`: see convbench.stages.compare."""

from convbench.stages import compare
from convbench.stages.entry import run_stage

if __name__ == "__main__":
    run_stage(compare.main)
