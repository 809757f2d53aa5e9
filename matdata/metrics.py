"""Alpha-matte error metrics of the alphamatting.com benchmark (Rhemann et al., CVPR 2009).

Pure numpy/scipy.  ``pred`` and ``gt`` are alpha mattes (H,W): float in [0, 1], or uint8
(divided by 255).  ``mask`` (H,W) bool selects the evaluated pixels: the trimap's unknown
region (``trimap == 128``; float trimaps: ``== 0.5``) or the whole image.  With
``d = pred - gt`` summed over the mask ``M``::

    SAD  = sum_M |d| / 1000                                  (conventional /1000)
    MSE  = sum_M d^2 / |M|
    MAD  = sum_M |d| / |M|
    Grad = sum_M (|grad pred| - |grad gt|)^2 / 1000          gradients: Gaussian
           first-derivative filters, sigma 1.4 (9x9), replicate borders
    Conn = sum_M |phi(pred) - phi(gt)| / 1000                phi(a) = 1 - (a - l) [a - l >= 0.15],
           l = the highest threshold (step 0.1) below which the pixel was still 4-connected
           to the largest component of (pred >= t) & (gt >= t)

Gradients and connectivity are computed on the whole image and then summed over the mask,
as the benchmark's reference code does.  MSE/MAD of an empty mask are undefined: such an
image is left out of those two means (``n_valid``), but counts for SAD/Grad/Conn (0).

Across images (and DDP ranks) :class:`MetricSums` holds sums of per-image values and
counts, so partial sums add up exactly: the dataset metric is the mean over images.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

METRICS = ("sad", "mse", "mad", "grad", "conn")
REGIONS = ("unknown", "whole")
GRAD_SIGMA = 1.4
CONN_STEP = 0.1
CONN_THETA = 0.15


def _as_unit(a: np.ndarray) -> np.ndarray:
    """uint8 -> /255, anything else -> float64 (values expected in [0, 1])."""
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    return a.astype(np.float64)


def _check(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must be equal (H,W) shapes")
    if mask is None:
        return np.ones(pred.shape, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != pred.shape:
        raise ValueError(f"mask {mask.shape} does not match the matte {pred.shape}")
    return mask


def unknown_mask(trimap: np.ndarray) -> np.ndarray:
    """(H,W) bool: the unknown region of a 0/128/255 (or 0/0.5/1 float) trimap."""
    t = np.asarray(trimap)
    if t.dtype == np.uint8:
        return t == 128
    return np.isclose(t.astype(np.float64), 0.5)


def sad_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Sum of absolute differences over ``mask``, divided by 1000."""
    p, g = _as_unit(pred), _as_unit(gt)
    m = _check(p, g, mask)
    return float(np.abs(p - g)[m].sum() / 1000.0)


def mse_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared difference over ``mask`` (NaN when the mask is empty)."""
    p, g = _as_unit(pred), _as_unit(gt)
    m = _check(p, g, mask)
    n = int(m.sum())
    return float(((p - g) ** 2)[m].sum() / n) if n else float("nan")


def mad_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute difference over ``mask`` (NaN when the mask is empty)."""
    p, g = _as_unit(pred), _as_unit(gt)
    m = _check(p, g, mask)
    n = int(m.sum())
    return float(np.abs(p - g)[m].sum() / n) if n else float("nan")


def gaussian_derivative_taps(sigma: float = GRAD_SIGMA, eps: float = 1e-2):
    """1-D taps ``(g, dg)`` of the benchmark's Gaussian-gradient filter.

    Half size ``ceil(sigma * sqrt(-2 ln(sqrt(2 pi) sigma eps)))`` (4 for sigma 1.4); the 2-D
    kernel ``g(y) dg(x)`` is normalised to unit L2 norm (here folded into ``dg``).
    """
    half = int(np.ceil(sigma * np.sqrt(-2.0 * np.log(np.sqrt(2 * np.pi) * sigma * eps))))
    x = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))
    dg = -x * g / sigma**2
    dg = dg / (np.linalg.norm(g) * np.linalg.norm(dg))
    return g, dg


