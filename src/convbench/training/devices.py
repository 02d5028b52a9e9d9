"""What a run trains on, and how: device choice, GPU memory, mixed precision, XLA.

``configure_runtime`` applies ``params.yaml``'s ``runtime`` before a model is built and
returns what it really applied, which every run logs next to the GPU model (or CPU
model). The GPU-only knobs fall back to float32 on a CPU runner, so one params file
serves a mixed fleet of workers.
"""

from __future__ import annotations

import logging
import os
import platform
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from convbench.core.errors import ConvbenchError
from convbench.settings import Runtime

log = logging.getLogger(__name__)

POLICIES = {"none": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


class RuntimeConfigError(ConvbenchError, RuntimeError):
    """The runtime asked for cannot be had on this machine (e.g. ``device: gpu``, no GPU)."""


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    if "keras" not in sys.modules:
        return []  # a process without Keras (a forest's) trains nothing on a GPU
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [
            tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in tf.config.get_visible_devices("GPU")
        ]
    if backend == "jax":
        import jax

        return [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def describe_device(use_gpu: bool = True) -> dict[str, str]:
    """``{"device": "GPU"|"CPU", "device_name": ...}`` for the tables and run tags."""
    gpus = gpu_names() if use_gpu else []
    if gpus:
        return {"device": "GPU", "device_name": gpus[0]}
    return {"device": "CPU", "device_name": f"{cpu_name()} ({os.cpu_count()} cores)"}


@dataclass(frozen=True)
class AppliedRuntime:
    """What ``configure_runtime`` did: logged with every run."""

    backend: str  # Keras' backend: tensorflow or jax
    device: str  # GPU or CPU
    device_name: str
    gpu_count: int
    memory_growth: bool
    dtype_policy: str  # Keras' global policy: float32, mixed_bfloat16, mixed_float16
    xla: bool | str  # jit_compile to pass to compile(): True, False or "auto"
    deterministic: bool

    def as_params(self) -> dict[str, object]:
        return {f"runtime.{k}": v for k, v in asdict(self).items()}


BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_has_bf16_units(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU computes in bf16 natively: Intel AMX tiles (`amx_bf16`) or the
    AVX-512 bf16 dot products (`avx512_bf16`: Cooper Lake, AMD Zen 4 and later), which
    TensorFlow's oneDNN kernels use for mixed_bfloat16. On both it was measured to pay
    (README, "Numerics"). Without either, auto keeps float32."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    return any(
        line.startswith("flags") and BF16_FLAGS & set(line.split(":", 1)[-1].split())
        for line in text.splitlines()
    )


def resolve_policy(
    mixed_precision: str, has_gpu: bool, backend: str = "tensorflow", bf16_units: bool = False
) -> str:
    """Keras' dtype policy: bf16/fp16 on GPUs when asked (float16 on CPUs is slow); under
    ``auto``, bf16 on a CPU runner with native bf16 under TensorFlow (measured
    faster at the same accuracy there: README, "Numerics"), float32 everywhere else."""
    if mixed_precision == "auto":
        if not has_gpu and bf16_units and backend == "tensorflow":
            return "mixed_bfloat16"
        return "float32"
    policy = POLICIES[mixed_precision]
    if policy != "float32" and not has_gpu:
        log.warning("runtime.mixed_precision=%s ignored: no GPU here; float32", mixed_precision)
        return "float32"
    return policy


def _tensorflow_devices(runtime: Runtime) -> tuple[int, bool]:
    """(visible GPUs, memory growth applied), set before TensorFlow touches a GPU."""
    import tensorflow as tf

    if runtime.deterministic:
        # Deterministic kernels (or an error naming an op that has none), and tf.data
        # kept in order: with the seeds, a rerun repeats the numbers exactly.
        tf.config.experimental.enable_op_determinism()
    gpus = tf.config.list_physical_devices("GPU")
    if runtime.device == "cpu" and gpus:
        tf.config.set_visible_devices([], "GPU")
        return 0, False
    growth = False
    if runtime.memory_growth:
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
                growth = True
            except RuntimeError:  # already initialised in this process: keep what it has
                growth = tf.config.experimental.get_memory_growth(gpu)
    return len(gpus), growth


def configure_runtime(runtime: Runtime) -> AppliedRuntime:
    """Apply ``runtime`` to this process (once, before any model is built)."""
    import keras

    backend = keras.backend.backend()
    if backend != runtime.backend:
        raise RuntimeConfigError(
            f"runtime.backend is {runtime.backend} but Keras was loaded with {backend} "
            "(KERAS_BACKEND, or Keras imported before the stage chose it): unset "
            "KERAS_BACKEND or make the two agree"
        )
    growth = False
    if backend == "tensorflow":
        count, growth = _tensorflow_devices(runtime)
    else:
        # JAX and torch pick devices at import (JAX_PLATFORMS, CUDA_VISIBLE_DEVICES) and
        # JAX's memory through XLA_PYTHON_CLIENT_PREALLOCATE: environment, not params.
        count = 0 if runtime.device == "cpu" else len(gpu_names())
    if runtime.device == "gpu" and count == 0:
        raise RuntimeConfigError(
            "runtime.device is gpu but no GPU is visible to "
            f"{backend}: run on a GPU worker, or set runtime.device to auto or cpu"
        )
    policy = resolve_policy(runtime.mixed_precision, count > 0, backend, cpu_has_bf16_units())
    keras.mixed_precision.set_global_policy(policy)
    device = describe_device(use_gpu=count > 0)
    applied = AppliedRuntime(
        backend=backend,
        device=device["device"],
        device_name=device["device_name"],
        gpu_count=count,
        memory_growth=growth,
        dtype_policy=policy,
        xla=runtime.xla,
        deterministic=runtime.deterministic,
    )
    log.info("runtime: %s", applied)
    return applied


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy and Keras (and TensorFlow when it is in use), as Keras'
    ``set_random_seed`` does, without importing TensorFlow only to seed it: under
    another backend, convbench's tf.data pipelines pass their seeds explicitly."""
    import keras

    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    # What set_random_seed does besides TensorFlow (Keras 3.15): the global seed, and a
    # fresh global seed generator made from it.
    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
