"""DVC stage `download`: fetch a dataset's source files, verified, into a folder."""

from convbench.ops.warm import forward

forward(__name__)  # in a flow, the stage runs in its warm interpreter (ops.warm)

from convbench.stages import download  # noqa: E402
from convbench.stages.entry import run_stage  # noqa: E402

if __name__ == "__main__":
    run_stage(download.main)
