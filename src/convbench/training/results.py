"""What a training returns, whichever model it fit (Keras or a forest)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainResult:
    training_seconds: float
    epochs_run: int
    epoch_seconds: list[float] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)
