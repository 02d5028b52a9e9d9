"""DVC stage `download_weights`: a pretrained base's weights, verified against their pin."""

from convbench.ops.warm import forward

forward(__name__)  # in a flow, the stage runs in its warm interpreter (ops.warm)

from convbench.stages import download_weights  # noqa: E402
from convbench.stages.entry import run_stage  # noqa: E402

if __name__ == "__main__":
    run_stage(download_weights.main)
