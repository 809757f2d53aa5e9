"""Image-harmonization metrics (pure numpy): MSE, foreground MSE (fMSE) and PSNR.

Conventions of the iHarmony4 benchmark (Cong et al., DoveNet, CVPR 2020), as used by the
iDIH / iSSAM and RainNet papers: images are compared in the 0..255 range, as float64.

* ``MSE  = mean over pixels and channels of (pred - real)^2``
* ``fMSE = sum(m (pred - real)^2) / (C * sum(m))`` with ``m`` the binary foreground mask
  (the error per foreground pixel and channel; 0 when the mask is empty)
* ``PSNR = 10 log10(255^2 / MSE)`` (peak 255; ``inf`` for identical images)

Per-subset scores are means of the per-image values (:func:`aggregate`).

``iharm_*``: the definitions of the released iDIH / iSSAM evaluation code (Sofiiuk et al.,
WACV 2021; ``iharm/inference/metrics.py``), used by ``harmonize-eval --protocol iharm``.
They differ from the above where it matters for a table:

* ``fMSE = sum(m (pred - real)^2) / (C * sum(m) + 1e-6)`` with ``m`` the *soft* mask (the
  bilinearly resized 0..1 mask, not thresholded); an empty mask gives 0;
* ``PSNR = 10 log10(max(real)^2 / (MSE + 1e-6))``: the peak is the brightest value of the
  real image, not 255, and identical images give a finite value (108.13 dB for a real
  image that reaches 255).  A real image that is all 0 has no peak: the released code
  fails there (``log10(0)``); here it is ``-inf``.
* ``MSE`` is the same (mean over pixels and channels).
Images are float in 0..255; sums are float64 (the released code sums in float32 on the
GPU: differences of order 1e-6 relative).
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


IHARM_EPS = 1e-6


def iharm_fmse(pred: np.ndarray, real: np.ndarray, mask: np.ndarray) -> float:
    """fMSE of the iDIH code: soft-mask weighted, ``+ 1e-6`` in the denominator."""
    p, r = _pair(pred, real)
    m = np.asarray(mask, dtype=np.float64)
    if m.shape != p.shape[:2]:
        raise ValueError(f"shape mismatch: mask {m.shape} vs image {p.shape[:2]}")
    if m.size and (m.min() < 0 or m.max() > 1):
        raise ValueError("the soft mask must lie in [0, 1]")
    channels = p.shape[2] if p.ndim == 3 else 1
    err = (p - r) ** 2
    weighted = (err * m[..., None]).sum() if p.ndim == 3 else (err * m).sum()
    return float(weighted / (channels * m.sum() + IHARM_EPS))


def iharm_psnr(pred: np.ndarray, real: np.ndarray) -> float:
    """PSNR of the iDIH code: peak ``max(real)``, ``+ 1e-6`` on the MSE."""
    p, r = _pair(pred, real)
    peak2 = float(r.max()) ** 2 if r.size else 0.0
    if peak2 == 0.0:
        return float("-inf")
    return float(10.0 * np.log10(peak2 / (mse(p, r) + IHARM_EPS)))


def iharm_metrics(pred: np.ndarray, real: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """``{"mse", "fmse", "psnr"}`` of one image under the iDIH evaluation's definitions."""
    return {
        "mse": mse(pred, real),
        "fmse": iharm_fmse(pred, real, mask),
        "psnr": iharm_psnr(pred, real),
    }


def aggregate(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over images, plus ``images`` (the count)."""
    rows = list(rows)
    out: dict[str, float] = {"images": float(len(rows))}
    for k in ("mse", "fmse", "psnr"):
        vals = [r[k] for r in rows]
        out[k] = float(np.mean(vals)) if vals else float("nan")
    return out
