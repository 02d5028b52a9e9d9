"""DVC stage `evaluate`: see convbench.stages.evaluate."""

from convbench.ops.warm import forward
from convbench.stages.entry import run_stage
from convbench.training.backend import choose_backend

choose_backend()  # runtime.backend, before the stage module imports Keras
forward(__name__)  # in a flow, the stage runs in its warm interpreter (ops.warm)

from convbench.stages import evaluate  # noqa: E402

if __name__ == "__main__":
    run_stage(evaluate.main)
