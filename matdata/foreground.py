"""Foreground colour estimation: recover ``F`` from a photo ``I`` and its alpha ``a``.

A photo of a subject is ``I = a * F + (1 - a) * B_orig``.  Compositing the photo itself
onto a new background (``a * I + (1 - a) * B_new``) keeps ``a * (1 - a) * B_orig`` in
every soft pixel: the old background shows as a halo in hair and edges.  Estimating ``F``
first and compositing ``a * F + (1 - a) * B_new`` removes it.

Methods (``estimate_foreground(..., method=...)``), one function each, registered by name
in :data:`ESTIMATORS` (:func:`estimate_blur_fusion`, :func:`estimate_blur_fusion_v1`,
:func:`estimate_blur_fusion_fine`, ...):

``"blur_fusion"`` (default)
    Two stages: coarse multi-scale blur fusion for smooth colour fields, then a local
    linear fit for the detail.

    1. Blur fusion, after "Approximate fast foreground colour estimation" (Forte & Pitie,
       ICIP 2021), written here from the paper's equations.  With ``blur_r`` a normalised
       box filter of radius ``r``::

           F_r = blur_r(F * a) / blur_r(a)              local mean fg colour, weighted by a
           B_r = blur_r(B * (1 - a)) / blur_r(1 - a)    local mean bg colour
           R   = I - a * F_r - (1 - a) * B_r            residual of the compositing equation
           F  <- clip(F_r + a * R, 0, 1)                (the paper's update)
           B  <- B_r

       starting from ``F = B = I``.  Passes ``(radius, factor)`` = ``(128, 16), (48, 8),
       (16, 4)`` (radius in full-resolution pixels; scaled up above ~0.5 MP,
       :func:`pass_schedule`): each pass runs on the image downscaled by its factor (a
       pyramid of 2x2 averages), so the wide blurs cost almost nothing; ``F`` and ``B``
       are resized bilinearly from level to level.  Two changes to the paper: each blur
       also weighs in the previous estimate with a tiny weight (``F_r = (blur(F*a) +
       e*F) / (blur(a) + e)``, ``e = 1e-4``), so ``F`` stays a smooth extension of the
       subject away from it (not black); before each pass ``B`` is reset to ``I`` where
       the level's alpha is <= 0.05 (there the image *is* the background).
    2. Local linear fit (:func:`_local_fit`).  Where ``F`` and ``B`` are constant over a
       small window, ``I = B + a * (F - B)`` is linear in ``a``: the least-squares line of
       ``I`` against ``a`` in the window has slope ``F - B`` and intercept ``B`` (the
       local model of closed-form matting, Levin et al. 2008; computed like the guided
       filter of He et al. with alpha as the guide).  Strands and speckled fringes give
       the fit its spread of alpha, so it separates the strand's colour from the scene
       behind it even over sharp scene edges, where blurred ``B_r`` fails.  Where alpha
       is flat in a window the slope falls back to the blur-fusion slope::

           A = (cov_w(a, I) + eps * (F_r - B_r)) / (var_w(a) + eps)    eps = 1e-3
           b = mean_w(I) - A * mean_w(a)
           F_fit = mean_w(b) + mean_w(A),   B_fit = mean_w(b)         (window means)

       computed on the 1/4-scale level with an 8 px (full resolution) window radius at
       AISegment size (both scaled with the image side; at least the 1/2-scale level and
       4 px): averaging keeps the model linear, and it averages out JPEG noise and chroma
       subsampling.  ``F_fit``, ``B_fit`` are interpolated bilinearly at the full
       resolution fractional pixels, where the per-pixel least-squares problem
       ``min_F (a*F + (1-a)*B_fit - I)^2 + lam*(1-a)*|F - F_fit|^2`` is solved::

           F = I                                                        where a = 1
           F = F_r (resized)                                            where a = 0
           F = clip(F_fit + a * R / (a^2 + lam * (1 - a)), 0, 1)        elsewhere, lam = 0.5

       with ``R = I - a*F_fit - (1-a)*B_fit`` (gathered: work proportional to the soft
       region).  Box filters are ``cv2.blur`` (running sums: O(H * W) whatever the
       radius); the full-resolution work is a few copies plus the fractional pixels.

    ``benchmarks/foreground_estimation.py`` compares it with the multi-level method (ML)
    on synthetic composites with known ``F`` (numbers in ``docs/compositing.md``).

``"blur_fusion_v1"``
    The default before ``"blur_fusion"`` replaced it: stage 1 with a fourth pass ``(6, 4)``,
    then a background refinement (the background implied by the regularised ``F``,
    ``(I - a*F) / (1 - a)`` where ``a <= 0.9``, re-blurred over 8 px) and the per-pixel
    update above against ``F_r``, ``B_r`` with ``lam = 0.3``.  Kept to reproduce
    datasets built with it, and for comparison.

``"blur_fusion_fine"``
    ``"blur_fusion"`` plus one full-resolution local refinement of the faint pixels
    (``0 < a < 0.8``, :func:`_local_refine`): each takes the colour of the more opaque
    pixels nearby (weights ``a^2``) against the background its neighbours imply.
    A little lower error on lossless inputs, higher on JPEG ones, about 4x the time.

``"ml"``
    The multi-level method of Germer et al. as implemented by ``pymatting``
    (``estimate_foreground_ml``); needs the optional ``pymatting`` package and is much
    slower.  Kept as a reference and for users who want it.

``"blur_fusion_paper"``
    The paper's two-pass estimator (radii 90 then 6, plain update), for comparison.

``"none"``
    ``F = I`` (the raw photo; what the old research code did).  For comparisons only.

Why hand-written: the algorithm is a handful of OpenCV calls; depending on ``pymatting``
(numba) would pull a JIT compiler into every build worker for a 10x slower result
(``benchmarks/foreground_estimation.py`` measures both).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from matdata.errors import ConfigError
from matdata.registry import Registry


class UnknownMethodError(ConfigError, ValueError):
    """An unknown foreground method (also a ``ValueError``, as it always was)."""


#: The estimators by method name: ``ESTIMATORS.create(method, rgb, alpha, passes=...)``
#: (uint8 in, uint8 ``(H, W, 3)`` out; ``passes`` matters to the blur-fusion family only).
ESTIMATORS: Registry = Registry("foreground method", error=UnknownMethodError)

#: Passes of ``"blur_fusion_v1"`` as ``(radius, factor)``: a box blur of ``radius`` pixels
#: (full-resolution units) computed on the image downscaled by ``factor``.
PASSES: tuple[tuple[int, int], ...] = ((128, 16), (48, 8), (16, 4), (6, 4))
#: Passes of the default estimator, whose local fit (:func:`_local_fit`) replaces the last
#: pass and the background refinement of ``"blur_fusion_v1"``.
FIT_PASSES: tuple[tuple[int, int], ...] = PASSES[:3]
#: The paper's two radii (full resolution).
PAPER_RADII = (90, 6)
#: Regularisation weight of the last, full-resolution update (``"blur_fusion_v1"``).
LAM = 0.3
#: The same for the default method (against the local fit's ``F_fit``, ``B_fit``).
LAM_FIT = 0.5
#: Weight of the previous estimate in each blur (keeps F defined far from the subject).
_PRIOR = 1e-4
#: Alpha at or below which a level's background is anchored to the image itself.
_ANCHOR = 0.05
#: Radius (full-resolution pixels) of the final background refinement.
_REFINE_RADIUS = 8
#: Regularisation of the final local refinement (:func:`_local_refine`).
_LAM_LOCAL = 1.0
_REF_SIDE = 700.0
#: Local linear fit (:func:`_local_fit`): pyramid factor and window radius (full-resolution
#: pixels) at AISegment size, both scaled with the image side, with their minimums, and the
#: regularisation towards the blur-fusion slope (alpha units squared).
_FIT_FACTOR = 4
_FIT_RADIUS = 8
_FIT_MIN_FACTOR = 2
_FIT_MIN_RADIUS = 4
_FIT_EPS = 1e-3


def pass_schedule(
    height: int, width: int, base: Sequence[tuple[int, int]] = PASSES
) -> tuple[tuple[int, int], ...]:
    """``base`` (default :data:`PASSES`) scaled by ``k = max(1, sqrt(H*W) / 700)`` (radius
    and factor alike).

    Radii are absolute (pixels) for images up to about 600x800 (AISegment size): the first
    pass must reach colours deep inside the subject even in small images.  A scaled factor
    is rounded to the nearest power of 2 (in log scale: the pyramid halves level by level),
    and lowered where the image is too small for it (at least 4 px per side remain).
    """
    k = max(1.0, math.sqrt(height * width) / _REF_SIDE)
    out = []
    for r, d in base:
        f = 1 << max(0, round(math.log2(max(1.0, d * k))))
        while f > 1 and min(height, width) / f < 4:
            f //= 2
        out.append((max(1, round(r * k)), f))
    return tuple(out)


def _box(x: np.ndarray, r: int) -> np.ndarray:
    import cv2

    k = 2 * r + 1
    return cv2.blur(x, (k, k), borderType=cv2.BORDER_REFLECT)


def _blur_fr_br(
    a1: np.ndarray, f: np.ndarray, b: np.ndarray, r: int, prior: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(F_r, B_r, a3, 1 - a3)`` at one level (float32, 3 channels, same shape).

    With ``prior``, ``F_r = (blur(F*a) + e*F) / (blur(a) + e)`` (and alike for ``B_r``):
    where no alpha is within reach ``F_r`` keeps the previous estimate instead of
    collapsing to black, so ``F`` stays a smooth extension of the subject's colours.
    """
    import cv2

    eps = np.float32(_PRIOR if prior else 1e-5)
    a3 = cv2.merge((a1, a1, a1))
    one_a3 = 1.0 - a3
    ab = _box(a1, r)
    inv_f = 1.0 / (ab + eps)
    inv_b = 1.0 / ((1.0 - ab) + eps)
    fr = _box(f * a3, r)
    br = _box(b * one_a3, r)
    if prior:
        fr += eps * f
        br += eps * b
    fr *= cv2.merge((inv_f, inv_f, inv_f))
    br *= cv2.merge((inv_b, inv_b, inv_b))
    return fr, br, a3, one_a3


