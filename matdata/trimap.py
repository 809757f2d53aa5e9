"""Trimaps from alpha mattes: known foreground, known background and an unknown band.

One function, :func:`make_trimap`, used both by the build (stored ``trimap`` field) and by
the trainer (trimaps drawn on the fly with :func:`random_trimap_params`).

Definition, for an alpha matte ``a`` (uint8, ``(H, W)``, read as ``a / 255`` in [0, 1])::

    FG0 = { a >= 1 - eps }            known foreground before the band
    BG0 = { a <= eps }                known background before the band
    r   = width  if width is not None  else  max(1, round(rel_width * sqrt(H * W)))
    FG  = erode(FG0, disk(r))         pixels at distance > r from anything not in FG0
    BG  = erode(BG0, disk(r))
    trimap = 255 on FG, 0 on BG, 128 elsewhere (fractional alpha + a band of r pixels
             on each side of every fg/bg transition)

``r`` scales with the square root of the pixel count, i.e. linearly with the image side,
so a trimap of a 2x larger image has a 2x wider band in pixels (the same band relative to
the subject).  ``disk(r)`` is the ``(2r+1) x (2r+1)`` elliptical structuring element.
Pixels outside the image repeat the border (``BORDER_REPLICATE``), so for an erosion
they never add a transition: the image border itself creates no unknown band.
Morphology is OpenCV's (``cv2.erode``), which is fast and well kept.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

#: Trimap values.
TRIMAP_BG, TRIMAP_UNKNOWN, TRIMAP_FG = 0, 128, 255


@dataclass(frozen=True)
class TrimapParams:
    """How a trimap is made from alpha (see the module docstring for the equations).

    ``eps``: tolerance in alpha units ([0, 1)) for the known regions; ``rel_width``: band
    radius relative to ``sqrt(H * W)``; ``width``: band radius in pixels, overriding
    ``rel_width`` when not None.
    """

    eps: float = 0.01
    rel_width: float = 0.01
    width: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.eps < 0.5:
            raise ValueError(f"eps must be in [0, 0.5), got {self.eps}")
        if self.rel_width < 0:
            raise ValueError(f"rel_width must be >= 0, got {self.rel_width}")
        if self.width is not None and self.width < 0:
            raise ValueError(f"width must be >= 0, got {self.width}")

    def band_radius(self, height: int, width: int) -> int:
        """Band radius ``r`` in pixels for an image of ``height x width``."""
        if self.width is not None:
            return int(self.width)
        if self.rel_width == 0:
            return 0
        return max(1, round(self.rel_width * math.sqrt(height * width)))

    def thresholds(self) -> tuple[int, int]:
        """``(lo, hi)`` in uint8 units: known bg is ``a <= lo``, known fg is ``a >= hi``."""
        lo = math.floor(self.eps * 255 + 1e-9)
        hi = math.ceil((1.0 - self.eps) * 255 - 1e-9)
        return lo, hi

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrimapParams:
        return cls(**{k: d[k] for k in ("eps", "rel_width", "width") if k in d})


def make_trimap(alpha: np.ndarray, params: TrimapParams | None = None) -> np.ndarray:
    """Trimap ``(H, W)`` uint8 with values 0 / 128 / 255 from an ``(H, W)`` uint8 alpha."""
    import cv2

    params = params or TrimapParams()
    if alpha.ndim != 2 or alpha.dtype != np.uint8:
        raise ValueError(f"alpha must be an (H, W) uint8 array, got {alpha.shape} {alpha.dtype}")
    h, w = alpha.shape
    lo, hi = params.thresholds()
    fg = (alpha >= hi).astype(np.uint8)
    bg = (alpha <= lo).astype(np.uint8)
    r = params.band_radius(h, w)
    if r > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        fg = cv2.erode(fg, kernel, borderType=cv2.BORDER_REPLICATE)
        bg = cv2.erode(bg, kernel, borderType=cv2.BORDER_REPLICATE)
    trimap = np.full((h, w), TRIMAP_UNKNOWN, np.uint8)
    trimap[fg.astype(bool)] = TRIMAP_FG
    trimap[bg.astype(bool)] = TRIMAP_BG
    return trimap


def random_trimap_params(
    rng: np.random.Generator,
    rel_range: tuple[float, float] = (0.005, 0.03),
    eps: float = 0.01,
) -> TrimapParams:
    """Trimap parameters for on-the-fly training trimaps: ``rel_width ~ U(rel_range)``."""
    lo, hi = rel_range
    return TrimapParams(eps=eps, rel_width=float(rng.uniform(lo, hi)), width=None)
