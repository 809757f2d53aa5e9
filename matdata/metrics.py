"""Alpha-matte error metrics (SAD, MSE, MAD, Grad, Conn) and the rules for their inputs.

Pure numpy/scipy.  This docstring is the one place that states the accepted inputs and
the conventions; every public function checks its inputs and raises
:class:`MetricInputError` (a :class:`~matdata.errors.MatdataError` and a ``ValueError``)
naming the problem, so a wrong dtype can never turn into a silently wrong number.

Inputs
------
* ``pred``, ``gt`` (H,W): ``uint8`` (0..255, divided by 255) or floating point in
  ``[0, 1]`` (finite).  Anything else is refused: a float matte in 0..255 (divide by 255
  first), other integer types (which maximum is meant?), bool, NaN, 3-D arrays.
* ``trimap`` (H,W), the same shape: integer with values in ``{0, 128, 255}``, or floating
  point with values in ``{0, 0.5, 1}`` (the training loader's form).  The unknown region
  is ``128`` / ``0.5``; any other value is refused (an int64 or float trimap in other
  units would otherwise give an empty region and SAD 0).
* ``mask`` (H,W) ``bool``: the evaluated pixels, when given directly.
* ``pred`` and ``gt`` (and the trimap / mask) must have equal shapes.

Definitions (alphamatting.com, Rhemann et al. CVPR 2009; Composition-1k, Xu et al. CVPR
2017).  With ``d = pred - gt`` in [0, 1] units and ``M`` the evaluated pixels::

    SAD  = sum_M |d| / 1000                       (reported as SAD/1000: "k" units)
    MSE  = sum_M d^2 / |M|                        (a fraction; tables often show x1e3)
    MAD  = sum_M |d| / |M|
    Grad = sum_M (|grad P| - |grad G|)^2 / 1000   Gaussian first-derivative filters,
                                                  sigma 1.4 (9x9), replicate borders
    Conn = sum_M |phi(pred) - phi(gt)| / 1000     phi(a) = 1 - (a - l) [a - l >= 0.15],
           l = the last threshold (step 0.1) at which the pixel was still 4-connected to
           the largest component of (pred >= t) & (gt >= t)

Gradients and connectivity are computed on the whole image and summed over ``M``, as the
reference code does.  MSE/MAD of an empty region are undefined (NaN): such an image is
left out of those two means (``valid``) but counts for SAD/Grad/Conn (0).

Conventions (``convention=``; :data:`DEFAULT_CONVENTION` is ``"dim"``)
-----------------------------------------------------------------------
Published evaluation code differs in two places:

* ``"dim"``: the Deep Image Matting MATLAB code (used for Composition-1k tables).
  Grad normalises each matte by its own minimum and maximum first (``mat2gray``:
  ``P = (p - min p) / (max p - min p)``; a constant matte has no gradient either way).
  Conn runs in single precision (``single(x)/255``, thresholds ``0:0.1:1`` compared in
  single), so e.g. ``153/255`` passes the 0.6 threshold.
* ``"gca"``: the GCA-Matting Python code.  Grad uses ``P = p`` (the matte / 255);
  Conn runs in float64 with thresholds ``k * 0.1``, so ``153/255 = 0.59999..`` fails
  ``0.6000..01`` and drops out one level earlier.

SAD, MSE and MAD are the same under both (computed in float64).

Across images (and DDP ranks) :class:`MetricSums` holds sums of per-image values and
counts, so partial sums add up exactly: the dataset metric is the mean over images.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from matdata.errors import MatdataError

METRICS = ("sad", "mse", "mad", "grad", "conn")
REGIONS = ("unknown", "whole")
CONVENTIONS = ("dim", "gca")
DEFAULT_CONVENTION = "dim"
GRAD_SIGMA = 1.4
CONN_STEP = 0.1
CONN_THETA = 0.15
#: How each metric is scaled in results (for tables and JSON).
SCALING = {
    "sad": "sum of |d| / 1000",
    "mse": "mean of d^2 (fraction; x1e3 in most papers)",
    "mad": "mean of |d| (fraction)",
    "grad": "sum / 1000",
    "conn": "sum / 1000",
}


class MetricInputError(MatdataError, ValueError):
    """An input of a metric has the wrong dtype, range, values or shape."""

    reason = "metric_input"


def check_matte(a: np.ndarray, name: str = "matte") -> np.ndarray:
    """Validate one matte (see the module doc); return it as float64 in [0, 1]."""
    a = np.asarray(a)
    if a.ndim != 2:
        raise MetricInputError(f"{name} must be a 2-D (H,W) matte, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if not np.issubdtype(a.dtype, np.floating):
        raise MetricInputError(
            f"{name} has dtype {a.dtype}; give uint8 (0..255) or float in [0, 1]",
            hint="convert integer mattes to uint8, or divide by their maximum",
        )
    out = a.astype(np.float64)
    if out.size:
        if not np.isfinite(out).all():
            raise MetricInputError(f"{name} holds NaN or infinite values")
        lo, hi = float(out.min()), float(out.max())
        if lo < 0.0 or hi > 1.0:
            hint = "divide by 255 first" if hi <= 255.0 and lo >= 0.0 else None
            raise MetricInputError(
                f"{name} is float with values in [{lo:g}, {hi:g}], expected [0, 1]", hint=hint
            )
    return out


def check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``pred`` and ``gt`` (dtype, range, equal shapes); float64 in [0, 1]."""
    p, g = check_matte(pred, "pred"), check_matte(gt, "gt")
    if p.shape != g.shape:
        raise MetricInputError(f"pred {p.shape} and gt {g.shape} must have equal shapes")
    return p, g


