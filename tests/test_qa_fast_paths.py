"""The QA scan's fast array paths against their plain definitions, over image sizes (odd,
tiny, all-0 / all-255 alpha): the halo score's box sums, the edge crop on the alpha's
bbox window, the strip panels and the full view's stored panels."""

from __future__ import annotations

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from matdata.qa import halo as H
from matdata.qa.edges import FULL_MAX, _corners, edge_crop, full_panels

KINDS = ("soft", "random", "binary", "zero", "full", "speck")


def _alpha(h: int, w: int, seed: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.integers(0, 256, (h, w), np.uint8)
    if kind in ("zero", "full"):
        return np.full((h, w), 0 if kind == "zero" else 255, np.uint8)
    if kind == "speck":  # a few isolated pixels
        a = np.zeros((h, w), np.uint8)
        n = int(rng.integers(1, 4))
        a[rng.integers(0, h, n), rng.integers(0, w, n)] = rng.integers(1, 256, n)
        return a
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    d = np.hypot((xx - cx) / max(1.0, rng.uniform(0.1, 0.5) * w),
                 (yy - cy) / max(1.0, rng.uniform(0.1, 0.5) * h))  # fmt: skip
    a = np.clip((1 - d) * rng.uniform(2, 30) + 0.5, 0, 1)
    return np.rint((a > 0.5 if kind == "binary" else a) * 255).astype(np.uint8)


# ------------------------------------------------------------------------------ halo


def _halo_plain(image: np.ndarray, alpha: np.ndarray, bg: np.ndarray | None) -> dict:
    """The module docstring's definition at working scale 1 (short side < 2 * WORK_SIDE),
    box by box: every box lies inside the image's bbox window, so clipping it to the image
    is clipping it to the window."""
    h, w = alpha.shape
    x, y, bw, bh = cv2.boundingRect(alpha)
    if bw == 0 or min(h, w) < H.MIN_SIDE:
        return {"halo": None, "halo_px": 0}
    r = H.halo_radius(h, w)
    ys, xs = np.nonzero((alpha >= H.BAND_LO) & (alpha <= H.BAND_HI))  # row-major
    if len(ys) < H.MIN_BAND_PX:
        return {"halo": None, "halo_px": len(ys)}
    if len(ys) > H.MAX_BAND_PX:
        keep = np.linspace(0, len(ys) - 1, H.MAX_BAND_PX).astype(np.intp)
        ys, xs = ys[keep], xs[keep]
    rows = []
    for py, px in zip(ys.tolist(), xs.tolist(), strict=True):
        box = slice(max(0, py - r), py + r + 1), slice(max(0, px - r), px + r + 1)
        a, c = alpha[box], image[box].astype(np.int64)
        opaque, clear = a >= H.OPAQUE, a <= H.CLEAR
        need = max(H.MIN_SHARE * a.size, 1)
        if opaque.sum() >= need and clear.sum() >= need:
            f = c[opaque].sum(0) / opaque.sum()
            b = c[clear].sum(0) / clear.sum() if bg is None else bg[py, px].astype(np.float64)
            rows.append((image[py, px].astype(np.float64), alpha[py, px] / 255.0, f, b))
    if len(rows) < H.MIN_BAND_PX:
        return {"halo": None, "halo_px": len(rows)}
    cs, av, fs, bs = (np.array(v) for v in zip(*rows, strict=True))
    shape = av * (1 - av)
    resid = cs - av[:, None] * fs - (1 - av[:, None]) * bs
    v = (resid * shape[:, None]).sum(0) / (shape * shape).sum()
    return {"halo": float(np.linalg.norm(v)), "halo_px": len(rows)}


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(H.MIN_SIDE - 3, 2 * H.WORK_SIDE - 1),
    w=st.integers(H.MIN_SIDE - 3, 2 * H.WORK_SIDE - 1),
    seed=st.integers(0, 10_000),
    kind=st.sampled_from(KINDS),
    layer=st.booleans(),
)
def test_halo_equals_its_plain_definition(h, w, seed, kind, layer):
    rng = np.random.default_rng(seed + 1)
    image = rng.integers(0, 256, (h, w, 3), np.uint8)
    bg = rng.integers(0, 256, (h, w, 3), np.uint8) if layer else None
    alpha = _alpha(h, w, seed, kind)
    got, want = H.halo_score(image, alpha, bg), _halo_plain(image, alpha, bg)
    assert got["halo_px"] == want["halo_px"]
    if want["halo"] is None:
        assert got["halo"] is None
    else:
        assert np.isclose(got["halo"], want["halo"], rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------- edge crop


def _edge_crop_plain(alpha: np.ndarray, side: int, step: int) -> tuple[int, int, int]:
    """The weighted square of :func:`edge_crop`, summed over the whole image."""
    h, w = alpha.shape
    s = min(side, h, w)
    pad = np.pad(alpha, 1, mode="edge")  # the gradient's border: the image's own pixels
    win = np.lib.stride_tricks.sliding_window_view(pad, (3, 3))
    grad = (win.max(axis=(2, 3)) > win.min(axis=(2, 3))).astype(np.int64)
    weight = np.minimum(alpha, 255 - alpha).astype(np.int64) + grad
    best, at = -1, (0, 0)
    for y in _corners(h - s, step).tolist():
        for x in _corners(w - s, step).tolist():
            v = int(weight[y : y + s, x : x + s].sum())
            if v > best:
                best, at = v, (x, y)
    return at[0], at[1], s


@settings(max_examples=150, deadline=None)
@given(
    h=st.integers(1, 70),
    w=st.integers(1, 70),
    seed=st.integers(0, 10_000),
    kind=st.sampled_from(KINDS),
    side=st.integers(1, 80),
    step=st.integers(1, 5),
)
def test_edge_crop_on_the_bbox_window_equals_the_whole_image(h, w, seed, kind, side, step):
    alpha = _alpha(h, w, seed, kind)
    assert edge_crop(alpha, side, step) == _edge_crop_plain(alpha, side, step)


# ------------------------------------------------------------------- strips and views


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 700), w=st.integers(1, 700), grey=st.booleans(), seed=st.integers(0, 99))
def test_strip_panels_of_any_size(h, w, grey, seed):
    """A panel is ``height`` rows of the right width, 3 channels, within the input's range
    (block means and bilinear weights never leave it); a flat image stays flat."""
    from matdata.qa.scan import _panel

    rng = np.random.default_rng(seed)
    arr = rng.integers(20, 200, (h, w) if grey else (h, w, 3), np.uint8)
    out = _panel(arr, 96)
    assert out.shape == (96, max(1, round(w * 96 / h)), 3) and out.dtype == np.uint8
    assert arr.min() <= out.min() and out.max() <= arr.max()
    flat = _panel(np.full_like(arr, 77), 96)
    assert (flat == 77).all()