def _blur_b(a1: np.ndarray, one_a3: np.ndarray, b: np.ndarray, r: int) -> np.ndarray:
    """``B_r = (blur(B*(1-a)) + e*B) / (blur(1-a) + e)`` (see :func:`_blur_fr_br`)."""
    import cv2

    eps = np.float32(_PRIOR)
    inv_b = 1.0 / ((1.0 - _box(a1, r)) + eps)
    br = _box(b * one_a3, r)
    br += eps * b
    br *= cv2.merge((inv_b, inv_b, inv_b))
    return br


def _paper_update(
    image: np.ndarray, fr: np.ndarray, br: np.ndarray, a3: np.ndarray, one_a3: np.ndarray
) -> np.ndarray:
    """``clip(F_r + a * (I - a*F_r - (1-a)*B_r), 0, 1)``."""
    resid = image - a3 * fr
    resid -= one_a3 * br
    resid *= a3
    resid += fr
    np.clip(resid, 0.0, 1.0, out=resid)
    return resid


def blur_fusion(
    image: np.ndarray, alpha: np.ndarray, radii: Sequence[int] = PAPER_RADII
) -> np.ndarray:
    """The paper's blur fusion at full resolution (float32 ``(H, W, 3)`` in [0, 1]).

    ``image``: float32 ``(H, W, 3)`` in [0, 1]; ``alpha``: float32 ``(H, W)`` in [0, 1];
    the plain update of the module docstring for each radius in turn.
    """
    f = b = image
    for r in radii:
        fr, br, a3, one_a3 = _blur_fr_br(alpha, f, b, r)
        f, b = _paper_update(image, fr, br, a3, one_a3), br
    return f


