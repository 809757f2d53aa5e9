"""Per-record QA analysis: statistics and flags, pure functions on decoded arrays.

Conventions: ``image`` / ``image_raw`` are RGB uint8 ``(H, W, 3)``; ``alpha`` and
``trimap`` are uint8 ``(H, W)`` (alpha 255 = foreground, trimap 0 / 128 / 255).

Statistics of one record (all shares are fractions of the image area, in [0, 1])::

    coverage      = mean(alpha) / 255                       soft foreground area
    fg_area       = mean(alpha >= 128)                      hard foreground area
    semi_share    = mean(0 < alpha < 255)                   semi-transparent pixels
    unknown_share = mean(trimap == 128)                     unknown band (stored trimap,
                                                            else make_trimap(alpha))
    bbox          = tight box of {alpha > 0}, normalised to [0, 1]: bbox_w, bbox_h and
                    its centre bbox_cx, bbox_cy
    touches       = image sides (top/bottom/left/right) where alpha > 0 on the border row
                    or column
    bg_diff       = mean |image - image_raw| over BGm = erode({alpha == 0}, margin) (the
                    background away from the soft edge and JPEG blocks), uint8 units
    color_shift   = ΔE76 between Lab(mean RGB of image on {alpha >= 128}) and
                    Lab(mean RGB of image_raw on the same pixels)
    halo          = colour-bleed score of the soft band (:mod:`matdata.qa.halo`), uint8
                    RGB units; halo_px: band pixels it used (None / 0 without a soft band)

Flags (a stable snake_case name plus a human reason) are computed by :func:`record_flags`
from the statistics and the record's ``meta``; global flags (duplicates, leakage) and shard
flags (checksum) are added by :mod:`matdata.qa.report` and :mod:`matdata.qa.scan`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from matdata.schema import is_coarse

#: Every flag QA can raise, with what it means (the report's legend).
FLAGS: dict[str, str] = {
    "undecodable": "a field of the record does not decode",
    "size_mismatch": "alpha / trimap / ignore / image_raw size differs from the image",
    "checksum_mismatch": "the record's shard does not match its sha256 in dataset.json",
    "empty_alpha": "alpha is 0 everywhere: no foreground",
    "full_alpha": "alpha is 255 everywhere: no background",
    "no_semi_transparent": "a fine (not coarse) alpha without any 0 < alpha < 255 pixel",
    "tiny_fg": "the foreground (alpha >= 128) covers less than the tiny_fg share of the image",
    "fg_cut_by_border": "alpha touches an image side where the source foreground did not",
    "duplicate": "a near-identical image (perceptual hash) exists under another key",
    "leakage": "the same image, source foreground or foreground group is in several splits",
    "bg_changed": "harmonization changed the background (image vs image_raw where alpha==0)",
    "color_shift": "harmonization shifted the foreground's mean colour by more than color_shift",
    "halo": "colour bleeds into the soft edge (halo score above the halo threshold)",
}

#: Shard-level findings (listed per shard; records read from such a shard also carry
#: ``checksum_mismatch``).
SHARD_FLAGS: dict[str, str] = {
    "checksum_mismatch": "the shard file's size or sha256 differs from dataset.json",
    "missing_shard": "a shard listed in dataset.json does not exist",
    "unreadable_shard": "the shard file cannot be parsed (records after the error are lost)",
}

SIDES = ("top", "bottom", "left", "right")


@dataclass(frozen=True)
class Thresholds:
    """Limits for the flags (see :data:`FLAGS`).

    ``tiny_fg``: share of the image; ``bg_changed``: mean absolute difference in uint8
    units over the eroded background; ``bg_margin``: erosion radius in pixels (JPEG blocks
    are 8 px); ``color_shift``: ΔE76; ``dup_phash`` / ``dup_dhash``: largest Hamming
    distances (of 64 bits) for two images to count as duplicates (both must hold);
    ``halo``: the halo score (:mod:`matdata.qa.halo`, uint8 RGB units) above which a
    record is flagged.
    """

    tiny_fg: float = 0.01
    bg_changed: float = 4.0
    bg_margin: int = 8
    color_shift: float = 40.0
    dup_phash: int = 4
    dup_dhash: int = 8
    halo: float = 30.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Flag:
    """One finding on one record (or shard): a name from :data:`FLAGS` and why."""

    name: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"flag": self.name, "reason": self.reason}


# ----------------------------------------------------------------------------- meta


def _get(meta: dict[str, Any], *path: str) -> Any:
    cur: Any = meta
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur


def compose_params(meta: dict[str, Any]) -> dict[str, Any]:
    """The per-sample compositing parameters recorded in ``meta`` (the build writes
    :attr:`matdata.compose.Composite.params` under ``meta.params``), or {}."""
    for name in ("params", "compose", "composite"):
        v = meta.get(name)
        if isinstance(v, dict) and "fg_offset" in v:
            return v
    return meta if "fg_offset" in meta else {}


def provenance(meta: dict[str, Any]) -> dict[str, Any]:
    """Flat provenance of a record for counts and captions (missing values are None).

    ``coarse``: :func:`matdata.schema.is_coarse`; the harmonizer from
    ``meta.harmonize.model`` / ``meta.harmonization.model`` / ``meta.harmonizer``.
    """
    harm = _get(meta, "harmonize", "model") or _get(meta, "harmonization", "model")
    if harm is None and isinstance(meta.get("harmonizer"), str):
        harm = meta["harmonizer"]
    coarse = is_coarse(meta)  # the one rule (matdata.schema)
    return {
        "split": str(meta.get("split", "train")),
        "fg_source": _get(meta, "fg", "source"),
        "fg_id": _get(meta, "fg", "id"),
        "fg_group": _get(meta, "fg", "group"),
        "bg_source": _get(meta, "bg", "source"),
        "bg_id": _get(meta, "bg", "id"),
        "bg_category": _get(meta, "bg", "category"),
        "coarse": bool(coarse),
        "harmonizer": harm,
    }


# ------------------------------------------------------------------------------ stats


def alpha_stats(alpha: np.ndarray) -> dict[str, Any]:
    """Area, semi-transparency, bbox and border contact of an ``(H, W)`` uint8 alpha.

    Counts come from OpenCV reductions (integer-exact), the bbox from ``cv2.boundingRect``
    (the box of the non-zero pixels), and the threshold counts look inside that box only.
    """
    import cv2

    h, w = alpha.shape
    n = float(h * w)
    lo, hi, _, _ = cv2.minMaxLoc(alpha)
    n_pos = cv2.countNonZero(alpha)
    x0, y0, bw, bh = (int(v) for v in cv2.boundingRect(alpha)) if n_pos else (0, 0, 0, 0)
    x1, y1 = x0 + bw, y0 + bh
    box = alpha[y0:y1, x0:x1]  # every non-zero pixel: the threshold counts only look here
    n_full = cv2.countNonZero(cv2.compare(box, 254, cv2.CMP_GT)) if hi == 255 else 0
    n_fg = cv2.countNonZero(cv2.compare(box, 127, cv2.CMP_GT)) if hi >= 128 else 0
    out: dict[str, Any] = {
        "alpha_min": int(lo),
        "alpha_max": int(hi),
        "coverage": float(cv2.sumElems(alpha)[0] / 255.0 / n),
        "fg_area": n_fg / n,
        "semi_share": (n_pos - n_full) / n,
    }
    if n_pos:
        out.update(
            bbox_w=(x1 - x0) / w,
            bbox_h=(y1 - y0) / h,
            bbox_cx=(x0 + x1) / 2 / w,
            bbox_cy=(y0 + y1) / 2 / h,
            bbox=[x0, y0, x1, y1],
        )
        hits = (y0 == 0, y1 == h, x0 == 0, x1 == w)
        touches = [side for side, hit in zip(SIDES, hits, strict=True) if hit]
    else:
        out.update(bbox_w=0.0, bbox_h=0.0, bbox_cx=None, bbox_cy=None, bbox=None)
        touches = []
    out["touches"] = touches
    return out


def band_window(shape: tuple[int, int], bbox: list[int], r: int) -> tuple[slice, slice]:
    """Rows and columns of the bbox of ``alpha > 0`` grown by ``r + 1``: outside it alpha is
    0 and farther than ``r`` from any foreground, so the trimap there is known background,
    and its edge pixels are background, which ``make_trimap``'s border replication assumes
    at a crop edge (the trimap of the window is that of the whole image, cropped)."""
    h, w = shape
    x0, y0, x1, y1 = bbox
    m = r + 1
    return slice(max(0, y0 - m), min(h, y1 + m)), slice(max(0, x0 - m), min(w, x1 + m))


def unknown_share(alpha: np.ndarray, bbox: list[int] | None, params: Any = None) -> float:
    """Share of the unknown band of ``make_trimap(alpha, params)``, computed on the
    :func:`band_window` of the bbox of ``alpha > 0`` only (exact, see there)."""
    import cv2

    from matdata.trimap import TRIMAP_UNKNOWN

    if bbox is None:
        return 0.0
    h, w = alpha.shape
    tri = _window_trimap(alpha, bbox, params)
    return float(cv2.countNonZero(cv2.compare(tri, TRIMAP_UNKNOWN, cv2.CMP_EQ)) / (h * w))


def _window_trimap(alpha: np.ndarray, bbox: list[int], params: Any = None) -> np.ndarray:
    from matdata.trimap import TrimapParams, make_trimap

    params = params or TrimapParams()
    r = params.band_radius(*alpha.shape)
    ys, xs = band_window(alpha.shape, bbox, r)
    crop_params = TrimapParams(eps=params.eps, rel_width=params.rel_width, width=r)
    return make_trimap(np.ascontiguousarray(alpha[ys, xs]), crop_params)


def trimap_of(alpha: np.ndarray, bbox: list[int] | None, params: Any = None) -> np.ndarray:
    """``make_trimap(alpha, params)`` (equal, bit for bit), eroding only the
    :func:`band_window` of ``bbox`` (the bbox of ``alpha > 0``; None: alpha is all 0)."""
    from matdata.trimap import TrimapParams

    params = params or TrimapParams()
    out = np.zeros(alpha.shape, np.uint8)  # known background
    if bbox is not None:
        ys, xs = band_window(alpha.shape, bbox, params.band_radius(*alpha.shape))
        out[ys, xs] = _window_trimap(alpha, bbox, params)
    return out


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) of sRGB colours ``(..., 3)`` in 0..255; returns float64 ``(..., 3)``."""
    c = np.asarray(rgb, np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
         [0.0193339, 0.1191920, 0.9503041]]
    )  # fmt: skip
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    d = 6 / 29
    f = np.where(xyz > d**3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


def _masked_sum(arr: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-channel integer sums of ``arr`` over ``mask != 0`` (exact, as float64)."""
    import cv2

    return np.asarray(cv2.sumElems(cv2.bitwise_and(arr, arr, mask=mask))[: arr.shape[2]])


def harmonization_stats(
    image: np.ndarray,
    image_raw: np.ndarray,
    alpha: np.ndarray,
    margin: int = 8,
    *,
    bgr: bool = False,
) -> dict[str, Any]:
    """``bg_diff`` and ``color_shift`` (module docstring) of a harmonized composite.

    ``bgr``: the two images are in OpenCV's BGR order (as decoded), not RGB.  Means are
    exact integer sums divided by the pixel counts, as ``numpy.mean`` computes them, and
    only the bbox of ``alpha > 0`` grown by ``margin + 1`` is eroded and masked: outside
    it every pixel is eroded background, so the background sum is the whole image's minus
    that of the window's non-background pixels.
    """
    import cv2

    h, w = alpha.shape
    c = image.shape[2]
    out: dict[str, Any] = {"bg_diff": None, "color_shift": None}
    x, y, bw, bh = (int(v) for v in cv2.boundingRect(alpha))
    d = cv2.absdiff(image, image_raw)
    total = float(sum(cv2.sumElems(d)[:c]))
    if bw == 0:  # alpha == 0 everywhere: all background, no foreground
        out["bg_diff"] = total / (h * w * c)
        return out
    ys, xs = band_window((h, w), [x, y, x + bw, y + bh], max(0, margin))
    not_bg = cv2.compare(alpha[ys, xs], 0, cv2.CMP_NE)
    if margin > 0:  # erode the background = dilate the rest (outside: background)
        k = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * margin + 1, 2 * margin + 1))
        not_bg = cv2.dilate(not_bg, k, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    n_bg = h * w - cv2.countNonZero(not_bg)
    if n_bg:
        inner = float(_masked_sum(np.ascontiguousarray(d[ys, xs]), not_bg).sum())
        out["bg_diff"] = (total - inner) / (n_bg * c)
    box = slice(y, y + bh), slice(x, x + bw)  # every alpha >= 128 pixel is in the bbox
    fg = cv2.compare(alpha[box], 127, cv2.CMP_GT)
    n_fg = cv2.countNonZero(fg)
    if n_fg:
        m1 = _masked_sum(np.ascontiguousarray(image[box]), fg) / n_fg
        m0 = _masked_sum(np.ascontiguousarray(image_raw[box]), fg) / n_fg
        if bgr:
            m1, m0 = m1[::-1], m0[::-1]
        out["color_shift"] = float(np.linalg.norm(srgb_to_lab(m1) - srgb_to_lab(m0)))
    return out


def record_stats(
    image: np.ndarray,
    alpha: np.ndarray,
    *,
    trimap: np.ndarray | None = None,
    image_raw: np.ndarray | None = None,
    ignore: np.ndarray | None = None,
    margin: int = 8,
    band: bool = True,
    bgr: bool = False,
    bg: np.ndarray | None = None,
    halo: bool = True,
    half: np.ndarray | None = None,
) -> tuple[dict[str, Any], list[Flag]]:
    """Statistics of one decoded record plus the size-mismatch flags found on the way.

    Stats that need two aligned arrays are skipped (None) when their sizes differ; the
    unknown band of a missing ``trimap`` is that of :func:`matdata.trimap.make_trimap`
    with default parameters (:func:`unknown_share`), or None when ``band`` is False.
    ``image`` may be grey (only its size is used unless ``image_raw`` is given); ``bgr``:
    ``image`` and ``image_raw`` are in BGR order (see :func:`harmonization_stats`).
    The halo score (:func:`matdata.qa.halo.halo_score`, with the ``bg`` layer when given)
    needs a colour ``image`` and ``halo``; otherwise it is None (``half``: the image
    halved, :func:`matdata.qa.halo.halve`, when the caller has it).
    """
    import cv2

    h, w = image.shape[:2]
    flags: list[Flag] = []
    stats: dict[str, Any] = {"width": int(w), "height": int(h)}
    stats.update(alpha_stats(alpha))
    aligned = alpha.shape == (h, w)
    if not aligned:
        flags.append(
            Flag("size_mismatch", f"alpha is {alpha.shape[1]}x{alpha.shape[0]}, image {w}x{h}")
        )
    for name, arr in (("trimap", trimap), ("ignore", ignore), ("image_raw", image_raw)):
        if arr is not None and arr.shape[:2] != (h, w):
            flags.append(
                Flag("size_mismatch", f"{name} is {arr.shape[1]}x{arr.shape[0]}, image {w}x{h}")
            )
    if trimap is not None and trimap.shape == alpha.shape:
        stats["trimap_stored"] = True
        n_unknown = cv2.countNonZero(cv2.compare(trimap, 128, cv2.CMP_EQ))
        stats["unknown_share"] = float(n_unknown / trimap.size)
    else:
        stats["trimap_stored"] = False
        stats["unknown_share"] = unknown_share(alpha, stats["bbox"]) if band else None
    stats["bg_diff"] = stats["color_shift"] = None
    if image_raw is not None and aligned and image_raw.shape == image.shape and image.ndim == 3:
        stats.update(harmonization_stats(image, image_raw, alpha, margin, bgr=bgr))
    stats["halo"], stats["halo_px"] = None, 0
    if halo and aligned and image.ndim == 3:
        from matdata.qa.halo import halo_score

        stats.update(halo_score(image, alpha, bg, stats["bbox"], half))
    return stats, flags


# ------------------------------------------------------------------------------ flags


def placement_cut_sides(params: dict[str, Any]) -> set[str] | None:
    """Sides where the composite placement pushed the scaled foreground past the frame.

    Uses ``fg_offset [x0, y0]``, ``fg_scaled_size [sw, sh]`` and ``out_size [W, H]`` as
    :func:`matdata.compose.compose_sample` records them; None when they are absent.
    """
    try:
        x0, y0 = (int(v) for v in params["fg_offset"])
        sw, sh = (int(v) for v in params["fg_scaled_size"])
        W, H = (int(v) for v in params["out_size"])
    except (KeyError, TypeError, ValueError):
        return None
    sides = set()
    if y0 < 0:
        sides.add("top")
    if y0 + sh > H:
        sides.add("bottom")
    if x0 < 0:
        sides.add("left")
    if x0 + sw > W:
        sides.add("right")
    return sides


def border_cut_sides(touches: list[str], meta: dict[str, Any]) -> list[str]:
    """Sides on which the foreground is cut by the image border where the source was not.

    1. If ``meta`` records the sides the *source* alpha touched (``fg.touches`` or
       ``compose.fg_touches``), a cut side is one the output alpha touches and the source
       did not.
    2. Else, from the recorded placement (:func:`placement_cut_sides`): a side the output
       alpha touches and past which the placement pushed the foreground; the bottom side
       is exempt because portrait sources are cut at the bottom by convention (the build
       bottom-aligns them, so a bottom cut removes nothing the source showed).
    3. Else nothing can be said: no sides.
    """
    params = compose_params(meta)
    src = _get(meta, "fg", "touches")
    if src is None:
        src = params.get("fg_touches")
    if isinstance(src, list | tuple):
        return [s for s in touches if s not in set(src)]
    placed = placement_cut_sides(params)
    if placed is None:
        return []
    return [s for s in touches if s in placed and s != "bottom"]


def record_flags(
    stats: dict[str, Any], meta: dict[str, Any], th: Thresholds | None = None
) -> list[Flag]:
    """Flags of one record from its :func:`record_stats` and ``meta`` (pure)."""
    th = th or Thresholds()
    flags: list[Flag] = []
    coarse = provenance(meta)["coarse"]
    if stats["alpha_max"] == 0:
        flags.append(Flag("empty_alpha", "alpha is 0 everywhere"))
    elif stats["alpha_min"] == 255:
        flags.append(Flag("full_alpha", "alpha is 255 everywhere"))
    else:
        if stats["semi_share"] == 0 and not coarse:
            flags.append(Flag("no_semi_transparent", "fine alpha with only 0 and 255 values"))
        if stats["fg_area"] < th.tiny_fg:
            flags.append(
                Flag("tiny_fg", f"foreground covers {stats['fg_area']:.2%} < {th.tiny_fg:.2%}")
            )
        cut = border_cut_sides(stats["touches"], meta)
        if cut:
            flags.append(Flag("fg_cut_by_border", f"cut at the {'/'.join(cut)} border"))
    if stats.get("bg_diff") is not None and stats["bg_diff"] > th.bg_changed:
        flags.append(
            Flag(
                "bg_changed",
                f"background differs from image_raw by {stats['bg_diff']:.1f} > {th.bg_changed}",
            )
        )
    if stats.get("color_shift") is not None and stats["color_shift"] > th.color_shift:
        flags.append(
            Flag(
                "color_shift",
                f"foreground colour moved by ΔE {stats['color_shift']:.1f} > {th.color_shift}",
            )
        )
    if stats.get("halo") is not None and stats["halo"] > th.halo:
        flags.append(
            Flag("halo", f"colour bleeds into the soft edge: halo {stats['halo']:.1f} > {th.halo}")
        )
    return flags