def test_full_view_embeds_the_stored_bytes_within_the_cap():
    from matdata.imageio import encode_jpeg, encode_png

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 60, 3), np.uint8)
    alpha = _alpha(40, 60, 0, "soft")
    stored = {"image": encode_jpeg(image[..., ::-1], 95), "alpha": encode_png(alpha)}
    panels, scale = full_panels(image, alpha, stored=stored)
    assert scale == 1.0
    assert panels == [("image/jpeg", stored["image"]), ("image/png", stored["alpha"])]
    # no stored bytes, or bytes that are not a JPEG / PNG: the arrays are encoded
    panels, _ = full_panels(image, alpha, stored={"image": b"GIF89a..."})
    assert [m for m, _ in panels] == ["image/jpeg", "image/jpeg"]
    assert all(d.startswith(b"\xff\xd8\xff") and d != stored["image"] for _, d in panels)
    # over the cap: every panel downscaled and encoded, never the stored bytes
    big = np.zeros((FULL_MAX + 10, 20), np.uint8)
    panels, scale = full_panels(np.zeros((*big.shape, 3), np.uint8), big, stored=stored)
    assert scale < 1.0 and all(d not in stored.values() for _, d in panels)
    decoded = cv2.imdecode(np.frombuffer(panels[1][1], np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.shape[0] == FULL_MAX


# ------------------------------------------------------------ the shared halved image


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 90), w=st.integers(1, 90), grey=st.booleans(), seed=st.integers(0, 99))
def test_halve_is_the_2x2_block_mean(h, w, grey, seed):
    """:func:`halve` = the rounded mean of each 2 x 2 block (odd last row / column
    dropped), for any size, grey or colour (1 x 1 and 1-wide images give empty arrays)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w) if grey else (h, w, 3), np.uint8)
    hh, ww = h // 2, w // 2
    if hh == 0 or ww == 0:
        return  # nothing to average (the scan only halves images of 512 px and more)
    out = H.halve(arr)
    blocks = arr[: 2 * hh, : 2 * ww].astype(np.int32)
    s = blocks[0::2, 0::2] + blocks[1::2, 0::2] + blocks[0::2, 1::2] + blocks[1::2, 1::2]
    assert out.shape == s.shape and np.array_equal(out, (s + 2) >> 2)


@settings(max_examples=8, deadline=None)
@given(
    h=st.integers(2 * H.WORK_SIDE, 3 * H.WORK_SIDE + 40),
    w=st.integers(2 * H.WORK_SIDE, 3 * H.WORK_SIDE + 40),
    seed=st.integers(0, 10_000),
    kind=st.sampled_from(("soft", "binary", "zero", "full")),
)
def test_scan_shares_the_halved_image_without_changing_results(h, w, seed, kind):
    """The scan halves a 512+ px composite once for the halo score (at k = 2) and the
    hashes: the same score as halo_score averaging its own window, the same hashes as
    image_hashes of the full image (k = 3 images ignore ``half`` for the halo)."""
    from matdata.qa.phash import image_hashes

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    bgr = np.stack([(xx * 3 + yy) % 256, (yy * 2) % 256, rng.integers(0, 256, (h, w))], -1)
    bgr = cv2.GaussianBlur(bgr.astype(np.uint8), (5, 5), 0)
    alpha = _alpha(h, w, seed, kind)
    half = H.halve(bgr)
    assert H.halo_score(bgr, alpha, half=half) == H.halo_score(bgr, alpha)
    grey = cv2.cvtColor(half, cv2.COLOR_BGR2GRAY)
    assert image_hashes(grey) == image_hashes(np.ascontiguousarray(bgr[..., ::-1]))
