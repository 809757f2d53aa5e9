"""The learning-rate schedule of :mod:`modnet.train` (warm-up, then cosine / step / constant)."""

from __future__ import annotations

import math


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base LR at ``step`` (0-based): linear warm-up from ``1/warmup``,
    then cosine to 0 over the remaining steps, MODNet's step decay (x0.1 every quarter of
    the run) or constant."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return 0.1 ** (step * 4 // max(total, 1))
    span = max(total - warmup, 1)
    t = min(max(step - warmup, 0), span) / span
    return 0.5 * (1.0 + math.cos(math.pi * t))
