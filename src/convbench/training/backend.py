"""Which Keras backend a stage process runs, chosen before Keras is imported.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, and the stage modules
import it at their top: so the entry points of the stages that build models
(``pipelines/<stage>.py``) set it from ``runtime.backend`` first, in stage processes
only (``python -m pipelines.<stage>``). A flow or a test that imports a stage module
keeps its own backend, and its children are not steered by it.
A ``KERAS_BACKEND`` someone set wins; ``configure_runtime`` then refuses a mismatch.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

from convbench.settings import keras_backend_variable, requested_runtime

STAGE_PACKAGE = "pipelines."  # what dvc.yaml's stage commands run
# Under JAX, GPU kernels repeat their numbers only with this XLA flag (CPUs always do).
JAX_DETERMINISM_FLAG = "--xla_gpu_deterministic_ops=true"


def stage_params(argv: list[str] | None = None) -> Path | None:
    """The params file of a stage process (``python -m pipelines.X … [--params FILE]``),
    or None when this process is not a stage."""
    argv = list(sys.orig_argv if argv is None else argv)
    pairs = list(itertools.pairwise(argv))
    if not any(flag == "-m" and value.startswith(STAGE_PACKAGE) for flag, value in pairs):
        return None
    given = [value for flag, value in pairs if flag == "--params"]
    return Path(given[-1] if given else "params.yaml")


def choose_backend(argv: list[str] | None = None) -> str | None:
    """Set ``KERAS_BACKEND`` (and JAX's determinism flag) from the stage's params for
    this stage process; the backend chosen, or None when it was not this one's to choose."""
    params = stage_params(argv)
    if params is None or "keras" in sys.modules or keras_backend_variable():
        return None
    runtime = requested_runtime(params)
    if runtime is None:
        return None
    os.environ["KERAS_BACKEND"] = runtime.backend
    if runtime.backend == "jax" and runtime.deterministic:
        flags = os.environ.get("XLA_FLAGS", "")
        if JAX_DETERMINISM_FLAG not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {JAX_DETERMINISM_FLAG}".strip()
    return runtime.backend
