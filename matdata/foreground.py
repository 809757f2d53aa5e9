"""Foreground colour estimation: recover ``F`` from a photo ``I`` and its alpha ``a``.

A photo of a subject is ``I = a * F + (1 - a) * B_orig``.  Compositing the photo itself
onto a new background (``a * I + (1 - a) * B_new``) keeps ``a * (1 - a) * B_orig`` in
every soft pixel: the old background shows as a halo in hair and edges.  Estimating ``F``
first and compositing ``a * F + (1 - a) * B_new`` removes it.

Methods (``estimate_foreground(..., method=...)``):

``"blur_fusion"`` (default)
    Multi-scale blur fusion, after "Approximate fast foreground colour estimation"
    (Forte & Pitie, ICIP 2021), written here from the paper's equations.  With
    ``blur_r`` a normalised box filter of radius ``r``::

        F_r = blur_r(F * a) / blur_r(a)              local mean fg colour, weighted by a
        B_r = blur_r(B * (1 - a)) / blur_r(1 - a)    local mean bg colour
        R   = I - a * F_r - (1 - a) * B_r            residual of the compositing equation
        F  <- clip(F_r + a * R, 0, 1)                (coarse passes: the paper's update)
        B  <- B_r

    starting from ``F = B = I``.  Passes ``(radius, factor)`` = ``(128, 16), (48, 8),
    (16, 4), (6, 4)`` (radius in full-resolution pixels; scaled up above ~0.5 MP,
    :func:`pass_schedule`): each pass runs on the image downscaled by its factor (a
    pyramid of 2x2 averages), so the wide blurs cost almost nothing; ``F`` and ``B`` are
    resized bilinearly from level to level.  Changes to the paper, each measured:

    * each blur also weighs in the previous estimate with a tiny weight
      (``F_r = (blur(F*a) + e*F) / (blur(a) + e)``, ``e = 1e-4``), so ``F`` stays
      defined (not black) away from the subject;
    * before each pass ``B`` is reset to ``I`` where the level's alpha is <= 0.05 (there
      the image *is* the background), so ``B`` keeps sharp scene edges behind hair;
    * after the last pass, ``B`` is refined once: the background implied by the
      regularised ``F`` below, ``(I - a*F) / (1 - a)`` where ``a <= 0.9``, re-blurred with
      an 8 px radius;
    * at full resolution the per-pixel least-squares problem
      ``min_F (a*F + (1-a)*B_r - I)^2 + lam*(1-a)*|F - F_r|^2`` is solved::

        F = I                                                  where a = 1
        F = F_r                                                where a = 0
        F = clip(F_r + a * R / (a^2 + lam * (1 - a)), 0, 1)    elsewhere, lam = 0.3

      (trusting the data where alpha is high, the smooth estimate where it is small),
      only on the fractional pixels, so the full-resolution cost is a few copies plus
      work proportional to the soft region.

    ``benchmarks/foreground_estimation.py`` compares it with the multi-level method (ML)
    on synthetic composites with known ``F`` (numbers in ``docs/compositing.md``): about
    10x faster; ML's error is lower on hard cases (wide semi-transparent fringes over
    sharp, high-contrast scene edges), where its propagation along alpha gradients wins.
    Box filters are ``cv2.blur`` (running sums: O(H * W) whatever the radius).

``"blur_fusion_fine"``
    ``"blur_fusion"`` plus one full-resolution local refinement of the faint pixels
    (``0 < a < 0.8``, :func:`_local_refine`): each takes the colour of the more opaque
    pixels nearby (weights ``a^2``) against the background its neighbours imply.
    Markedly lower error on lossless inputs, a little on JPEG ones, about 3x the time.

``"ml"``
    The multi-level method of Germer et al. as implemented by ``pymatting``
    (``estimate_foreground_ml``); needs the optional ``pymatting`` package and is much
    slower.  Kept as a reference and for users who want it.

``"blur_fusion_paper"``
    The paper's two-pass estimator (radii 90 then 6, plain update), for comparison.

``"none"``
    ``F = I`` (the raw photo; what the old research code did).  For comparisons only.

Why hand-written: the algorithm is a handful of OpenCV calls; depending on ``pymatting``
(numba) for it would pull a JIT compiler into every build worker for a 10x slower result
(``benchmarks/foreground_estimation.py`` measures both).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

METHODS = ("blur_fusion", "blur_fusion_fine", "blur_fusion_paper", "ml", "none")

#: Passes of the default estimator as ``(radius, factor)``: a box blur of ``radius`` pixels
#: (full-resolution units) computed on the image downscaled by ``factor``.
PASSES: tuple[tuple[int, int], ...] = ((128, 16), (48, 8), (16, 4), (6, 4))
#: The paper's two radii (full resolution).
PAPER_RADII = (90, 6)
#: Regularisation weight of the last, full-resolution update.
LAM = 0.3
#: Weight of the previous estimate in each blur (keeps F defined far from the subject).
_PRIOR = 1e-4
#: Alpha at or below which a level's background is anchored to the image itself.
_ANCHOR = 0.05
#: Radius (full-resolution pixels) of the final background refinement.
_REFINE_RADIUS = 8
#: Regularisation of the final local refinement (:func:`_local_refine`).
_LAM_LOCAL = 1.0
_REF_SIDE = 700.0


def pass_schedule(height: int, width: int) -> tuple[tuple[int, int], ...]:
    """:data:`PASSES` scaled by ``k = max(1, sqrt(H*W) / 700)`` (radius and factor alike).

    Radii are absolute (pixels) for images up to about 600x800 (AISegment size): the first
    pass must reach colours deep inside the subject even in small images.  A factor is
    lowered where the image is too small for it (at least 4 px per side remain).
    """
    k = max(1.0, math.sqrt(height * width) / _REF_SIDE)
    out = []
    for r, d in PASSES:
        f = max(1, round(d * k))
        while f > 1 and min(height, width) / f < 4:
            f //= 2
        out.append((max(1, round(r * k)), f))
    return tuple(out)


def _box(x: np.ndarray, r: int) -> np.ndarray:
    import cv2

    k = 2 * r + 1
    return cv2.blur(x, (k, k), borderType=cv2.BORDER_REFLECT)


def _blur_fr_br(
    image: np.ndarray, a1: np.ndarray, f: np.ndarray, b: np.ndarray, r: int, prior: bool = False
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
        fr, br, a3, one_a3 = _blur_fr_br(image, alpha, f, b, r)
        f, b = _paper_update(image, fr, br, a3, one_a3), br
    return f


def multiscale_blur_fusion(
    rgb: np.ndarray,
    alpha: np.ndarray,
    passes: Sequence[tuple[int, int]] | None = None,
    lam: float = LAM,
    refine: bool = False,
) -> np.ndarray:
    """Multi-scale blur fusion (uint8 in, uint8 ``(H, W, 3)`` out); see the module docstring.

    ``refine`` adds :func:`_local_refine` (method ``"blur_fusion_fine"``).

    Pass ``i`` blurs with radius ``r_i / d_i`` on the image area-downscaled by ``d_i`` and
    applies the plain update there; its ``F``/``B`` are bilinearly resized to the next
    level.  The last pass only provides ``F_r``, ``B_r``: they are resized to full
    resolution, where ``F = I`` on opaque pixels, ``F = F_r`` on transparent ones and the
    regularised update on the fractional ones (gathered, so the cost is proportional to
    the soft region only).
    """
    import cv2

    h, w = alpha.shape
    passes = tuple(passes) if passes else pass_schedule(h, w)
    # pyramid of uint8 levels by successive halving: bilinear at scale 1/2 averages each
    # 2x2 block (= area resampling for even sizes) and is OpenCV's fastest path
    pyr: dict[int, tuple[np.ndarray, np.ndarray]] = {1: (rgb, alpha)}
    d = 1
    while d < max(p[1] for p in passes):
        i8, a8 = pyr[d]
        size = ((i8.shape[1] + 1) // 2, (i8.shape[0] + 1) // 2)
        d *= 2
        pyr[d] = (
            cv2.resize(i8, size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(a8, size, interpolation=cv2.INTER_LINEAR),
        )
    levels: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def level(d: int) -> tuple[np.ndarray, np.ndarray]:
        if d not in levels:
            if d not in pyr:
                raise ValueError(f"pass factors must be powers of 2, got {d}")
            i8, a8 = pyr[d]
            i32, a32 = i8.astype(np.float32), a8.astype(np.float32)
            i32 *= np.float32(1 / 255)
            a32 *= np.float32(1 / 255)
            levels[d] = (i32, a32)
        return levels[d]

    f = b = None
    fr = br = None
    for i, (r, d) in enumerate(passes):
        image, a1 = level(d)
        lh, lw = a1.shape
        if f is None or b is None:
            f = b = image
        elif f.shape[:2] != (lh, lw):
            f = cv2.resize(f, (lw, lh), interpolation=cv2.INTER_LINEAR)
            b = cv2.resize(b, (lw, lh), interpolation=cv2.INTER_LINEAR)
        if i > 0:  # anchor B: it is the image itself where alpha is (nearly) zero
            cv2.copyTo(image, (a1 <= _ANCHOR).astype(np.uint8), b)
        fr, br, a3, one_a3 = _blur_fr_br(image, a1, f, b, max(1, round(r / d)), prior=True)
        if i < len(passes) - 1:
            f, b = _paper_update(image, fr, br, a3, one_a3), br
    assert fr is not None and br is not None
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

    # full resolution: F_r, B_r resized (uint8 is plenty for a smooth field), then the update
    fr8 = cv2.convertScaleAbs(fr, alpha=255.0)  # rounds and saturates to uint8
    br8 = cv2.convertScaleAbs(br, alpha=255.0)
    if fr8.shape[:2] != (h, w):
        fr8 = cv2.resize(fr8, (w, h), interpolation=cv2.INTER_LINEAR)
        br8 = cv2.resize(br8, (w, h), interpolation=cv2.INTER_LINEAR)
    out = fr8
    opaque = (alpha == 255).astype(np.uint8)
    cv2.copyTo(rgb, opaque, out)
    a_flat = alpha.reshape(-1)
    idx = np.flatnonzero((a_flat > 0) & (a_flat < 255))
    if idx.size:
        o = out.reshape(-1, 3)
        a = a_flat[idx].astype(np.float32)[:, None] * np.float32(1 / 255)
        one_a = 1.0 - a
        img = rgb.reshape(-1, 3)[idx].astype(np.float32)
        f_r = o[idx].astype(np.float32)
        b_r = br8.reshape(-1, 3)[idx].astype(np.float32)
        resid = img - a * f_r - one_a * b_r
        f_new = f_r + a * resid / (a * a + np.float32(lam) * one_a)
        o[idx] = np.clip(np.rint(f_new), 0, 255).astype(np.uint8)
        if refine:
            r_loc = max(2, round(2 * math.sqrt(h * w) / _REF_SIDE))
            _local_refine(rgb, alpha, out, idx, r_loc)
    return out


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
    if method == "none":
        return rgb.copy()
    if method in ("blur_fusion", "blur_fusion_fine"):
        return multiscale_blur_fusion(rgb, alpha, passes, refine=method == "blur_fusion_fine")
    image = rgb.astype(np.float32) * np.float32(1 / 255)
    a = alpha.astype(np.float32) * np.float32(1 / 255)
    if method == "blur_fusion_paper":
        f = blur_fusion(image, a, PAPER_RADII)
    elif method == "ml":
        f = _pymatting_ml(image, a)
    else:
        raise ValueError(f"unknown foreground method {method!r}; choose one of {METHODS}")
    return np.rint(f * 255.0).astype(np.uint8)


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
