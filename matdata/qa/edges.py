"""Edge crops at native resolution and the full-size record, for the QA report.

A matting record is judged at its edges, so each shown record gets one *edge sheet*: a
square crop (``EDGE_CROP`` = 160 px, smaller only when the image is) where alpha is most
fractional, at 1:1, and below it a 2x nearest-neighbour zoom of the most fractional
half-size square inside that crop, in up to four views side by side:

* ``composite`` - the stored image;
* ``fg/grey`` - the foreground over flat mid-grey, ``a*F + (1-a)*128``: ``F`` is the
  stored ``fg`` layer when the record has one (``--keep-layers``), else estimated from the
  composite crop with :func:`matdata.foreground.estimate_foreground` (the build's default
  method); a bleeding backdrop shows as a coloured fringe against the grey;
* ``alpha``;
* ``harm-raw`` - ``4 * |image - image_raw|`` (harmonized records only).

The *full* view is the whole record at full size: composite | alpha (| image_raw when
present), one image per panel.  A panel is the record's own stored bytes (the JPEG /
PNG exactly as the shard holds them: no re-encode, no loss, no cost) when the record is
at most ``FULL_MAX`` px on its longer side; larger records get every panel area-downscaled
to that cap and encoded.  Edge sheets and encoded panels are JPEG at quality 90 without
chroma subsampling (a halo is a chroma detail).  Arrays are BGR, as the scan decodes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Side of an edge crop at 1:1 (pixels; the image's shorter side when smaller).
EDGE_CROP = 160
#: Longer side (pixels) above which a panel of the full-size image is downscaled.
FULL_MAX = 1024
#: Records with edge views in the report: the random sample's first MAX_EDGE_SAMPLE and
#: the first MAX_EDGE_FLAGGED flagged records (each view is one edge sheet of about
#: 20-60 kB plus one full-size image of about 20-300 kB: a report stays under ~30 MB).
MAX_EDGE_SAMPLE = 48
MAX_EDGE_FLAGGED = 48
#: JPEG quality of edge sheets and full images.
VIEW_QUALITY = 90
_GAP = 4


@dataclass
class RecordViews:
    """What the report shows of one record beyond its strip (picklable, small)."""

    edges: bytes  # JPEG: views side by side, 1:1 on top, 2x zoom below
    #: ``(mime type, bytes)`` per panel: composite, alpha (, image_raw) at full size (capped)
    full: list[tuple[str, bytes]] = field(default_factory=list)
    views: list[str] = field(default_factory=list)  # column names of ``edges``
    fg_from: str = "estimated"  # "layer" or "estimated"
    crop: list[int] = field(default_factory=list)  # [x, y, side] in image pixels
    scale: float = 1.0  # of the full image's panels (1.0: native)


def edge_crop(alpha: np.ndarray, side: int = EDGE_CROP, step: int = 4) -> tuple[int, int, int]:
    """``(x, y, s)`` of the ``s`` x ``s`` square (``s = min(side, H, W)``) holding the most
    fractional alpha: the largest sum of ``min(a, 255 - a)``, plus 1 per pixel of the
    alpha's morphological gradient (so a binary mask's crop still sits on its edge),
    over top-left corners on a ``step`` grid (and the last row / column); the first such
    corner in row-major order on a tie.

    The weight is 0 farther than 1 px from the bbox of ``alpha > 0``, so it is computed on
    that bbox grown by 2 px only (the gradient of its edge pixels sees the same
    neighbours) and each square's sum is that of its overlap with the window: the same
    sums, so the same square, as over the whole image."""
    import cv2

    h, w = alpha.shape
    s = min(side, h, w)
    ys, xs = _corners(h - s, step), _corners(w - s, step)
    bx, by, bw, bh = cv2.boundingRect(alpha)
    if bw == 0:  # alpha is 0 everywhere: every sum is 0, the first corner wins
        return int(xs[0]), int(ys[0]), s
    wy0, wy1 = max(0, by - 2), min(h, by + bh + 2)
    wx0, wx1 = max(0, bx - 2), min(w, bx + bw + 2)
    win = alpha[wy0:wy1, wx0:wx1]
    # the weight is an integer <= 128 (uint8), summed exactly in int32 (float64 past its
    # range; a box sum a - b - c + d of a monotone integral stays in range too)
    grad = cv2.morphologyEx(win, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    edge = cv2.threshold(grad, 0, 1, cv2.THRESH_BINARY)[1]  # no scalar/array ambiguity
    weight = cv2.add(cv2.min(win, cv2.bitwise_not(win)), edge)  # at 1 x 1 and 4 x 1
    ii = cv2.integral(weight, sdepth=cv2.CV_32S if 128 * win.size < 2**31 else cv2.CV_64F)
    y0 = np.clip(ys - wy0, 0, wy1 - wy0)[:, None]  # each square's overlap with the window
    y1 = np.clip(ys + s - wy0, 0, wy1 - wy0)[:, None]
    x0 = np.clip(xs - wx0, 0, wx1 - wx0)[None, :]
    x1 = np.clip(xs + s - wx0, 0, wx1 - wx0)[None, :]
    sums = ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]
    j = int(np.argmax(sums))
    return int(xs[j % len(xs)]), int(ys[j // len(xs)]), s


def _corners(last: int, step: int) -> np.ndarray:
    """``0, step, 2*step, ...`` up to ``last``, and ``last`` itself (sorted, distinct)."""
    out = np.arange(0, last + 1, step)
    return out if out[-1] == last else np.append(out, last)


def _zoom2(p: np.ndarray) -> np.ndarray:
    """``p`` at twice the size, each pixel a 2 x 2 block (nearest neighbour)."""
    import cv2

    return cv2.resize(p, (2 * p.shape[1], 2 * p.shape[0]), interpolation=cv2.INTER_NEAREST)


def _over_grey(fg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float32)[..., None] / 255.0
    return np.rint(fg.astype(np.float32) * a + 128.0 * (1.0 - a)).astype(np.uint8)


def _grey3(arr: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)


def _encode(img: np.ndarray) -> bytes:
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, VIEW_QUALITY]
    params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img), params)
    if not ok:  # pragma: no cover - OpenCV only fails on invalid input
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def _row(panels: list[np.ndarray]) -> np.ndarray:
    h = panels[0].shape[0]
    gap = np.full((h, _GAP, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for p in panels:
        parts += [gap, p] if parts else [p]
    return np.concatenate(parts, axis=1)


def edge_sheet(
    image: np.ndarray,
    alpha: np.ndarray,
    *,
    fg: np.ndarray | None = None,
    image_raw: np.ndarray | None = None,
    side: int = EDGE_CROP,
) -> tuple[np.ndarray, list[str], str, list[int]]:
    """The edge sheet of one record (module docstring) as a BGR array, its column names,
    where ``F`` came from (``"layer"`` / ``"estimated"``) and the crop ``[x, y, s]``.

    ``image`` / ``fg`` / ``image_raw``: ``(H, W, 3)`` uint8, same channel order and size
    as ``image`` (others are ignored); ``alpha``: ``(H, W)`` uint8.
    """
    from matdata.foreground import estimate_foreground

    x, y, s = edge_crop(alpha, side)
    win = slice(y, y + s), slice(x, x + s)
    a = np.ascontiguousarray(alpha[win])
    comp = np.ascontiguousarray(image[win])
    if fg is not None and fg.shape == image.shape:
        f, fg_from = np.ascontiguousarray(fg[win]), "layer"
    else:  # estimate F on the crop grown by a margin (context for the blurs), then cut
        h, w = alpha.shape
        m = s // 4
        gy, gx = slice(max(0, y - m), min(h, y + s + m)), slice(max(0, x - m), min(w, x + s + m))
        est = estimate_foreground(np.ascontiguousarray(image[gy, gx]), alpha[gy, gx].copy())
        f, fg_from = (
            est[y - gy.start : y - gy.start + s, x - gx.start : x - gx.start + s],
            "estimated",
        )
    panels = [comp, _over_grey(f, a), _grey3(a)]
    names = ["composite", "fg/grey", "alpha"]
    if image_raw is not None and image_raw.shape == image.shape:
        import cv2

        diff = cv2.absdiff(comp, np.ascontiguousarray(image_raw[win]))
        panels.append(cv2.convertScaleAbs(diff, alpha=4.0))
        names.append("harm-raw x4")
    zx, zy, half = edge_crop(a, s // 2, step=2)  # the zoom: the most fractional half-square
    zoom = [_zoom2(p[zy : zy + half, zx : zx + half]) for p in panels]
    if 2 * half < s:  # an odd crop side (images under EDGE_CROP): pad to the top row's width
        zoom = [np.pad(z, ((0, s - 2 * half), (0, s - 2 * half), (0, 0)), constant_values=255)
                for z in zoom]  # fmt: skip
    top, bottom = _row(panels), _row(zoom)
    sheet = np.concatenate([top, np.full((_GAP, top.shape[1], 3), 255, np.uint8), bottom], 0)
    return sheet, names, fg_from, [x, y, s]


#: Leading bytes of the stored formats a full panel may embed as they are.
_MAGIC = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}


def _stored(data: bytes | None) -> tuple[str, bytes] | None:
    """``(mime, data)`` when ``data`` is a JPEG or PNG file (by its signature), else None."""
    if data:
        for magic, mime in _MAGIC.items():
            if data.startswith(magic):
                return mime, bytes(data)
    return None


def full_panels(
    image: np.ndarray,
    alpha: np.ndarray,
    image_raw: np.ndarray | None = None,
    stored: dict[str, bytes | None] | None = None,
) -> tuple[list[tuple[str, bytes]], float]:
    """The full view's panels ``[(mime, bytes)]`` (composite, alpha, image_raw when
    present) and their scale: each panel is its stored bytes (``stored[name]``, a JPEG or
    PNG the decoded array came from) when the record is within :data:`FULL_MAX` px, else
    the array (area-downscaled to the cap when over it) encoded as JPEG."""
    import cv2

    arrays = {"image": image, "alpha": alpha}
    if image_raw is not None and image_raw.shape == image.shape:
        arrays["image_raw"] = image_raw
    h, w = alpha.shape
    scale = min(1.0, FULL_MAX / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out: list[tuple[str, bytes]] = []
    for name, arr in arrays.items():
        kept = _stored((stored or {}).get(name)) if scale == 1.0 else None
        if kept is None:
            if scale < 1.0:
                arr = cv2.resize(arr, size, interpolation=cv2.INTER_AREA)
            kept = ("image/jpeg", _encode(_grey3(arr) if arr.ndim == 2 else arr))
        out.append(kept)
    return out, scale


def record_views(
    image: np.ndarray,
    alpha: np.ndarray,
    *,
    fg: np.ndarray | None = None,
    image_raw: np.ndarray | None = None,
    stored: dict[str, bytes | None] | None = None,
) -> RecordViews | None:
    """:class:`RecordViews` of a decoded record (BGR), or None when image and alpha sizes
    differ or the image is not in colour.  ``stored``: the record's encoded fields by name
    (``image``, ``alpha``, ``image_raw``) the arrays were decoded from, embedded as the
    full view's panels as they are (:func:`full_panels`)."""
    if image.ndim != 3 or image.shape[:2] != alpha.shape:
        return None
    sheet, names, fg_from, crop = edge_sheet(image, alpha, fg=fg, image_raw=image_raw)
    full, scale = full_panels(image, alpha, image_raw, stored)
    return RecordViews(_encode(sheet), full, names, fg_from, crop, scale)
