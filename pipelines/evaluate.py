"""DVC stage `evaluate`: see convbench.stages.evaluate."""

from convbench.stages import evaluate
from convbench.stages.entry import run_stage

if __name__ == "__main__":
    run_stage(evaluate.main)
