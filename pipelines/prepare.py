"""DVC stage `prepare`: train/validation/test roles, profile subsets, arrays or shards."""

from convbench.stages import prepare
from convbench.stages.entry import run_stage

if __name__ == "__main__":
    run_stage(prepare.main)
