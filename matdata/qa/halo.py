"""Halo / colour-bleed score of one composite: a local two-colour model in the soft band.

A composite is ``C = a*F + (1-a)*B`` (``a = alpha / 255``).  When the build pastes the
source *photo* instead of an estimate of ``F`` (``--fg-estimator none``), the photo's
own backdrop ``B_orig`` comes along: ``C = a^2*F + a*(1-a)*B_orig + (1-a)*B``, i.e. the
band carries the extra term ``a*(1-a)*(B_orig - F)``, a colour that is neither the
subject's nor the new scene's, strongest at ``a = 1/2`` and absent at 0 and 1.

Definition (per record, uint8 RGB units)::

    band    = {13 <= alpha <= 242} inside the bbox of alpha > 0 (grown by r + 2)
    F_p     = mean colour of the opaque pixels (alpha >= 250) in the (2r+1)^2 box at p
    B_p     = mean colour of the transparent pixels (alpha <= 5) in that box, or the
              stored ``bg`` layer at p when the record has one (``--keep-layers``)
    r_p     = C_p - a_p*F_p - (1 - a_p)*B_p                 residual of the two-colour model
    v       = argmin_v sum_p |r_p - a_p*(1-a_p)*v|^2         (least squares, per channel)
    halo    = |v|                                            (Euclidean, RGB)

over the band pixels whose box holds at least 20 % opaque and 20 % transparent pixels
(:data:`LEVELS`), ``r = max(3, round(0.018*sqrt(H*W)))`` (4 px at 192x256), all on the
working scale: images whose shorter side is 512 px or more are first area-averaged by
``k = shorter side // 256`` (:data:`WORK_SIDE`; 2 at 512x512, r = 5 working pixels) over
``k x k`` blocks on the image's own grid (the window of the bbox starts on it).  ``v``
estimates the bleeding colour minus the subject colour: the residual of a clean
composite is noise without that shape (texture, JPEG), so its least-squares ``v`` stays
small, while a bleeding backdrop gives a consistent ``v``.  ``halo_px`` is the number of
band pixels used (at most :data:`MAX_BAND_PX`, an even subsample of a larger band); with
fewer than :data:`MIN_BAND_PX` (a binary / coarse mask, no soft edge) or an image side
under :data:`MIN_SIDE` the score is None.

Limits: ``B_p`` is a box mean, so a steep background gradient across the box biases it
(the reason small images are not scored); ``F_p`` is the colour of the *opaque*
neighbours, so a thin structure whose colour differs from the nearby solid subject (light
hair tips next to dark hair) adds to the score; a backdrop colour equal to the subject's
is invisible; an edge with no solid subject or no clean background within ``r`` pixels
(isolated strands, a soft edge wider than the box, a subject filling the frame) is not
measured.  The score needs the
composite in colour.  Cost: the bbox window at the working scale (read in place, no copy),
one 8-channel integral image of it (colour and count of the opaque and of the transparent
pixels) and arithmetic on the (subsampled, at most 2048) band pixels only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Shortest image side scored: below it the r >= 3 px boxes are coarse next to the scene's
#: structure (a background gradient across the box biases ``B_p``), so no score.
MIN_SIDE = 128
#: Band pixels a score needs (fewer: None): a shorter soft edge is too little to judge.
MIN_BAND_PX = 50
#: Alpha limits (uint8) of the band, the opaque and the transparent pixels.
BAND_LO, BAND_HI, OPAQUE, CLEAR = 13, 242, 250, 5
#: Share of a box that must be opaque (and transparent) for its band pixel to count.
MIN_SHARE = 0.2
#: Box radii tried per band pixel: r, 2r, ... (the first whose box holds both shares).  One:
#: larger boxes reach into the inside of hair, where the opaque neighbours' colour is not
#: the strands' (on the demo builds, 2 levels flagged 5 of 48 default-estimator records
#: instead of 0, 3 levels 25), so an edge wider than the box is not measured.
LEVELS = 1
#: Images with a shorter side of 2k * WORK_SIDE or more are scored on a 1/k area-average
#: of the bbox window (k = shorter side // WORK_SIDE): averaging keeps ``C = a*F + (1-a)*B``
#: where ``F`` and ``B`` are locally constant, and the bleed term stays positive.
WORK_SIDE = 256
#: Band pixels sampled at most (evenly, in reading order) per record.
MAX_BAND_PX = 2048


def halo_radius(h: int, w: int) -> int:
    """Box radius ``r`` of :func:`halo_score` for an ``h`` x ``w`` image."""
    return max(3, round(0.018 * float(np.sqrt(h * w))))


def halo_score(
    image: np.ndarray,
    alpha: np.ndarray,
    bg: np.ndarray | None = None,
    bbox: list[int] | None = None,
    half: np.ndarray | None = None,
) -> dict[str, Any]:
    """``{"halo": float | None, "halo_px": int}`` of a composite (module docstring).

    ``image``: ``(H, W, 3)`` uint8 (any channel order; ``bg`` in the same order, same
    size); ``alpha``: ``(H, W)`` uint8; ``bbox``: ``[x0, y0, x1, y1]`` of ``alpha > 0``
    when the caller has it (computed otherwise); ``half``: :func:`halve` of ``image``
    when the caller has it (the working image at ``k = 2``: the same score, read from it
    instead of averaging the window again).
    """
    import cv2

    if image.ndim != 3 or image.shape[:2] != alpha.shape:
        raise ValueError(f"image {image.shape} and alpha {alpha.shape} must be (H, W, 3), (H, W)")
    h, w = alpha.shape
    if bg is not None and bg.shape != image.shape:
        bg = None
    if bbox is None:
        x, y, bw, bh = cv2.boundingRect(alpha)
        bbox = [x, y, x + bw, y + bh]
    x0, y0, x1, y1 = bbox
    if x1 <= x0 or y1 <= y0 or min(h, w) < MIN_SIDE:
        return {"halo": None, "halo_px": 0}
    k = max(1, min(h, w) // WORK_SIDE)  # working scale: 1/k of the image
    r = halo_radius(h // k, w // k)  # in working pixels
    m = (r * 2 ** (LEVELS - 1) + 2) * k
    # the window starts on the k x k grid of the image, so that its average is a crop of
    # the whole image's (``half``)
    ya, xa = max(0, y0 - m) // k * k, max(0, x0 - m) // k * k
    yb, xb = ya + (min(h, y1 + m) - ya) // k * k, xa + (min(w, x1 + m) - xa) // k * k
    size = ((xb - xa) // k, (yb - ya) // k)

    def work(arr: np.ndarray) -> np.ndarray:  # C-contiguous, for the flat gathers below
        win = arr[ya:yb, xa:xb]  # OpenCV reads the window in place
        if k == 1:
            return np.ascontiguousarray(win)
        return cv2.resize(win, size, interpolation=cv2.INTER_AREA)

    def work_image() -> np.ndarray:
        if k == 2 and half is not None and half.shape == (h // 2, w // 2, 3):
            return np.ascontiguousarray(half[ya // 2 : yb // 2, xa // 2 : xb // 2])
        return work(image)

    a = work(alpha)
    pts = cv2.findNonZero(cv2.inRange(a, BAND_LO, BAND_HI))
    if pts is None or len(pts) < MIN_BAND_PX:
        return {"halo": None, "halo_px": 0 if pts is None else len(pts)}
    pts = pts.reshape(-1, 2).astype(np.intp)
    if len(pts) > MAX_BAND_PX:  # an even subsample: the score is a least-squares mean
        pts = pts[np.linspace(0, len(pts) - 1, MAX_BAND_PX).astype(np.intp)]
    c = work_image()
    sums = _box_integrals(c, a)
    hh, ww = a.shape
    used_pts, f_parts, b_parts = [], [], []
    for level in range(LEVELS):  # the smallest box that reaches both sides of the band
        if not len(pts):
            break
        (f_sum, f_n), (b_sum, b_n), area = _box_sums(sums, pts, r * 2**level, hh, ww)
        need = np.maximum(MIN_SHARE * area, 1)
        ok = np.flatnonzero((f_n >= need) & (b_n >= need))
        if len(ok) < len(pts):  # gathers by index: far cheaper than boolean masks on (n, 3)
            f_sum, f_n, b_sum, b_n = (x.take(ok, axis=0) for x in (f_sum, f_n, b_sum, b_n))
        used_pts.append(pts.take(ok, axis=0))
        f_parts.append(f_sum / f_n[:, None])  # float64, as the sums are integers
        b_parts.append(b_sum / b_n[:, None])
        if level + 1 < LEVELS:
            pts = np.delete(pts, ok, axis=0)
    used = np.concatenate(used_pts) if len(used_pts) > 1 else used_pts[0]
    n = len(used)
    if n < MIN_BAND_PX:
        return {"halo": None, "halo_px": n}
    at = used[:, 1] * ww + used[:, 0]  # flat indices (np.take: far cheaper than a[yy, xx])
    f = np.concatenate(f_parts) if len(f_parts) > 1 else f_parts[0]
    if bg is None:
        b = np.concatenate(b_parts) if len(b_parts) > 1 else b_parts[0]
    else:
        b = np.take(work(bg).reshape(-1, 3), at, axis=0).astype(np.float64)
    av = np.take(a.reshape(-1), at).astype(np.float64)[:, None] / 255.0
    resid = np.take(c.reshape(-1, 3), at, axis=0) - av * f - (1.0 - av) * b
    shape = av * (1.0 - av)
    v = (resid * shape).sum(axis=0) / float((shape * shape).sum())
    # the norm of the sorted magnitudes: the same float whatever the channel order
    return {"halo": float(np.linalg.norm(np.sort(np.abs(v)))), "halo_px": n}


def halve(arr: np.ndarray) -> np.ndarray:
    """``arr`` at half the size by 2 x 2 block means (OpenCV's area resampling at exactly
    1/2, its fast path; an odd last row / column is dropped): the halo score's working
    image at ``k = 2`` and the first step of the hashes' thumbnail (:mod:`.phash`)."""
    import cv2

    h, w = arr.shape[0] // 2, arr.shape[1] // 2
    return cv2.resize(arr[: 2 * h, : 2 * w], (w, h), interpolation=cv2.INTER_AREA)


