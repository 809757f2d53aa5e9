"""compose_sample: determinism, exact native alpha, cover-crop geometry, flips, domain gap."""

from __future__ import annotations

import json

import numpy as np
import pytest

from matdata.compose import ComposeConfig, compose_sample, composite_rgb, cover_crop_box
from matdata.trimap import TrimapParams

ALL_GAP = {"bg_blur": 1.0, "noise": 1.0, "jpeg_match": 1.0, "color_jitter": 1.0}


def _fg(w: int = 48, h: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    colors = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    # an asymmetric soft blob in the left part: distinguishable from its mirror image
    d = np.hypot((xx - w * 0.3) / (w * 0.25), (yy - h * 0.6) / (h * 0.35))
    alpha = np.clip((1.2 - d) * 400, 0, 255).astype(np.uint8)
    return colors, alpha


def _bg(w: int = 90, h: int = 50, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _same(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is b
    return np.array_equal(a, b)


@pytest.mark.parametrize("cfg", [ComposeConfig(), ComposeConfig(size=(40, 40), **ALL_GAP)])
def test_deterministic(cfg: ComposeConfig) -> None:
    f, a = _fg()
    bg = _bg()
    cfg = ComposeConfig(**{**cfg.__dict__, "keep_layers": True, "trimap": TrimapParams()})
    c1 = compose_sample(f, a, bg, np.random.default_rng(7), cfg)
    c2 = compose_sample(f, a, bg, np.random.default_rng(7), cfg)
    for name in ("image", "alpha", "fg", "bg", "trimap", "ignore"):
        assert _same(getattr(c1, name), getattr(c2, name)), name
    assert c1.params == c2.params
    others = [compose_sample(f, a, bg, np.random.default_rng(s), cfg).params for s in range(8)]
    assert len({json.dumps(p, sort_keys=True) for p in others}) > 1


def test_native_no_augment_alpha_exact() -> None:
    f, a = _fg(37, 53)
    bg = _bg(200, 30)
    ign = (a > 200).astype(np.uint8) * 255
    cfg = ComposeConfig(size=None, augment=False, keep_layers=True, **ALL_GAP)
    c = compose_sample(f, a, bg, np.random.default_rng(3), cfg, ignore=ign)
    assert c.alpha.dtype == np.uint8 and np.array_equal(c.alpha, a)
    assert np.array_equal(c.ignore, ign)
    assert np.array_equal(c.fg, f)
    assert c.image.shape == f.shape
    assert c.params["domain_gap"] == {} and c.params["flip"] is False
    # the composite is exactly round(a*F + (1-a)*B) of the stored layers
    assert np.array_equal(c.image, composite_rgb(c.fg, c.alpha, c.bg))
    # opaque pixels show the foreground, transparent ones the background
    assert np.array_equal(c.image[a == 255], f[a == 255])
    assert np.array_equal(c.image[a == 0], c.bg[a == 0])


@pytest.mark.parametrize(
    "bg_size,out", [((90, 50), (40, 40)), ((30, 120), (64, 32)), ((20, 15), (80, 60))]
)
@pytest.mark.parametrize("crop", ["random", "center"])
def test_cover_crop_keeps_aspect(bg_size: tuple, out: tuple, crop: str) -> None:
    f, a = _fg()
    bw, bh = bg_size
    W, H = out
    for seed in range(5):
        cfg = ComposeConfig(size=out, bg_crop=crop, keep_layers=True)
        c = compose_sample(f, a, _bg(bw, bh), np.random.default_rng(seed), cfg)
        x0, y0, cw, ch = c.params["bg_crop"]
        assert c.image.shape == (H, W, 3) and c.bg.shape == (H, W, 3)
        assert x0 >= 0 and y0 >= 0 and x0 + cw <= bw and y0 + ch <= bh
        # aspect of the source window equals the output's to within one source pixel
        assert abs(cw * H / W - ch) <= 1.0 and abs(ch * W / H - cw) <= 1.0
        # it covers: one side of the window, zoomed back out, spans the whole background
        # (to within the window's rounding: half a source pixel, times the zoom)
        z = c.params["bg_zoom"]
        assert 1.0 <= z <= cfg.bg_zoom[1]
        assert min(abs(cw * z - bw), abs(ch * z - bh)) <= 0.5 * z + 1e-9, (cw, ch, z)
        # without augment there is no zoom: one side is the background's, exactly
        c0 = compose_sample(f, a, _bg(bw, bh), np.random.default_rng(seed), _no_aug(cfg))
        _, _, cw0, ch0 = c0.params["bg_crop"]
        assert c0.params["bg_zoom"] == 1.0 and (cw0 == bw or ch0 == bh)
        if crop == "center":
            assert abs((bw - cw) - 2 * x0) <= 1 and abs((bh - ch) - 2 * y0) <= 1


def test_cover_crop_box_centred_and_bounds() -> None:
    assert cover_crop_box(200, 100, 50, 50, 1.0, None) == (50, 0, 100, 100)
    assert cover_crop_box(200, 100, 50, 50, 1.0, (0.999, 0.5)) == (100, 0, 100, 100)
    assert cover_crop_box(200, 100, 50, 50, 2.0, (0.0, 0.0)) == (0, 0, 50, 50)


def test_flip_consistency_between_image_alpha_and_ignore() -> None:
    f, a = _fg(48, 64)
    ign = np.zeros_like(a)
    ign[5:15, 2:10] = 255
    cfg = ComposeConfig(fg_scale=(1.0, 1.0), jitter=0.0, flip_prob=1.0, keep_layers=True)
    c = compose_sample(f, a, _bg(), np.random.default_rng(0), cfg, ignore=ign)
    assert c.params["flip"] is True
    assert np.array_equal(c.alpha, a[:, ::-1])
    assert np.array_equal(c.fg, f[:, ::-1])
    assert np.array_equal(c.ignore, ign[:, ::-1])
    opaque = c.alpha == 255
    assert np.array_equal(c.image[opaque], f[:, ::-1][opaque])
    assert np.array_equal(c.image, composite_rgb(c.fg, c.alpha, c.bg))
    cfg0 = ComposeConfig(fg_scale=(1.0, 1.0), jitter=0.0, flip_prob=0.0)
    c0 = compose_sample(f, a, _bg(), np.random.default_rng(0), cfg0)
    assert c0.params["flip"] is False and np.array_equal(c0.alpha, a)


def test_sized_output_geometry_and_soft_resize() -> None:
    f, a = _fg(48, 64)
    ign = (a > 128).astype(np.uint8) * 255
    cfg = ComposeConfig(size=(100, 60), keep_layers=True, trimap=TrimapParams(rel_width=0.02))
    for seed in range(6):
        c = compose_sample(f, a, _bg(), np.random.default_rng(seed), cfg, ignore=ign)
        assert c.image.shape == (60, 100, 3) and c.alpha.shape == (60, 100)
        sw, sh = c.params["fg_scaled_size"]
        s = c.params["fg_scale"]
        assert abs(sw - 48 * s) <= 1 and abs(sh - 64 * s) <= 1
        assert 0.75 * 60 / 64 - 1e-9 <= s <= 60 / 64 + 1e-9
        assert set(np.unique(c.ignore)) <= {0, 255}  # nearest keeps a mask binary
        assert set(np.unique(c.trimap)) <= {0, 128, 255}
        assert c.params["trimap"]["radius"] == round(0.02 * (60 * 100) ** 0.5)
        assert np.array_equal(c.image, composite_rgb(c.fg, c.alpha, c.bg))
    # area/bilinear resampling keeps fractional alpha (nearest would not invent levels)
    big = compose_sample(f, a, _bg(), np.random.default_rng(0), ComposeConfig(size=(300, 300)))
    soft_in = len(np.unique(a))
    assert len(np.unique(big.alpha)) > soft_in


def test_domain_gap_recorded_and_json() -> None:
    f, a = _fg()
    cfg = ComposeConfig(size=(48, 48), keep_layers=True, **ALL_GAP)
    c = compose_sample(f, a, _bg(), np.random.default_rng(11), cfg)
    gap = c.params["domain_gap"]
    assert set(gap) == set(ALL_GAP)
    q = gap["jpeg_match"]["quality"]
    assert cfg.jpeg_match_quality[0] <= q <= cfg.jpeg_match_quality[1]
    assert cfg.bg_blur_sigma[0] <= gap["bg_blur"]["sigma"] <= cfg.bg_blur_sigma[1]
    assert cfg.noise_sigma[0] <= gap["noise"]["sigma"] <= cfg.noise_sigma[1]
    assert set(gap["color_jitter"]) == {"fg", "bg"}
    assert json.loads(json.dumps(c.params)) == c.params
    # the ops change pixels: same draws without them give another image
    plain = compose_sample(f, a, _bg(), np.random.default_rng(11), ComposeConfig(size=(48, 48)))
    assert plain.params["domain_gap"] == {}
    assert np.array_equal(plain.alpha, c.alpha)
    assert not np.array_equal(plain.image, c.image)


def _no_aug(cfg: ComposeConfig) -> ComposeConfig:
    return ComposeConfig(**{**cfg.__dict__, "augment": False})


def _gap_alone(op: str, **extra: float) -> tuple:
    """The same draws with only ``op`` on (probability 1) and with no op: both composites."""
    f, a = _fg()
    cfg = ComposeConfig(size=(48, 48), keep_layers=True, **{op: 1.0}, **extra)
    c = compose_sample(f, a, _bg(), np.random.default_rng(5), cfg)
    plain_cfg = ComposeConfig(size=(48, 48), keep_layers=True)
    plain = compose_sample(f, a, _bg(), np.random.default_rng(5), plain_cfg)
    assert set(c.params["domain_gap"]) == {op} and plain.params["domain_gap"] == {}
    # the ops are drawn after the geometry: everything else is the same
    drop = ("domain_gap",)
    assert {k: v for k, v in c.params.items() if k not in drop} == {
        k: v for k, v in plain.params.items() if k not in drop
    }
    assert np.array_equal(c.alpha, plain.alpha)
    return c, plain


def _sharpness(rgb: np.ndarray) -> float:
    x = rgb.astype(np.float64)
    return float(np.abs(np.diff(x, axis=0)).mean() + np.abs(np.diff(x, axis=1)).mean())


def test_domain_gap_bg_blur_alone() -> None:
    c, plain = _gap_alone("bg_blur", bg_blur_sigma=(1.5, 2.5))
    assert np.array_equal(c.fg, plain.fg)  # the foreground is not blurred
    # the background loses most of its pixel-to-pixel detail (random noise, sigma >= 1.5)
    assert _sharpness(c.bg) < 0.5 * _sharpness(plain.bg)
    assert abs(c.bg.astype(float).mean() - plain.bg.astype(float).mean()) < 3
    assert np.array_equal(c.image, composite_rgb(c.fg, c.alpha, c.bg))
    assert not np.array_equal(c.image, plain.image)


def test_domain_gap_jpeg_match_alone() -> None:
    import cv2

    c, plain = _gap_alone("jpeg_match")
    q = c.params["domain_gap"]["jpeg_match"]["quality"]

    def jpeg(rgb: np.ndarray) -> np.ndarray:
        ok, buf = cv2.imencode(".jpg", rgb[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, q])
        assert ok
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]

    # both layers went through JPEG at the same recorded quality
    assert not np.array_equal(c.bg, plain.bg) and not np.array_equal(c.fg, plain.fg)
    assert np.array_equal(c.bg, jpeg(plain.bg)) and np.array_equal(c.fg, jpeg(plain.fg))
    assert np.array_equal(c.image, composite_rgb(c.fg, c.alpha, c.bg))


def test_domain_gap_color_jitter_alone() -> None:
    c, plain = _gap_alone("color_jitter", color_jitter_strength=0.3)
    gains = c.params["domain_gap"]["color_jitter"]
    assert gains["fg"] != gains["bg"]  # drawn independently for each layer
    for layer, name in ((c.bg, "bg"), (c.fg, "fg")):
        base = getattr(plain, name)
        assert not np.array_equal(layer, base), name
    # brightness scales the background's mean grey (contrast and saturation keep it,
    # up to clipping at 0 / 255 and rounding)
    want = plain.bg.astype(float).mean() * gains["bg"]["brightness"]
    assert abs(c.bg.astype(float).mean() - want) < 4, (c.bg.mean(), want)
    assert np.array_equal(c.image, composite_rgb(c.fg, c.alpha, c.bg))


def test_domain_gap_noise_alone() -> None:
    c, plain = _gap_alone("noise", noise_sigma=(4.0, 6.0))
    sigma = c.params["domain_gap"]["noise"]["sigma"]
    # the layers are untouched; the noise is on the composite, zero-mean with that sigma
    assert np.array_equal(c.fg, plain.fg) and np.array_equal(c.bg, plain.bg)
    clean = composite_rgb(c.fg, c.alpha, c.bg).astype(float)
    assert np.array_equal(clean, plain.image.astype(float))
    inner = (clean > 20) & (clean < 235)  # away from clipping
    resid = (c.image.astype(float) - clean)[inner]
    assert abs(resid.mean()) < 0.5 and 0.8 * sigma < resid.std() < 1.2 * sigma


def test_config_json_roundtrip_and_validation() -> None:
    cfg = ComposeConfig(size=(64, 32), trimap=TrimapParams(eps=0.02), bg_blur=0.5)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["size"] == [64, 32] and d["trimap"]["eps"] == 0.02
    assert ComposeConfig.from_dict(d) == cfg
    with pytest.raises(ValueError):
        ComposeConfig(noise=2.0)
    with pytest.raises(ValueError):
        ComposeConfig(bg_crop="squash")
    with pytest.raises(ValueError):
        compose_sample(*_fg(), _bg().astype(np.float32), np.random.default_rng(0), cfg)


def test_composite_equation() -> None:
    rng = np.random.default_rng(2)
    f = rng.integers(0, 256, (33, 21, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (33, 21, 3), dtype=np.uint8)
    a = rng.integers(0, 256, (33, 21), dtype=np.uint8)
    a[0], a[1] = 0, 255
    out = composite_rgb(f, a, b)
    af = a.astype(np.float64)[:, :, None] / 255.0
    ref = af * f + (1 - af) * b
    assert out.dtype == np.uint8
    assert np.abs(out - ref).max() <= 0.5 + 1e-3
    assert np.array_equal(out[0], b[0]) and np.array_equal(out[1], f[1])


@pytest.mark.parametrize(
    "size, jitter, seed",
    [((40, 40), 0.1, 0), ((64, 48), 0.6, 1), ((90, 50), 0.0, 2), (None, 0.3, 3)],
)
def test_box_blend_equals_full_canvas_composite(
    size: tuple | None, jitter: float, seed: int
) -> None:
    """Without layers kept, the composite blends only the box of alpha > 0 into the
    background in place; it must equal the full-canvas composite of the kept layers (same
    draws), leave the caller's arrays untouched, and cover frames the fg partly leaves."""
    f, a = _fg(seed=seed)
    bg = _bg(seed=seed + 1)
    bg0, f0, a0 = bg.copy(), f.copy(), a.copy()
    for s in range(6):
        kw = {"size": size, "jitter": jitter, "bg_blur": 0.5}
        lean = compose_sample(f, a, bg, np.random.default_rng(s), ComposeConfig(**kw))
        full = compose_sample(
            f, a, bg, np.random.default_rng(s), ComposeConfig(**kw, keep_layers=True)
        )
        assert lean.params == full.params
        assert np.array_equal(lean.alpha, full.alpha)
        assert np.array_equal(lean.image, full.image)
        assert np.array_equal(lean.image, composite_rgb(full.fg, full.alpha, full.bg))
        assert lean.fg is None and lean.bg is None
    assert np.array_equal(bg, bg0) and np.array_equal(f, f0) and np.array_equal(a, a0)


@pytest.mark.parametrize(("fg_size", "out"), [((2, 1), (1, 1)), ((1001, 1000), (1000, 999))])
def test_a_scale_that_rounds_to_the_canvas_still_resizes(fg_size: tuple, out: tuple) -> None:
    """Found by the property test: a foreground whose scaled size rounds to the canvas was
    taken as already in place and came back at its own size."""
    fw, fh = fg_size
    rng = np.random.default_rng(0)
    f = rng.integers(0, 256, (fh, fw, 3), dtype=np.uint8)
    a = rng.integers(0, 256, (fh, fw), dtype=np.uint8)
    cfg = ComposeConfig(size=out, augment=False, keep_layers=True)
    c = compose_sample(f, a, _bg(), np.random.default_rng(1), cfg)
    assert c.alpha.shape == (out[1], out[0]) and c.image.shape == (out[1], out[0], 3)
    assert np.array_equal(c.image, composite_rgb(c.fg, c.alpha, c.bg))
