"""DVC stage `validate`: the manifest of every image (bad files quarantined), a GX suite."""

from convbench.ops.warm import forward

forward(__name__)  # in a flow, the stage runs in its warm interpreter (ops.warm)

from convbench.stages import validate  # noqa: E402
from convbench.stages.entry import run_stage  # noqa: E402

if __name__ == "__main__":
    run_stage(validate.main)
