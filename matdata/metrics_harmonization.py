"""Image-harmonization metrics (pure numpy): MSE, foreground MSE (fMSE) and PSNR.

Conventions of the iHarmony4 benchmark (Cong et al., DoveNet, CVPR 2020), as used by the
iDIH / iSSAM and RainNet papers: images are compared in the 0..255 range, as float64.

* ``MSE  = mean over pixels and channels of (pred - real)^2``
* ``fMSE = sum(m (pred - real)^2) / (C * sum(m))`` with ``m`` the binary foreground mask
  (the error per foreground pixel and channel; 0 when the mask is empty)
* ``PSNR = 10 log10(255^2 / MSE)`` (peak 255; ``inf`` for identical images)

Per-subset scores are means of the per-image values (:func:`aggregate`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

PEAK = 255.0


def _pair(pred: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    real = np.asarray(real, dtype=np.float64)
    if pred.shape != real.shape:
        raise ValueError(f"shape mismatch: pred {pred.shape} vs real {real.shape}")
    return pred, real


def mse(pred: np.ndarray, real: np.ndarray) -> float:
    """Mean squared error of two (H, W, C) images in 0..255."""
    p, r = _pair(pred, real)
    return float(np.mean((p - r) ** 2))


def fmse(pred: np.ndarray, real: np.ndarray, mask: np.ndarray) -> float:
    """Foreground MSE: squared error summed over the mask, per masked pixel and channel.

    ``mask`` (H, W): bool, or values in 0..1 thresholded at 0.5.
    """
    p, r = _pair(pred, real)
    m = np.asarray(mask)
    m = m if m.dtype == bool else m > 0.5
    if m.shape != p.shape[:2]:
        raise ValueError(f"shape mismatch: mask {m.shape} vs image {p.shape[:2]}")
    n = int(m.sum())
    if n == 0:
        return 0.0
    channels = p.shape[2] if p.ndim == 3 else 1
    return float(((p - r) ** 2)[m].sum() / (channels * n))


def psnr(pred: np.ndarray, real: np.ndarray, peak: float = PEAK) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` when the images are equal)."""
    e = mse(pred, real)
    return float("inf") if e == 0 else float(10.0 * np.log10(peak * peak / e))


def image_metrics(pred: np.ndarray, real: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """``{"mse", "fmse", "psnr"}`` of one harmonized image against its real image."""
    return {"mse": mse(pred, real), "fmse": fmse(pred, real, mask), "psnr": psnr(pred, real)}


def aggregate(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over images, plus ``images`` (the count)."""
    rows = list(rows)
    out: dict[str, float] = {"images": float(len(rows))}
    for k in ("mse", "fmse", "psnr"):
        vals = [r[k] for r in rows]
        out[k] = float(np.mean(vals)) if vals else float("nan")
    return out
