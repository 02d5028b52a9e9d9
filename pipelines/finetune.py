"""DVC stage `finetune`: see convbench.stages.finetune."""

from convbench.stages.entry import run_stage
from convbench.training.backend import choose_backend

choose_backend()  # runtime.backend, before the stage module imports Keras

from convbench.stages import finetune  # noqa: E402

if __name__ == "__main__":
    run_stage(finetune.main)