class _Pyramid:
    """uint8 levels of ``(rgb, alpha)`` by successive halving (bilinear at scale 1/2
    averages each 2x2 block: area resampling for even sizes, and OpenCV's fastest path)
    down to ``max_factor``; :meth:`level` gives a level as float32 in [0, 1] (cached)."""

    def __init__(self, rgb: np.ndarray, alpha: np.ndarray, max_factor: int):
        import cv2

        self.u8: dict[int, tuple[np.ndarray, np.ndarray]] = {1: (rgb, alpha)}
        d = 1
        while d < max_factor:
            i8, a8 = self.u8[d]
            size = ((i8.shape[1] + 1) // 2, (i8.shape[0] + 1) // 2)
            d *= 2
            self.u8[d] = (
                cv2.resize(i8, size, interpolation=cv2.INTER_LINEAR),
                cv2.resize(a8, size, interpolation=cv2.INTER_LINEAR),
            )
        self._f32: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def max_factor(self) -> int:
        return max(self.u8)

    def level(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        if d not in self._f32:
            if d not in self.u8:
                raise ValueError(f"pass factors must be powers of 2, got {d}")
            i8, a8 = self.u8[d]
            i32, a32 = i8.astype(np.float32), a8.astype(np.float32)
            i32 *= np.float32(1 / 255)
            a32 *= np.float32(1 / 255)
            self._f32[d] = (i32, a32)
        return self._f32[d]


def _fusion_passes(
    pyr: _Pyramid, passes: Sequence[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Stage 1 of the module docstring: ``(F_r, B_r, factor)`` of the last pass.

    Pass ``i`` blurs with radius ``r_i / d_i`` on the level downscaled by ``d_i`` and
    applies the plain update there; its ``F``/``B`` are bilinearly resized to the next
    level.  The last pass only provides ``F_r``, ``B_r`` (at its level's size)."""
    import cv2

    f = b = None
    fr = br = None
    d = 1
    for i, (r, d) in enumerate(passes):
        image, a1 = pyr.level(d)
        lh, lw = a1.shape
        if f is None or b is None:
            f = b = image
        elif f.shape[:2] != (lh, lw):
            f = cv2.resize(f, (lw, lh), interpolation=cv2.INTER_LINEAR)
            b = cv2.resize(b, (lw, lh), interpolation=cv2.INTER_LINEAR)
        if i > 0:  # anchor B: it is the image itself where alpha is (nearly) zero
            cv2.copyTo(image, (a1 <= _ANCHOR).astype(np.uint8), b)
        fr, br, a3, one_a3 = _blur_fr_br(a1, f, b, max(1, round(r / d)), prior=True)
        if i < len(passes) - 1:
            f, b = _paper_update(image, fr, br, a3, one_a3), br
    assert fr is not None and br is not None
    return fr, br, d


def _schedule(
    alpha: np.ndarray, passes: Sequence[tuple[int, int]] | None, base: Sequence[tuple[int, int]]
) -> tuple[tuple[int, int], ...]:
    return tuple(passes) if passes else pass_schedule(*alpha.shape, base)


def _resized_u8(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """float32 [0, 1] -> uint8 (rounded, saturated), bilinearly resized to ``(h, w)``."""
    import cv2

    x8 = cv2.convertScaleAbs(x, alpha=255.0)
    if x8.shape[:2] != (h, w):
        x8 = cv2.resize(x8, (w, h), interpolation=cv2.INTER_LINEAR)
    return x8


def _soft_update(
    rgb: np.ndarray,
    alpha: np.ndarray,
    fr: np.ndarray,
    lam: float,
    f_b: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Full resolution: ``F = F_r`` (``fr``, uint8 at full size) everywhere, ``F = I`` where
    ``a = 1``, and the regularised update against ``f_b(out, idx)`` (the ``(F, B)`` rows,
    float32) at the fractional pixels, gathered (work proportional to the soft region).
    Returns ``(F, flat indices of the fractional pixels)``."""
    import cv2

    out = fr
    # F = I where a = 1 (numpy compare: OpenCV takes a 1x1 array for a scalar there)
    cv2.copyTo(rgb, np.greater(alpha, 254).view(np.uint8), out)
    a_flat = alpha.reshape(-1)
    idx = np.flatnonzero((a_flat - np.uint8(1)) < 254)  # 0 < a < 255 (uint8 wrap-around)
    if idx.size:
        a = a_flat[idx].astype(np.float32)[:, None] * np.float32(1 / 255)
        one_a = 1.0 - a
        img = _take_rows(rgb, idx).astype(np.float32)
        f_r, b_r = f_b(out, idx)
        resid = img - a * f_r - one_a * b_r
        f_new = f_r + a * resid / (a * a + np.float32(lam) * one_a)
        _put_rows(out, idx, np.clip(np.rint(f_new), 0, 255).astype(np.uint8))
    return out, idx


@ESTIMATORS.register("blur_fusion")
def estimate_blur_fusion(
    rgb: np.ndarray,
    alpha: np.ndarray,
    passes: Sequence[tuple[int, int]] | None = None,
    lam: float = LAM_FIT,
) -> np.ndarray:
    """The default method (uint8 in, uint8 ``(H, W, 3)`` out; module docstring): blur
    fusion with :data:`FIT_PASSES` (scaled, :func:`pass_schedule`), the local linear fit
    (:func:`_local_fit`), and the per-pixel update against its ``F_fit``, ``B_fit``."""
    return _fit_estimate(rgb, alpha, passes, lam)[0]


@ESTIMATORS.register("blur_fusion_fine")
def estimate_blur_fusion_fine(
    rgb: np.ndarray,
    alpha: np.ndarray,
    passes: Sequence[tuple[int, int]] | None = None,
    lam: float = LAM_FIT,
) -> np.ndarray:
    """:func:`estimate_blur_fusion` plus one full-resolution refinement of the faint
    pixels (:func:`_local_refine`)."""
    out, idx = _fit_estimate(rgb, alpha, passes, lam)
    if idx.size:
        h, w = alpha.shape
        _local_refine(rgb, alpha, out, idx, max(2, round(2 * math.sqrt(h * w) / _REF_SIDE)))
    return out


def _fit_estimate(
    rgb: np.ndarray, alpha: np.ndarray, passes: Sequence[tuple[int, int]] | None, lam: float
) -> tuple[np.ndarray, np.ndarray]:
    h, w = alpha.shape
    passes = _schedule(alpha, passes, FIT_PASSES)
    pyr = _Pyramid(rgb, alpha, max(p[1] for p in passes))
    fr, br, _ = _fusion_passes(pyr, passes)
    fit = _local_fit(pyr.u8, pyr.level, fr - br, h, w, pyr.max_factor)
    return _soft_update(
        rgb, alpha, _resized_u8(fr, h, w), lam, lambda _out, idx: _sample_fit(fit, idx, h, w)
    )


@ESTIMATORS.register("blur_fusion_v1")
def estimate_blur_fusion_v1(
    rgb: np.ndarray,
    alpha: np.ndarray,
    passes: Sequence[tuple[int, int]] | None = None,
    lam: float = LAM,
) -> np.ndarray:
    """The previous default (module docstring): blur fusion with :data:`PASSES`, a
    background refinement at the last level, and the per-pixel update against the
    resized ``F_r``, ``B_r``."""
    import cv2

    h, w = alpha.shape
    passes = _schedule(alpha, passes, PASSES)
    pyr = _Pyramid(rgb, alpha, max(p[1] for p in passes))
    fr, br, d = _fusion_passes(pyr, passes)
    image, a1 = pyr.level(d)
    a3 = cv2.merge((a1, a1, a1))
    one_a3 = 1.0 - a3
    # refine B once at the last level: the background implied by the regularised F,
    # (I - a*F) / (1 - a), where it is well conditioned (a <= 0.9), re-blurred locally
    r_ref = max(1, round(_REFINE_RADIUS / d))
    one_a1 = 1.0 - a1
    gain = a1 / (a1 * a1 + np.float32(lam) * one_a1)  # 1 channel, then broadcast by merge
    inv_oa = 1.0 / np.maximum(one_a1, np.float32(1e-3))
    f_reg = image - a3 * fr
    f_reg -= one_a3 * br
    f_reg *= cv2.merge((gain, gain, gain))
    f_reg += fr
    np.clip(f_reg, 0.0, 1.0, out=f_reg)
    f_reg *= a3
    b_imp = np.subtract(image, f_reg, out=f_reg)
    b_imp *= cv2.merge((inv_oa, inv_oa, inv_oa))
    np.clip(b_imp, 0.0, 1.0, out=b_imp)
    cv2.copyTo(br, (a1 > 0.9).astype(np.uint8), b_imp)
    br = _blur_b(a1, one_a3, b_imp, r_ref)
    br8 = _resized_u8(br, h, w)

    def rows(out: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _take_rows(out, idx).astype(np.float32), _take_rows(br8, idx).astype(np.float32)

    return _soft_update(rgb, alpha, _resized_u8(fr, h, w), lam, rows)[0]


_PIXEL = np.dtype((np.void, 3))  # one RGB pixel as a single item (fast row gather/scatter)


def _take_rows(img: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``img.reshape(-1, 3)[idx]`` for a contiguous uint8 ``(H, W, 3)`` image, faster."""
    flat = np.ascontiguousarray(img).reshape(-1, 3).view(_PIXEL).reshape(-1)
    return np.take(flat, idx).view(np.uint8).reshape(-1, 3)


def _put_rows(img: np.ndarray, idx: np.ndarray, rows: np.ndarray) -> None:
    """``img.reshape(-1, 3)[idx] = rows`` in place (``img`` contiguous uint8), faster."""
    assert img.flags.c_contiguous  # else reshape would copy and the writes be lost
    flat = img.reshape(-1, 3).view(_PIXEL).reshape(-1)
    np.put(flat, idx, np.ascontiguousarray(rows).view(_PIXEL).reshape(-1))


def _local_fit(
    pyr: dict[int, tuple[np.ndarray, np.ndarray]],
    level,  # Callable[[int], tuple[np.ndarray, np.ndarray]]
    prior: np.ndarray,
    h: int,
    w: int,
    max_factor: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Local linear fit of the image against alpha (module docstring) on a pyramid level:
    the window means of the coefficients ``(F, B)``, float32 3-channel arrays in uint8
    units at that level.  Level factor ``~4 * k`` (a power of 2, at least 2) and window
    radius ``max(8 * k, 4)`` full-resolution pixels, ``k = sqrt(H*W) / 700``.

    ``prior`` is ``F_r - B_r`` of the last blur-fusion pass (any level): where alpha is
    flat in a window the slope falls back to it.
    """
    import cv2

    # scaled with the image side, small images included (a fixed window is too coarse
    # there): the power of 2 nearest to 4 * k but at least 2 (JPEG's chroma is at half
    # resolution, its blocks 8 px whatever the image size), >= 8 px per side on the level
    k = math.sqrt(h * w) / _REF_SIDE
    d = 1
    while (
        d * 2 <= max_factor
        and (d * 2 <= _FIT_FACTOR * k * math.sqrt(2) or d < _FIT_MIN_FACTOR)
        and min(h, w) / (d * 2) >= 8
    ):
        d *= 2
    image, a1 = level(d)
    lh, lw = a1.shape
    if prior.shape[:2] != (lh, lw):
        prior = cv2.resize(prior, (lw, lh), interpolation=cv2.INTER_LINEAR)
    r = max(1, round(max(_FIT_RADIUS * k, _FIT_MIN_RADIUS) / d))
    eps = np.float32(_FIT_EPS)
    ma = _box(a1, r)
    var = _box(a1 * a1, r)
    var -= ma * ma
    var += eps
    ma3 = cv2.merge((ma, ma, ma))
    mi = _box(image, r)
    cov = _box(image * cv2.merge((a1, a1, a1)), r)
    cov -= ma3 * mi
    cov += eps * prior  # (smooth already: no window mean needed)
    slope = cov
    slope /= cv2.merge((var, var, var))  # F - B in the window
    mi -= slope * ma3  # intercept: B in the window
    f = _box(slope, r)
    b = _box(mi, r)
    f += b
    f *= np.float32(255)
    b *= np.float32(255)
    return f, b


def _sample_fit(
    fit: tuple[np.ndarray, np.ndarray], idx: np.ndarray, h: int, w: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(F, B)`` of :func:`_local_fit` bilinearly interpolated at the full-resolution flat
    indices ``idx`` (``(N, 3)`` float32 each), with ``cv2.resize``'s pixel-centre mapping."""
    import cv2

    f, b = fit
    lh, lw = f.shape[:2]
    ys, xs = np.divmod(idx, w)
    mx = (xs.astype(np.float32) + np.float32(0.5)) * np.float32(lw / w) - np.float32(0.5)
    my = (ys.astype(np.float32) + np.float32(0.5)) * np.float32(lh / h) - np.float32(0.5)
    mx, my = mx.reshape(1, -1), my.reshape(1, -1)
    # remap wants fewer than 32767 points per row: fold the list into rows of 4096
    n = mx.shape[1]
    cols = min(n, 4096)
    rows = -(-n // cols)
    pad = rows * cols - n
    if pad:
        mx = np.concatenate((mx, np.zeros((1, pad), np.float32)), axis=1)
        my = np.concatenate((my, np.zeros((1, pad), np.float32)), axis=1)
    mx, my = mx.reshape(rows, cols), my.reshape(rows, cols)
    out = []
    for x in (f, b):
        v = cv2.remap(x, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out.append(v.reshape(-1, 3)[:n])
    return out[0], out[1]


def _local_refine(
    rgb: np.ndarray, alpha: np.ndarray, out: np.ndarray, idx: np.ndarray, r: int
) -> None:
    """One full-resolution refinement of ``out`` (uint8 F, in place) at pixels with
    ``0 < a < 0.8``, computed over the bounding box of the soft region::

        F_w = blur_r(F * a^2) / blur_r(a^2)                   confident neighbours' colour
        B_w = blur_r((I - a*F) * (1-a)) / blur_r((1-a)^2)     implied background, weighted
        F   = clip(F_w + a * R / (a^2 + lam_l * (1 - a)))     R = I - a*F_w - (1-a)*B_w

    (``(I - a*F) / (1 - a)`` is the background implied by ``F``, weighted by ``(1-a)^2``.)
    Faint strands take the colour of the nearby, more opaque part of the same strand
    instead of the coarse estimate; ``lam_l = 1``, ``r`` = 2 px at AISegment size.
    """
    import cv2

    h, w = alpha.shape
    ys, xs = np.divmod(idx, w)
    y0, y1 = max(0, int(ys.min()) - r), min(h, int(ys.max()) + r + 1)
    x0, x1 = max(0, int(xs.min()) - r), min(w, int(xs.max()) + r + 1)
    a8 = alpha[y0:y1, x0:x1]
    a1 = a8.astype(np.float32)
    a1 *= np.float32(1 / 255)
    one_a1 = 1.0 - a1
    img = rgb[y0:y1, x0:x1].astype(np.float32)
    f = out[y0:y1, x0:x1].astype(np.float32)
    wf = a1 * a1
    num_f = _box(f * cv2.merge((wf, wf, wf)), r)
    f *= cv2.merge((a1, a1, a1))
    np.subtract(img, f, out=f)  # I - a*F
    f *= cv2.merge((one_a1, one_a1, one_a1))
    num_b = _box(f, r)
    den_f = _box(wf, r)
    den_b = _box(one_a1 * one_a1, r)
    sel = (a8 > 0) & (a8 < 204)  # 0 < a < 0.8
    a = a1[sel][:, None]
    fw = num_f[sel] / (den_f[sel][:, None] + np.float32(1e-6))
    bw = num_b[sel] / (den_b[sel][:, None] + np.float32(1e-6))
    resid = img[sel] - a * fw - (1.0 - a) * bw
    f_new = fw + a * resid / (a * a + np.float32(_LAM_LOCAL) * (1.0 - a))
    out[y0:y1, x0:x1][sel] = np.clip(np.rint(f_new), 0, 255).astype(np.uint8)


def estimate_foreground(
    rgb: np.ndarray,
    alpha: np.ndarray,
    method: str = "blur_fusion",
    passes: Sequence[tuple[int, int]] | None = None,
) -> np.ndarray:
    """Foreground colours ``F`` (uint8 ``(H, W, 3)``) of ``rgb`` (uint8 ``(H, W, 3)``) under
    ``alpha`` (uint8 ``(H, W)``), such that ``rgb ~= a*F + (1-a)*B_orig`` with ``a=alpha/255``.

    ``F`` is defined everywhere; it only matters where ``alpha > 0``.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if alpha.shape != rgb.shape[:2] or alpha.dtype != np.uint8:
        raise ValueError(
            f"alpha must be (H, W) uint8 matching rgb {rgb.shape[:2]}, got {alpha.shape}"
        )
    return ESTIMATORS.create(method, rgb, alpha, passes=passes)


def _float_estimator(
    rgb: np.ndarray, alpha: np.ndarray, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    image = rgb.astype(np.float32) * np.float32(1 / 255)
    a = alpha.astype(np.float32) * np.float32(1 / 255)
    return np.rint(fn(image, a) * 255.0).astype(np.uint8)


@ESTIMATORS.register("blur_fusion_paper")
def _paper_estimator(rgb: np.ndarray, alpha: np.ndarray, passes: object = None) -> np.ndarray:
    return _float_estimator(rgb, alpha, lambda image, a: blur_fusion(image, a, PAPER_RADII))


@ESTIMATORS.register("ml")
def _ml_estimator(rgb: np.ndarray, alpha: np.ndarray, passes: object = None) -> np.ndarray:
    return _float_estimator(rgb, alpha, _pymatting_ml)


@ESTIMATORS.register("none")
def _none_estimator(rgb: np.ndarray, alpha: np.ndarray, passes: object = None) -> np.ndarray:
    return rgb.copy()


#: Every method name ``estimate_foreground`` accepts.
METHODS: tuple[str, ...] = tuple(ESTIMATORS.names())


def _pymatting_ml(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    try:
        from pymatting import estimate_foreground_ml
    except ImportError as exc:
        from matdata.errors import ConfigError

        raise ConfigError(
            "foreground method 'ml' needs the pymatting package",
            hint="pip install pymatting, or use --fg-estimator blur_fusion",
        ) from exc
    f = estimate_foreground_ml(image.astype(np.float64), alpha.astype(np.float64))
    return np.clip(f, 0.0, 1.0).astype(np.float32)