def _box_integrals(c: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat ``((H+1)*(W+1), 4)`` integral images of the working colour ``c`` masked to the
    opaque pixels plus that mask (255 per pixel), and the same for the transparent ones:
    integer-exact (int32; float64 past its range)."""
    import cv2

    c4 = cv2.cvtColor(c, cv2.COLOR_BGR2BGRA)  # the 4th channel is 255: counts the mask
    depth = cv2.CV_32S if 255 * a.size < 2**31 else cv2.CV_64F
    f4 = cv2.bitwise_and(c4, c4, mask=cv2.compare(a, OPAQUE, cv2.CMP_GE))
    b4 = cv2.bitwise_and(c4, c4, mask=cv2.compare(a, CLEAR, cv2.CMP_LE))
    return cv2.integral(f4, sdepth=depth).reshape(-1, 4), cv2.integral(b4, sdepth=depth).reshape(
        -1, 4
    )


def _box_sums(
    sums: tuple[np.ndarray, np.ndarray], pts: np.ndarray, r: int, h: int, w: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Sums over the ``(2r+1)^2`` box at each point (clipped to the ``h`` x ``w`` window)
    from each of :func:`_box_integrals`' images as ``(colour sums (n, 3), pixel counts
    (n,))`` (integers), and the clipped box areas."""
    xx, yy = pts[:, 0], pts[:, 1]
    ya, yb = np.maximum(yy - r, 0), np.minimum(yy + r + 1, h)
    xa, xb = np.maximum(xx - r, 0), np.minimum(xx + r + 1, w)
    area = (yb - ya) * (xb - xa)
    ya *= w + 1  # flat indices of the four box corners in an integral image
    yb *= w + 1
    corners = (yb + xb, ya + xb, yb + xa, ya + xa)
    out = []
    for s in sums:
        box = s.take(corners[0], axis=0)
        box -= s.take(corners[1], axis=0)
        box -= s.take(corners[2], axis=0)
        box += s.take(corners[3], axis=0)
        out.append((box[:, :3], box[:, 3] // 255))  # the mask channel (255 a pixel): a count
    return out[0], out[1], area