def unknown_mask(trimap: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """(H,W) bool: the unknown region of a trimap (values checked; see the module doc)."""
    t = np.asarray(trimap)
    if t.ndim != 2:
        raise MetricInputError(f"trimap must be 2-D (H,W), got shape {t.shape}")
    if shape is not None and t.shape != tuple(shape):
        raise MetricInputError(f"trimap {t.shape} does not match the matte {tuple(shape)}")
    values = np.unique(t)
    if np.issubdtype(t.dtype, np.integer):
        allowed, unknown = (0, 128, 255), 128
    elif np.issubdtype(t.dtype, np.floating):
        allowed, unknown = (0.0, 0.5, 1.0), 0.5
    else:
        raise MetricInputError(
            f"trimap has dtype {t.dtype}; give integers in {{0, 128, 255}} or floats in "
            "{0, 0.5, 1}"
        )
    bad = [v for v in values.tolist() if v not in allowed]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:5])
        raise MetricInputError(
            f"trimap ({t.dtype}) holds values outside {{{', '.join(f'{v:g}' for v in allowed)}}}:"
            f" {shown}",
            hint="0 = background, 128 (0.5 as float) = unknown, 255 (1.0) = foreground",
        )
    return t == unknown


def _region(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    m = np.asarray(mask)
    if m.dtype != bool:
        raise MetricInputError(
            f"mask has dtype {m.dtype}; give a bool (H,W) mask (for a trimap, use unknown_mask)"
        )
    if m.shape != shape:
        raise MetricInputError(f"mask {m.shape} does not match the matte {shape}")
    return m


def check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise MetricInputError(
            f"unknown metric convention {convention!r}", hint="one of " + ", ".join(CONVENTIONS)
        )
    return convention


def sad_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Sum of absolute differences over ``mask``, divided by 1000."""
    p, g = check_pair(pred, gt)
    m = _region(mask, p.shape)
    return float(np.abs(p - g)[m].sum() / 1000.0)


def mse_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared difference over ``mask`` (NaN when the mask is empty)."""
    p, g = check_pair(pred, gt)
    m = _region(mask, p.shape)
    n = int(m.sum())
    return float(((p - g) ** 2)[m].sum() / n) if n else float("nan")


def mad_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute difference over ``mask`` (NaN when the mask is empty)."""
    p, g = check_pair(pred, gt)
    m = _region(mask, p.shape)
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


def mat2gray(a: np.ndarray) -> np.ndarray:
    """``(a - min a) / (max a - min a)`` (MATLAB's ``mat2gray``); a constant -> zeros."""
    if a.size == 0 or float(a.max()) <= float(a.min()):
        return np.zeros_like(a, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo)


def _gradient_map(p: np.ndarray, g: np.ndarray, convention: str, sigma: float) -> np.ndarray:
    if check_convention(convention) == "dim":
        p, g = mat2gray(p), mat2gray(g)
    return (gradient_magnitude(p, sigma) - gradient_magnitude(g, sigma)) ** 2


def gradient_error(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray | None = None,
    sigma: float = GRAD_SIGMA,
    convention: str = DEFAULT_CONVENTION,
) -> float:
    """Sum over ``mask`` of the squared difference of gradient magnitudes, / 1000."""
    p, g = check_pair(pred, gt)
    m = _region(mask, p.shape)
    return float(_gradient_map(p, g, convention, sigma)[m].sum() / 1000.0)


def _thresholds(step: float, convention: str) -> np.ndarray:
    """``0:step:1`` as the convention's code builds and compares it."""
    n = int(round(1.0 / step))
    if convention == "dim":  # MATLAB's colon: k*step in the first half, 1-(n-k)*step after
        k = np.arange(n + 1)
        t = np.where(k <= n / 2, k * step, 1.0 - (n - k) * step)
        return t.astype(np.float32)
    return np.arange(n + 1) * step  # numpy's arange(0, 1 + step, step)


def connectivity_levels(
    p: np.ndarray, g: np.ndarray, step: float = CONN_STEP, convention: str = "gca"
) -> np.ndarray:
    """``l`` per pixel: the last threshold at which it was still connected (see module doc).

    For each threshold after 0: the largest 4-connected component of
    ``(p >= t) & (g >= t)``; a pixel first found outside it at level t gets the previous
    level; pixels never dropped get 1.  ``p``/``g`` already in the convention's precision.
    """
    from scipy.ndimage import label

    thresholds = _thresholds(step, check_convention(convention))
    levels = np.full(p.shape, -1.0, dtype=thresholds.dtype)
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


def _connectivity_map(p: np.ndarray, g: np.ndarray, convention: str, step: float, theta: float):
    if check_convention(convention) == "dim":  # single precision throughout
        p, g, theta_t = p.astype(np.float32), g.astype(np.float32), np.float32(theta)
    else:
        theta_t = theta
    levels = connectivity_levels(p, g, step, convention)
    dp, dgt = p - levels, g - levels
    phi_p = 1 - dp * (dp >= theta_t)
    phi_g = 1 - dgt * (dgt >= theta_t)
    return np.abs(phi_p - phi_g).astype(np.float64)


def connectivity_error(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray | None = None,
    step: float = CONN_STEP,
    theta: float = CONN_THETA,
    convention: str = DEFAULT_CONVENTION,
) -> float:
    """Sum over ``mask`` of ``|phi(pred) - phi(gt)|``, / 1000 (see module doc)."""
    p, g = check_pair(pred, gt)
    m = _region(mask, p.shape)
    return float(_connectivity_map(p, g, convention, step, theta)[m].sum() / 1000.0)


def matte_errors(
    pred: np.ndarray,
    gt: np.ndarray,
    trimap: np.ndarray | None = None,
    regions: Iterable[str] = REGIONS,
    convention: str = DEFAULT_CONVENTION,
) -> dict[str, dict[str, float]]:
    """All five metrics of one matte, per region (``unknown`` needs ``trimap``)."""
    p, g = check_pair(pred, gt)
    regions = tuple(regions)
    masks: dict[str, np.ndarray] = {}
    for region in regions:
        if region == "whole":
            masks[region] = np.ones(p.shape, dtype=bool)
        elif region == "unknown":
            if trimap is None:
                raise MetricInputError("the unknown region needs a trimap")
            masks[region] = unknown_mask(trimap, p.shape)
        else:
            raise MetricInputError(f"unknown region {region!r}; one of {REGIONS}")
    # Whole-image maps computed once and shared by the regions.
    grad_err = _gradient_map(p, g, convention, GRAD_SIGMA)
    conn_err = _connectivity_map(p, g, convention, CONN_STEP, CONN_THETA)
    diff = p - g
    out: dict[str, dict[str, float]] = {}
    for region, m in masks.items():
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
    convention: str = DEFAULT_CONVENTION
    sums: dict[str, dict[str, float]] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)
    valid: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_convention(self.convention)
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
        errors = matte_errors(pred, gt, trimap, self.regions, self.convention)
        self.add_errors(errors)
        return errors

    def merge(self, other: MetricSums) -> MetricSums:
        """A new object holding the sums of both (e.g. two ranks)."""
        if other.convention != self.convention:
            raise MetricInputError(
                f"cannot add {other.convention!r} metrics to {self.convention!r} metrics"
            )
        return MetricSums.from_array(
            self.to_array() + other.to_array(), self.regions, self.convention
        )

    __add__ = merge

    def to_array(self) -> np.ndarray:
        """Flat float64 vector (per region: the 5 sums, count, valid) for all-reduce."""
        rows = [
            [*(self.sums[r][k] for k in METRICS), self.count[r], self.valid[r]]
            for r in self.regions
        ]
        return np.asarray(rows, dtype=np.float64).ravel()

    @classmethod
    def from_array(
        cls,
        arr: np.ndarray,
        regions: Iterable[str] = REGIONS,
        convention: str = DEFAULT_CONVENTION,
    ) -> MetricSums:
        regions = tuple(regions)
        a = np.asarray(arr, dtype=np.float64).reshape(len(regions), len(METRICS) + 2)
        obj = cls(regions=regions, convention=convention)
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
    return MetricSums.from_array(total, parts[0].regions, parts[0].convention)


__all__ = [
    "CONVENTIONS",
    "DEFAULT_CONVENTION",
    "SCALING",
    "MetricInputError",
    "check_matte",
    "check_pair",
    "mat2gray",
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