def gradient_magnitude(a: np.ndarray, sigma: float = GRAD_SIGMA) -> np.ndarray:
    """|grad a| with Gaussian first-derivative filters (separable, replicate borders)."""
    from scipy.ndimage import convolve1d

    g, dg = gaussian_derivative_taps(sigma)
    gx = convolve1d(convolve1d(a, g, axis=0, mode="nearest"), dg, axis=1, mode="nearest")
    gy = convolve1d(convolve1d(a, g, axis=1, mode="nearest"), dg, axis=0, mode="nearest")
    return np.sqrt(gx**2 + gy**2)


def gradient_error(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None, sigma: float = GRAD_SIGMA
) -> float:
    """Sum over ``mask`` of the squared difference of gradient magnitudes, / 1000."""
    p, g = _as_unit(pred), _as_unit(gt)
    m = _check(p, g, mask)
    err = (gradient_magnitude(p, sigma) - gradient_magnitude(g, sigma)) ** 2
    return float(err[m].sum() / 1000.0)


def connectivity_levels(p: np.ndarray, g: np.ndarray, step: float = CONN_STEP) -> np.ndarray:
    """``l`` per pixel: the last threshold at which it was still connected (see module doc).

    For t = step, 2 step, ..., 1: the largest 4-connected component of
    ``(p >= t) & (g >= t)``; a pixel first found outside it at level t gets the previous
    level; pixels never dropped get 1.
    """
    from scipy.ndimage import label

    levels = np.full(p.shape, -1.0)
    thresholds = np.linspace(0.0, 1.0, int(round(1.0 / step)) + 1)
    for prev, t in zip(thresholds[:-1], thresholds[1:], strict=True):
        labels, n = label((p >= t) & (g >= t))  # default structure: 4-connectivity
        if n:
            sizes = np.bincount(labels.ravel())[1:]
            omega = labels == (int(np.argmax(sizes)) + 1)
        else:
            omega = np.zeros(p.shape, dtype=bool)
        levels[(levels == -1) & ~omega] = prev
    levels[levels == -1] = 1.0
    return levels


def connectivity_error(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray | None = None,
    step: float = CONN_STEP,
    theta: float = CONN_THETA,
) -> float:
    """Sum over ``mask`` of ``|phi(pred) - phi(gt)|``, / 1000 (see module doc)."""
    p, g = _as_unit(pred), _as_unit(gt)
    m = _check(p, g, mask)
    levels = connectivity_levels(p, g, step)
    dp, dgt = p - levels, g - levels
    phi_p = 1.0 - dp * (dp >= theta)
    phi_g = 1.0 - dgt * (dgt >= theta)
    return float(np.abs(phi_p - phi_g)[m].sum() / 1000.0)


def matte_errors(
    pred: np.ndarray,
    gt: np.ndarray,
    trimap: np.ndarray | None = None,
    regions: Iterable[str] = REGIONS,
) -> dict[str, dict[str, float]]:
    """All five metrics of one matte, per region (``unknown`` needs ``trimap``)."""
    p, g = _as_unit(pred), _as_unit(gt)
    _check(p, g, None)
    # Whole-image maps computed once and shared by the regions.
    grad_err = (gradient_magnitude(p) - gradient_magnitude(g)) ** 2
    levels = connectivity_levels(p, g)
    dp, dgt = p - levels, g - levels
    conn_err = np.abs((1.0 - dp * (dp >= CONN_THETA)) - (1.0 - dgt * (dgt >= CONN_THETA)))
    diff = p - g
    out: dict[str, dict[str, float]] = {}
    for region in regions:
        if region == "whole":
            m = np.ones(p.shape, dtype=bool)
        elif region == "unknown":
            if trimap is None:
                raise ValueError("the unknown region needs a trimap")
            m = _check(p, g, unknown_mask(trimap))
        else:
            raise ValueError(f"unknown region {region!r}; one of {REGIONS}")
        n = int(m.sum())
        out[region] = {
            "sad": float(np.abs(diff)[m].sum() / 1000.0),
            "mse": float((diff**2)[m].sum() / n) if n else float("nan"),
            "mad": float(np.abs(diff)[m].sum() / n) if n else float("nan"),
            "grad": float(grad_err[m].sum() / 1000.0),
            "conn": float(conn_err[m].sum() / 1000.0),
        }
    return out


