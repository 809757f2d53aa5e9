"""Trimaps: value set, eps thresholds, band width scaling with resolution."""

from __future__ import annotations

import json

import numpy as np
import pytest

from matdata.trimap import TrimapParams, make_trimap, random_trimap_params


def _disk(size: int, frac: float = 0.3) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(xx - size / 2 + 0.5, yy - size / 2 + 0.5)
    return np.where(r < frac * size, 255, 0).astype(np.uint8)


def _unknown_run(trimap: np.ndarray, row: int) -> int:
    """Length of the first run of unknown pixels along a row (one edge crossing)."""
    line = trimap[row] == 128
    idx = np.flatnonzero(line)
    assert idx.size > 0
    run = 1
    while run < idx.size and idx[run] == idx[0] + run:
        run += 1
    return run


def test_values_and_known_regions() -> None:
    alpha = _disk(64)
    t = make_trimap(alpha, TrimapParams(rel_width=0.05))
    assert t.dtype == np.uint8 and t.shape == alpha.shape
    assert set(np.unique(t)) == {0, 128, 255}
    # known fg only where alpha is fg, known bg only where alpha is bg
    assert np.all(alpha[t == 255] == 255)
    assert np.all(alpha[t == 0] == 0)
    # centre and corner are known
    assert t[32, 32] == 255 and t[0, 0] == 0


def test_step_edge_band_is_exactly_two_radii() -> None:
    alpha = np.zeros((40, 80), np.uint8)
    alpha[:, 40:] = 255
    for r in (1, 3, 7):
        t = make_trimap(alpha, TrimapParams(width=r))
        cols = np.flatnonzero(t[20] == 128)
        assert cols.tolist() == list(range(40 - r, 40 + r))
        # the image border does not create an unknown band
        assert t[0, 79] == 255 and t[39, 0] == 0
    t0 = make_trimap(alpha, TrimapParams(width=0))
    assert not np.any(t0 == 128)


def test_band_width_scales_with_resolution() -> None:
    p = TrimapParams(rel_width=0.03)
    small = make_trimap(_disk(100), p)
    large = make_trimap(_disk(400), p)
    assert p.band_radius(100, 100) == 3 and p.band_radius(400, 400) == 12
    w_small = _unknown_run(small, 50)
    w_large = _unknown_run(large, 200)
    assert w_small == 2 * 3
    assert w_large == 2 * 12
    # the unknown area grows like the square of the side (band width x perimeter)
    ratio = (large == 128).sum() / (small == 128).sum()
    assert 12 < ratio < 20


def test_eps_thresholds() -> None:
    alpha = np.full((30, 30), 250, np.uint8)
    alpha[:, :10] = 3
    # eps = 0.01: 250 < 253 and 3 > 2 -> everything unknown
    t = make_trimap(alpha, TrimapParams(eps=0.01, width=0))
    assert np.all(t == 128)
    # eps = 0.05: 250 >= 243 is known fg, 3 <= 12 known bg
    t = make_trimap(alpha, TrimapParams(eps=0.05, width=0))
    assert np.all(t[:, 10:] == 255) and np.all(t[:, :10] == 0)
    assert TrimapParams(eps=0.0).thresholds() == (0, 255)
    # fractional alpha inside the subject stays unknown whatever the band
    a2 = _disk(64)
    a2[30:34, 30:34] = 128
    t2 = make_trimap(a2, TrimapParams(width=1))
    assert np.all(t2[30:34, 30:34] == 128)


def test_params_validation_and_json() -> None:
    with pytest.raises(ValueError):
        TrimapParams(eps=0.7)
    with pytest.raises(ValueError):
        TrimapParams(width=-1)
    with pytest.raises(ValueError):
        make_trimap(np.zeros((4, 4), np.float32))
    p = TrimapParams(eps=0.02, rel_width=0.02, width=None)
    assert TrimapParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_random_params_deterministic_and_in_range() -> None:
    a = [random_trimap_params(np.random.default_rng(5)) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(1)
    vals = [random_trimap_params(rng, (0.01, 0.02)).rel_width for _ in range(50)]
    assert min(vals) >= 0.01 and max(vals) <= 0.02 and len(set(vals)) == 50


def _reference_trimap(alpha: np.ndarray, params: TrimapParams) -> np.ndarray:
    """The documented definition, written directly: two elliptical ``cv2.erode`` calls."""
    import cv2

    lo, hi = params.thresholds()
    fg = (alpha >= hi).astype(np.uint8)
    bg = (alpha <= lo).astype(np.uint8)
    r = params.band_radius(*alpha.shape)
    if r > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        fg = cv2.erode(fg, k, borderType=cv2.BORDER_REPLICATE)
        bg = cv2.erode(bg, k, borderType=cv2.BORDER_REPLICATE)
    t = np.full(alpha.shape, 128, np.uint8)
    t[fg > 0] = 255
    t[bg > 0] = 0
    return t


def test_same_as_elliptical_erosion() -> None:
    """The bit-packed erosion gives exactly the two-``cv2.erode`` trimap: soft and hard
    edges, thin and odd-sized images (strip split), radii up to larger than the image."""
    import cv2

    rng = np.random.default_rng(0)
    shapes = [(1, 1), (1, 17), (17, 1), (3, 5), (7, 64), (64, 7), (33, 50), (90, 61)]
    for i in range(120):
        h, w = shapes[i % len(shapes)] if i < len(shapes) else rng.integers(1, 90, 2)
        low = rng.integers(0, 256, (int(rng.integers(1, 6)), int(rng.integers(1, 6))), np.uint8)
        a = cv2.resize(low, (int(w), int(h)), interpolation=cv2.INTER_LINEAR)
        a = np.where(a > 170, 255, np.where(a < 90, 0, a)).astype(np.uint8)
        if i % 3 == 0:  # hard edges only
            a = np.where(a >= 128, 255, 0).astype(np.uint8)
        p = TrimapParams(eps=float(rng.uniform(0, 0.3)), width=int(rng.integers(0, 40)))
        assert np.array_equal(make_trimap(a, p), _reference_trimap(a, p)), (a.shape, p)
    big = _disk(300, 0.35)
    big = cv2.GaussianBlur(big, (9, 9), 3)
    for p in (TrimapParams(), TrimapParams(rel_width=0.03), TrimapParams(width=1)):
        assert np.array_equal(make_trimap(big, p), _reference_trimap(big, p))


def test_out_parameter() -> None:
    alpha = _disk(48)
    p = TrimapParams(width=3)
    ref = make_trimap(alpha, p)
    canvas = np.full((2, 60, 70), 7, np.uint8)
    view = canvas[1, 5:53, 10:58]  # a strided view of a larger array
    got = make_trimap(alpha, p, out=view)
    assert got is view and np.array_equal(view, ref)
    assert np.all(canvas[0] == 7) and np.all(canvas[1, :5] == 7) and np.all(canvas[1, :, :10] == 7)
    with pytest.raises(ValueError):
        make_trimap(alpha, p, out=np.empty((48, 47), np.uint8))
