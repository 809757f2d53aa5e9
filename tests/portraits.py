"""A synthetic portrait for inference and evaluation tests: an elliptic soft matte of a
noisy warm foreground over a noisy green background."""

from __future__ import annotations

import numpy as np


def portrait(seed: int, h: int = 40, w: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """``(rgb (h, w, 3) uint8, alpha (h, w) uint8)``; the image is the exact composite."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    d = np.hypot((yy - h / 2) / (h / 3), (xx - w / 2) / (w / 4))
    a = np.clip((1.2 - d) * 3, 0, 1)
    fg = np.array([200, 150, 120]) + rng.normal(0, 10, (h, w, 3))
    bg = np.array([30, 90, 40]) + rng.normal(0, 10, (h, w, 3))
    rgb = np.clip(a[..., None] * fg + (1 - a[..., None]) * bg, 0, 255).astype(np.uint8)
    return rgb, (a * 255).round().astype(np.uint8)
