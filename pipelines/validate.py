"""DVC stage `validate`: the manifest of every image (bad files quarantined), a GX suite."""

from convbench.stages import validate
from convbench.stages.entry import run_stage

if __name__ == "__main__":
    run_stage(validate.main)