@dataclass
class MetricSums:
    """Sums of per-image metrics and counts, per region; add, merge and reduce exactly.

    ``sums[region][metric]`` is the sum over images; ``count[region]`` the number of images
    and ``valid[region]`` those with a non-empty region (the MSE/MAD denominators).
    """

    regions: tuple[str, ...] = REGIONS
    sums: dict[str, dict[str, float]] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)
    valid: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for r in self.regions:
            self.sums.setdefault(r, dict.fromkeys(METRICS, 0.0))
            self.count.setdefault(r, 0)
            self.valid.setdefault(r, 0)

    def add_errors(self, errors: Mapping[str, Mapping[str, float]]) -> None:
        """Add one image's :func:`matte_errors` result."""
        for r in self.regions:
            e = errors[r]
            self.count[r] += 1
            ok = not np.isnan(e["mse"])
            self.valid[r] += int(ok)
            for k in METRICS:
                if k in ("mse", "mad") and not ok:
                    continue
                self.sums[r][k] += float(e[k])

    def add(self, pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None) -> dict:
        """Compute and add one image's errors; return them."""
        errors = matte_errors(pred, gt, trimap, self.regions)
        self.add_errors(errors)
        return errors

    def merge(self, other: MetricSums) -> MetricSums:
        """A new object holding the sums of both (e.g. two ranks)."""
        return MetricSums.from_array(self.to_array() + other.to_array(), self.regions)

    __add__ = merge

    def to_array(self) -> np.ndarray:
        """Flat float64 vector (per region: the 5 sums, count, valid) for all-reduce."""
        rows = [
            [*(self.sums[r][k] for k in METRICS), self.count[r], self.valid[r]]
            for r in self.regions
        ]
        return np.asarray(rows, dtype=np.float64).ravel()

    @classmethod
    def from_array(cls, arr: np.ndarray, regions: Iterable[str] = REGIONS) -> MetricSums:
        regions = tuple(regions)
        a = np.asarray(arr, dtype=np.float64).reshape(len(regions), len(METRICS) + 2)
        obj = cls(regions=regions)
        for r, row in zip(regions, a, strict=True):
            obj.sums[r] = {k: float(v) for k, v in zip(METRICS, row[: len(METRICS)], strict=True)}
            obj.count[r] = int(round(row[-2]))
            obj.valid[r] = int(round(row[-1]))
        return obj

    def result(self) -> dict[str, dict[str, float]]:
        """Mean per image of each metric, per region (NaN when no image counts)."""
        out: dict[str, dict[str, float]] = {}
        for r in self.regions:
            out[r] = {}
            for k in METRICS:
                n = self.valid[r] if k in ("mse", "mad") else self.count[r]
                out[r][k] = self.sums[r][k] / n if n else float("nan")
        return out

    def flat(self) -> dict[str, float]:
        """``{"unknown/sad": ..., "whole/mse": ...}`` for logs."""
        return {f"{r}/{k}": v for r, d in self.result().items() for k, v in d.items()}


def reduce_sums(parts: Iterable[MetricSums]) -> MetricSums:
    """Add up partial sums (e.g. one per rank or per worker)."""
    parts = list(parts)
    if not parts:
        return MetricSums()
    total = parts[0].to_array().copy()
    for p in parts[1:]:
        total += p.to_array()
    return MetricSums.from_array(total, parts[0].regions)


__all__ = [
    "CONN_STEP",
    "CONN_THETA",
    "GRAD_SIGMA",
    "METRICS",
    "REGIONS",
    "MetricSums",
    "connectivity_error",
    "connectivity_levels",
    "gaussian_derivative_taps",
    "gradient_error",
    "gradient_magnitude",
    "mad_error",
    "matte_errors",
    "mse_error",
    "reduce_sums",
    "sad_error",
    "unknown_mask",
]
