"""Foreground colour estimation on synthetic composites with a known foreground."""

from __future__ import annotations

import numpy as np
import pytest

from matdata.compose import composite_rgb
from matdata.foreground import METHODS, estimate_foreground, pass_schedule
from matdata.sources.demo import demo_foreground_layers


def _err(est: np.ndarray, true: np.ndarray, alpha: np.ndarray) -> float:
    """Alpha-weighted MSE of F over alpha > 0 (uint8 units squared)."""
    w = alpha.astype(np.float64) / 255.0
    d = (est.astype(np.float64) - true.astype(np.float64)) ** 2
    return float((d * w[:, :, None]).sum() / (3 * w.sum()))


@pytest.mark.parametrize("index", [0, 3])
def test_blur_fusion_beats_raw_image(index: int) -> None:
    f_true, alpha, photo = demo_foreground_layers(index, (96, 128))
    raw = _err(estimate_foreground(photo, alpha, "none"), f_true, alpha)
    fused = _err(estimate_foreground(photo, alpha), f_true, alpha)
    paper = _err(estimate_foreground(photo, alpha, "blur_fusion_paper"), f_true, alpha)
    fine = _err(estimate_foreground(photo, alpha, "blur_fusion_fine"), f_true, alpha)
    assert fused < 0.25 * raw
    assert fine < 0.25 * raw
    assert paper < raw


def test_halo_reduction_on_new_background() -> None:
    """Compositing the estimate over a new background is closer to the truth than
    compositing the source photo (which drags its old backdrop into the soft edge)."""
    f_true, alpha, photo = demo_foreground_layers(1, (96, 128))
    new_bg = np.zeros_like(photo)
    new_bg[..., 2] = 255  # pure blue scene
    truth = composite_rgb(f_true, alpha, new_bg).astype(np.float64)
    soft = (alpha > 0) & (alpha < 255)
    halo = np.abs(composite_rgb(photo, alpha, new_bg) - truth)[soft].mean()
    fixed = np.abs(composite_rgb(estimate_foreground(photo, alpha), alpha, new_bg) - truth)
    assert fixed[soft].mean() < 0.5 * halo


def test_opaque_pixels_keep_the_photo_and_shapes() -> None:
    f_true, alpha, photo = demo_foreground_layers(2, (64, 80))
    opaque = alpha == 255
    assert opaque.any()
    for method in ("blur_fusion", "blur_fusion_fine", "blur_fusion_v1"):
        est = estimate_foreground(photo, alpha, method)
        assert est.dtype == np.uint8 and est.shape == photo.shape
        assert np.array_equal(est[opaque], photo[opaque])


def test_deterministic_and_bad_input() -> None:
    _, alpha, photo = demo_foreground_layers(0, (64, 80))
    assert np.array_equal(estimate_foreground(photo, alpha), estimate_foreground(photo, alpha))
    with pytest.raises(ValueError):
        estimate_foreground(photo, alpha[:-1])
    with pytest.raises(ValueError):
        estimate_foreground(photo.astype(np.float32), alpha)
    with pytest.raises(ValueError):
        estimate_foreground(photo, alpha, "nope")
    assert "blur_fusion" in METHODS


def test_pass_schedule_scales_only_for_large_images() -> None:
    assert pass_schedule(256, 192) == pass_schedule(800, 600)
    big = pass_schedule(2800, 2100)
    assert big[0][0] > pass_schedule(800, 600)[0][0] * 2
    # tiny images keep at least 4 px per side on the coarsest level
    assert all(min(20, 24) / d >= 4 for _, d in pass_schedule(20, 24))


def test_odd_and_tiny_sizes() -> None:
    for w, h in ((33, 47), (17, 16), (200, 3)):
        rng = np.random.default_rng(w)
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
        for method in ("blur_fusion", "blur_fusion_fine", "blur_fusion_v1"):
            est = estimate_foreground(rgb, alpha, method)
            assert est.shape == rgb.shape
            assert np.array_equal(est[alpha == 255], rgb[alpha == 255])


@pytest.mark.parametrize("value", [0, 128, 255])
def test_constant_alpha(value: int) -> None:
    rgb = np.random.default_rng(value).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    alpha = np.full((40, 30), value, np.uint8)
    for method in ("blur_fusion", "blur_fusion_fine", "blur_fusion_v1", "blur_fusion_paper"):
        est = estimate_foreground(rgb, alpha, method)
        assert est.shape == rgb.shape and est.dtype == np.uint8
        if value == 255:
            assert np.array_equal(est, rgb)


def _fringe_over_edge(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(photo, alpha, F_true)``: an opaque disc with a wide speckled fringe (alpha
    0.2..0.9 at random) of one colour, over a scene with a sharp bright/dark edge running
    under the fringe (the case blurred background estimates get wrong)."""
    rng = np.random.default_rng(seed)
    h, w = 160, 160
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(xx - 80, yy - 100)
    alpha = np.zeros((h, w), np.float64)
    ring = (d >= 30) & (d < 55)
    alpha[ring] = rng.uniform(0.2, 0.9, int(ring.sum()))
    alpha[d < 30] = 1.0
    a8 = np.rint(alpha * 255).astype(np.uint8)
    f_true = np.empty((h, w, 3), np.uint8)
    f_true[:] = (200, 90, 30)
    scene = np.empty((h, w, 3), np.uint8)
    scene[:] = (40, 30, 60)
    scene[:, :70] = (240, 220, 230)  # a bright window whose edge lies under the fringe
    return composite_rgb(f_true, a8, scene), a8, f_true


def test_local_fit_recovers_fringe_colour_over_sharp_scene_edge() -> None:
    """The default's local linear fit separates a speckled fringe's colour from a sharp
    scene edge behind it; the previous blur-only estimator leaks the scene into F."""
    photo, alpha, f_true = _fringe_over_edge()
    soft = (alpha > 51) & (alpha < 255)  # a > 0.2: F is well determined there
    away = soft.copy()
    away[:, 60:80] = False  # windows straddling the scene edge break the local model
    err, err_away = {}, {}
    for method in ("blur_fusion", "blur_fusion_v1", "none"):
        d = np.abs(estimate_foreground(photo, alpha, method).astype(np.float64) - f_true)
        err[method] = float(d[soft].mean())  # uint8 levels, mean over the fringe
        err_away[method] = float(d[away].mean())
    assert err["blur_fusion"] < 0.4 * err["blur_fusion_v1"]
    assert err_away["blur_fusion"] < 3.0 < err_away["blur_fusion_v1"]
    assert err["blur_fusion_v1"] < err["none"]


def test_default_and_v1_are_distinct_methods() -> None:
    f_true, alpha, photo = demo_foreground_layers(4, (96, 128))
    new = estimate_foreground(photo, alpha, "blur_fusion")
    old = estimate_foreground(photo, alpha, "blur_fusion_v1")
    assert not np.array_equal(new, old)
    assert _err(new, f_true, alpha) < _err(old, f_true, alpha)
