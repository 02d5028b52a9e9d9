"""What a run trained on: the GPU's name, or the CPU model and core count."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [
            tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in tf.config.list_physical_devices("GPU")
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
