"""Property tests of the array functions on the build path, over random image sizes.

Sizes run from 1x1 to 4000x3000: odd, portrait, landscape, very thin.  Small sizes get
many examples; the large end gets a few (each costs seconds), with mostly binary alpha
so that the soft region, whose cost dominates, stays realistic.
"""

from __future__ import annotations

import base64
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from matdata.compose import ComposeConfig, compose_sample, composite_rgb, cover_crop_box
from matdata.foreground import FIT_PASSES, PASSES, estimate_foreground, pass_schedule
from matdata.imageio import decode_alpha, decode_image, encode_jpeg, encode_png
from matdata.trimap import TrimapParams, make_trimap

SMALL = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LARGE = settings(
    max_examples=3,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

small_side = st.integers(1, 300)
any_side = st.integers(1, 4000)
#: The large end: at least one side of 1500+ (pixels capped at 4000x3000 by the tests).
large_side = st.integers(1500, 4000)
#: Sizes of real sources (and the ones that used to fail) besides random ones.
REAL_SIZES = [(768, 1024), (1000, 800), (1080, 1920), (800, 600), (600, 800)]


def _images(seed: int, h: int, w: int, soft: str) -> tuple[np.ndarray, np.ndarray]:
    """A random RGB image and an alpha: ``noise`` (every pixel random), ``blob`` (an
    opaque ellipse with a soft rim, the realistic case) or a constant 0 / 255."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if soft == "noise":
        alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
    elif soft == "blob":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = max(1.0, h * rng.uniform(0.1, 0.6)), max(1.0, w * rng.uniform(0.1, 0.6))
        d = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
        alpha = np.clip((1.2 - d) * 5 * 255, 0, 255).astype(np.uint8)
    else:
        alpha = np.full((h, w), 255 if soft == "one" else 0, np.uint8)
    return rgb, alpha


def _check_foreground(rgb: np.ndarray, alpha: np.ndarray, method: str) -> None:
    f = estimate_foreground(rgb, alpha, method)
    assert f.shape == rgb.shape and f.dtype == np.uint8
    if method != "blur_fusion_paper":  # (the paper's update is not exact on a = 1)
        opaque = alpha == 255
        assert np.array_equal(f[opaque], rgb[opaque])
    # deterministic
    assert np.array_equal(f, estimate_foreground(rgb, alpha, method))


# ------------------------------------------------------------------------- foreground


@given(h=any_side, w=any_side)
@settings(max_examples=300, deadline=None, database=None)
def test_pass_schedule_factors_are_powers_of_two(h: int, w: int) -> None:
    for base in (PASSES, FIT_PASSES):
        sched = pass_schedule(h, w, base)
        assert len(sched) == len(base)
        for r, f in sched:
            assert r >= 1 and f >= 1 and f & (f - 1) == 0
            assert f == 1 or min(h, w) / f >= 4


def test_pass_schedule_keeps_aisegment_size() -> None:
    """600x800 (and its power-of-2 multiples) keep the schedule they always had."""
    assert pass_schedule(800, 600) == PASSES
    assert pass_schedule(600, 800, FIT_PASSES) == FIT_PASSES
    assert [f for _, f in pass_schedule(1600, 1200)] == [32, 16, 8, 8]


@pytest.mark.parametrize("size", REAL_SIZES)
def test_estimate_foreground_real_source_sizes(size: tuple[int, int]) -> None:
    h, w = size
    rgb, alpha = _images(h * w, h, w, "blob")
    _check_foreground(rgb, alpha, "blur_fusion")


@given(
    h=small_side,
    w=small_side,
    seed=st.integers(0, 2**32 - 1),
    soft=st.sampled_from(["noise", "blob", "zero", "one"]),
    method=st.sampled_from(["blur_fusion", "blur_fusion_fine", "blur_fusion_v1", "none"]),
)
@SMALL
def test_estimate_foreground_small(h: int, w: int, seed: int, soft: str, method: str) -> None:
    rgb, alpha = _images(seed, h, w, soft)
    _check_foreground(rgb, alpha, method)


@given(h=any_side, w=large_side, seed=st.integers(0, 2**32 - 1), portrait=st.booleans())
@LARGE
def test_estimate_foreground_large(h: int, w: int, seed: int, portrait: bool) -> None:
    h = min(h, 12_000_000 // w)  # at most 4000x3000 worth of pixels
    if portrait:
        h, w = w, h
    rgb, alpha = _images(seed, h, w, "blob")
    _check_foreground(rgb, alpha, "blur_fusion")


@pytest.mark.parametrize("size", [(3000, 4000), (4000, 7), (1, 4000)])
def test_estimate_foreground_extremes(size: tuple[int, int]) -> None:
    h, w = size
    rgb, alpha = _images(7, h, w, "blob")
    f = estimate_foreground(rgb, alpha)
    assert f.shape == rgb.shape and np.array_equal(f[alpha == 255], rgb[alpha == 255])


# ---------------------------------------------------------------------------- compose

cfg_strategy = st.builds(
    lambda size, augment, trimap, keep, crop, p: ComposeConfig(
        size=size,
        augment=augment,
        trimap=TrimapParams() if trimap else None,
        keep_layers=keep,
        bg_crop=crop,
        bg_blur=p,
        noise=p,
        jpeg_match=p,
        color_jitter=p,
    ),
    size=st.one_of(st.none(), st.tuples(st.integers(1, 200), st.integers(1, 200))),
    augment=st.booleans(),
    trimap=st.booleans(),
    keep=st.booleans(),
    crop=st.sampled_from(["random", "center"]),
    p=st.sampled_from([0.0, 1.0]),
)


def _check_composite(comp, cfg: ComposeConfig, fh: int, fw: int, with_ignore: bool) -> None:
    W, H = cfg.size if cfg.size is not None else (fw, fh)
    assert comp.image.shape == (H, W, 3) and comp.image.dtype == np.uint8
    assert comp.alpha.shape == (H, W) and comp.alpha.dtype == np.uint8
    if cfg.trimap is not None:
        assert comp.trimap is not None and comp.trimap.shape == (H, W)
        assert set(np.unique(comp.trimap).tolist()) <= {0, 128, 255}
    else:
        assert comp.trimap is None
    if cfg.keep_layers:
        assert comp.fg is not None and comp.fg.shape == (H, W, 3)
        assert comp.bg is not None and comp.bg.shape == (H, W, 3)
        # without the pixel noise op the stored layers reproduce the image exactly
        if "noise" not in comp.params["domain_gap"]:
            assert np.array_equal(comp.image, composite_rgb(comp.fg, comp.alpha, comp.bg))
    if with_ignore:
        assert comp.ignore is not None and comp.ignore.shape == (H, W)
    else:
        assert comp.ignore is None


@given(
    fh=small_side,
    fw=small_side,
    bh=small_side,
    bw=small_side,
    seed=st.integers(0, 2**32 - 1),
    cfg=cfg_strategy,
    with_ignore=st.booleans(),
)
@SMALL
def test_compose_sample_any_sizes(
    fh: int, fw: int, bh: int, bw: int, seed: int, cfg: ComposeConfig, with_ignore: bool
) -> None:
    fg, alpha = _images(seed, fh, fw, "blob")
    bg, _ = _images(seed + 1, bh, bw, "zero")
    ignore = (alpha > 0).astype(np.uint8) * 255 if with_ignore else None
    bg_before = bg.copy()
    comp = compose_sample(fg, alpha, bg, np.random.default_rng(seed), cfg, ignore)
    _check_composite(comp, cfg, fh, fw, with_ignore)
    assert np.array_equal(bg, bg_before)  # the caller's arrays are never written
    again = compose_sample(fg, alpha, bg, np.random.default_rng(seed), cfg, ignore)
    assert np.array_equal(comp.image, again.image) and comp.params == again.params


@given(
    fh=any_side,
    fw=large_side,
    bh=any_side,
    bw=large_side,
    seed=st.integers(0, 2**32 - 1),
    native=st.booleans(),
)
@LARGE
def test_compose_sample_large(fh: int, fw: int, bh: int, bw: int, seed: int, native: bool) -> None:
    fh = min(fh, 12_000_000 // fw)
    bh = min(bh, 12_000_000 // bw)
    fg, alpha = _images(seed, fh, fw, "blob")
    bg, _ = _images(seed + 1, bh, bw, "zero")
    cfg = ComposeConfig(size=None if native else (512, 512), trimap=TrimapParams())
    comp = compose_sample(fg, alpha, bg, np.random.default_rng(seed), cfg)
    _check_composite(comp, cfg, fh, fw, False)


@given(
    bw=st.integers(1, 5000),
    bh=st.integers(1, 5000),
    ow=st.integers(1, 5000),
    oh=st.integers(1, 5000),
    zoom=st.floats(1.0, 1.5),
    u=st.one_of(st.none(), st.tuples(st.floats(0, 0.999), st.floats(0, 0.999))),
)
@settings(max_examples=300, deadline=None, database=None)
def test_cover_crop_box_inside_background(bw, bh, ow, oh, zoom, u) -> None:
    x0, y0, cw, ch = cover_crop_box(bw, bh, ow, oh, zoom, u)
    assert x0 >= 0 and y0 >= 0 and cw >= 1 and ch >= 1
    assert x0 + cw <= bw and y0 + ch <= bh


# ----------------------------------------------------------------------------- trimap


def _trimap_reference(alpha: np.ndarray, p: TrimapParams) -> np.ndarray:
    """The documented definition: two elliptical ``cv2.erode`` calls."""
    import cv2

    lo, hi = p.thresholds()
    r = p.band_radius(*alpha.shape)
    fg = (alpha >= hi).astype(np.uint8)
    bg = (alpha <= lo).astype(np.uint8)
    if r > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        fg = cv2.erode(fg, k, borderType=cv2.BORDER_REPLICATE)
        bg = cv2.erode(bg, k, borderType=cv2.BORDER_REPLICATE)
    out = np.full(alpha.shape, 128, np.uint8)
    out[fg > 0] = 255
    out[bg > 0] = 0
    return out


@given(
    h=small_side,
    w=small_side,
    seed=st.integers(0, 2**32 - 1),
    soft=st.sampled_from(["noise", "blob", "zero", "one"]),
    rel=st.sampled_from([0.0, 0.005, 0.01, 0.05, 0.3]),
    eps=st.sampled_from([0.0, 0.01, 0.2]),
)
@settings(max_examples=80, deadline=None, database=None)
def test_make_trimap_matches_definition(h, w, seed, soft, rel, eps) -> None:
    _, alpha = _images(seed, h, w, soft)
    p = TrimapParams(eps=eps, rel_width=rel)
    t = make_trimap(alpha, p)
    assert t.shape == alpha.shape and t.dtype == np.uint8
    assert np.array_equal(t, _trimap_reference(alpha, p))


@given(h=any_side, w=large_side, seed=st.integers(0, 2**32 - 1))
@LARGE
def test_make_trimap_large(h: int, w: int, seed: int) -> None:
    h = min(h, 12_000_000 // w)
    _, alpha = _images(seed, h, w, "blob")
    p = TrimapParams()
    assert np.array_equal(make_trimap(alpha, p), _trimap_reference(alpha, p))


# ------------------------------------------------------------------- encode / decode


@given(h=small_side, w=small_side, seed=st.integers(0, 2**32 - 1))
@SMALL
def test_encode_decode_roundtrip_any_size(h: int, w: int, seed: int) -> None:
    rgb, alpha = _images(seed, h, w, "noise")
    assert np.array_equal(decode_alpha(encode_png(alpha), min_side=1), alpha)
    assert np.array_equal(decode_image(encode_png(rgb), min_side=1), rgb)
    assert decode_image(encode_jpeg(rgb), min_side=1).shape == rgb.shape


# --------------------------------------------------------------- annotation rendering


@given(
    h=small_side,
    w=small_side,
    pts=st.lists(
        st.tuples(st.floats(-1e12, 1e12), st.floats(-1e12, 1e12)), min_size=3, max_size=12
    ),
    holes=st.booleans(),
)
@settings(max_examples=80, deadline=None, database=None)
def test_render_polygon_any_size_any_coordinates(h, w, pts, holes) -> None:
    from matdata.sources.supervisely import render_annotation

    obj = {"classTitle": "person", "geometryType": "polygon", "points": {"exterior": pts}}
    if holes:
        obj["points"]["interior"] = [pts[::-1]]
    ann = {"size": {"height": h, "width": w}, "objects": [obj]}
    person, ignore, counts = render_annotation(ann)
    assert person.shape == (h, w) and ignore.shape == (h, w)
    assert set(np.unique(person).tolist()) <= {0, 255}
    assert counts["person"] == 1


@given(
    h=small_side,
    w=small_side,
    mh=st.integers(1, 80),
    mw=st.integers(1, 80),
    x=st.integers(-100, 400),
    y=st.integers(-100, 400),
)
@settings(max_examples=80, deadline=None, database=None)
def test_render_bitmap_any_placement(h, w, mh, mw, x, y) -> None:
    from matdata.sources.supervisely import render_annotation

    mask = np.full((mh, mw), 255, np.uint8)
    data = base64.b64encode(zlib.compress(encode_png(mask))).decode()
    obj = {
        "classTitle": "person",
        "geometryType": "bitmap",
        "bitmap": {"origin": [x, y], "data": data},
    }
    ann = {"size": {"height": h, "width": w}, "objects": [obj]}
    person, _, _ = render_annotation(ann)
    expect = np.zeros((h, w), np.uint8)
    expect[max(y, 0) : max(y + mh, 0), max(x, 0) : max(x + mw, 0)] = 255
    assert np.array_equal(person, expect)


@given(
    h=small_side,
    w=small_side,
    pts=st.lists(st.tuples(st.floats(-3e6, 3e6), st.floats(-3e6, 3e6)), min_size=3, max_size=8),
    anchor=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
@example(h=103, w=1, pts=[(1054530.0, 0.0), (1.0, 0.0), (1.0, 1.0)], anchor=(0.0, 0.875))
@example(h=4, w=1, pts=[(0.0, 3.0), (0.0, 3.0), (1258297.0, 0.0)], anchor=(0.0, 1.0))
@settings(max_examples=30, deadline=None, database=None)
def test_polygon_clipping_keeps_the_mask(h, w, pts, anchor) -> None:
    """A ring reaching far outside the image (clipped before rasterizing) fills the same
    pixels as the ring rasterized as it is, but for ties on its outline (a sliver whose
    edge runs along a pixel row may flip that row's pixels)."""
    import cv2

    from matdata.sources.supervisely import render_annotation

    pts = [(anchor[0] * w, anchor[1] * h), *pts]  # one vertex inside the image
    obj = {"classTitle": "person", "geometryType": "polygon", "points": {"exterior": pts}}
    person, _, _ = render_annotation({"size": {"height": h, "width": w}, "objects": [obj]})
    ring = np.rint(np.asarray(pts)).astype(np.int32)
    direct = np.zeros((h, w), np.uint8)
    cv2.fillPoly(direct, [ring], 255)
    outline = np.zeros((h, w), np.uint8)
    cv2.polylines(outline, [ring], True, 1, thickness=3)
    differ = person != direct
    # Off the outline, a difference is allowed only where OpenCV's own fill of the huge
    # ring is wrong: there the clipped fill must agree with the exact even-odd rule at the
    # pixel centre (cv2 fills a far-reaching sliver's rows on a 1-pixel-wide image).
    off = differ & (outline == 0)
    for y, x in zip(*np.nonzero(off), strict=True):
        assert bool(person[y, x]) == _inside(np.asarray(pts, np.float64), x, y), (y, x)
    assert differ.sum() <= h + w


def _inside(ring: np.ndarray, x: float, y: float) -> bool:
    """Whether point ``(x, y)`` lies inside ``ring`` by the even-odd rule (exact floats)."""
    xs, ys = ring[:, 0], ring[:, 1]
    x2, y2 = np.roll(xs, -1), np.roll(ys, -1)
    crosses = (ys > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = xs + (y - ys) * (x2 - xs) / (y2 - ys)
    return bool(np.count_nonzero(crosses & (x < at)) % 2)
