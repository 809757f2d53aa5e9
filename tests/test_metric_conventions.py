"""Metric inputs are validated, and the two published conventions (DIM MATLAB, GCA Python)
give their own known answers on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matdata.errors import MatdataError
from matdata.metrics import (
    MetricInputError,
    MetricSums,
    connectivity_error,
    gradient_error,
    mad_error,
    matte_errors,
    mse_error,
    sad_error,
    unknown_mask,
)


def _brute_grad(a: np.ndarray, sigma: float = 1.4) -> np.ndarray:
    """|grad a|: direct 2-D convolution with hx(i,j) = G(i) dG(j) / ||.||, replicate borders."""
    u = np.arange(-4, 5, dtype=float)
    gauss = np.exp(-(u**2) / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))
    hx = gauss[:, None] * (-u * gauss / sigma**2)[None, :]
    hx /= np.sqrt(np.sum(hx**2))
    p = np.pad(a, 4, mode="edge")
    gx, gy = np.zeros_like(a), np.zeros_like(a)
    for y in range(a.shape[0]):
        for x in range(a.shape[1]):
            win = p[y : y + 9, x : x + 9][::-1, ::-1]
            gx[y, x], gy[y, x] = np.sum(win * hx), np.sum(win * hx.T)
    return np.hypot(gx, gy)


# ------------------------------------------------------------------------ conventions


def test_grad_dim_normalises_each_matte_by_its_own_range():
    gt = np.zeros((10, 12), np.uint8)
    gt[:, 6:] = 255
    pred = (gt // 2).astype(np.uint8)  # the same edge at half height: 0 / 127
    # DIM: mat2gray(pred) == mat2gray(gt) -> no gradient error at all
    assert gradient_error(pred, gt, convention="dim") == pytest.approx(0.0, abs=1e-15)
    # GCA: /255 -> |grad pred| = 127/255 |grad gt|
    g = _brute_grad(gt / 255.0)
    expected = np.sum((127 / 255 * g - g) ** 2) / 1000
    assert gradient_error(pred, gt, convention="gca") == pytest.approx(expected, rel=1e-9)
    assert expected > 1e-4  # the two conventions really differ here


def test_grad_dim_matches_mat2gray_formula():
    rng = np.random.default_rng(3)
    gt = np.clip(rng.random((9, 11)) * 1.4 - 0.2, 0, 1)
    pred = 0.2 + 0.5 * rng.random((9, 11))  # range [0.2, 0.7]: stretched by mat2gray
    pn = (pred - pred.min()) / (pred.max() - pred.min())
    gn = (gt - gt.min()) / (gt.max() - gt.min())
    expected = np.sum((_brute_grad(pn) - _brute_grad(gn)) ** 2) / 1000
    assert gradient_error(pred, gt, convention="dim") == pytest.approx(expected, rel=1e-9)
    # a constant matte has no gradient under either convention
    flat = np.full((9, 11), 0.4)
    for conv in ("dim", "gca"):
        assert gradient_error(flat, flat, convention=conv) == 0.0


def test_conn_153_passes_the_06_threshold_in_single_precision():
    gt = np.full((3, 3), 255, np.uint8)
    pred = gt.copy()
    pred[0, 0] = 153  # 153/255 = 0.6
    # DIM (single): 0.6f >= single(0.6) -> connected until t = 0.7, l = 0.6:
    #   phi(pred) = 1 - 0 = 1 (0.6 - 0.6 < 0.15), phi(gt) = 1 - 0.4 = 0.6 -> 0.4
    assert connectivity_error(pred, gt, convention="dim") == pytest.approx(0.4 / 1000, rel=1e-6)
    # GCA (float64): 0.59999.. < 0.6000..01 -> drops at t = 0.6, l = 0.5:
    #   phi(pred) = 1 (0.1 < 0.15), phi(gt) = 1 - 0.5 = 0.5 -> 0.5
    assert connectivity_error(pred, gt, convention="gca") == pytest.approx(0.5 / 1000, rel=1e-9)


def test_conn_matlab_colon_thresholds_at_every_level():
    """Values k*51 are exactly k/5 in single precision: each stays until its own threshold."""
    gt = np.full((1, 2), 255, np.uint8)
    ts = [np.float32(j / 10 if j <= 5 else 1 - (10 - j) / 10) for j in range(11)]  # 0:0.1:1
    theta = np.float32(0.15)
    for value in (51, 77, 102, 128, 153, 179, 204):
        pred = gt.copy()
        pred[0, 0] = value
        a = np.float32(value) / np.float32(255)
        level = max(t for t in ts[:-1] if a >= t)  # last threshold the pixel still passed
        dp, dg = a - level, np.float32(1) - level
        phi_p = 1 - (dp if dp >= theta else 0)
        phi_g = 1 - (dg if dg >= theta else 0)
        got = connectivity_error(pred, gt, convention="dim")
        assert got == pytest.approx(abs(phi_p - phi_g) / 1000, rel=1e-6), value
        if value % 51 == 0:  # exactly k/5: l = value/255, so phi(pred) = 1, error 1 - l
            assert got == pytest.approx((1 - value / 255) / 1000, rel=1e-6), value


def test_sad_mse_mad_do_not_depend_on_the_convention():
    rng = np.random.default_rng(0)
    gt = (rng.random((8, 8)) * 255).astype(np.uint8)
    pred = (rng.random((8, 8)) * 255).astype(np.uint8)
    t = np.zeros((8, 8), np.uint8)
    t[2:6] = 128
    a = matte_errors(pred, gt, t, convention="dim")
    b = matte_errors(pred, gt, t, convention="gca")
    for r in ("unknown", "whole"):
        for k in ("sad", "mse", "mad"):
            assert a[r][k] == b[r][k]
    d = pred / 255 - gt / 255
    m = t == 128
    assert a["unknown"]["sad"] == pytest.approx(np.abs(d[m]).sum() / 1000)
    assert a["unknown"]["mse"] == pytest.approx((d[m] ** 2).mean())
    assert a["whole"]["mad"] == pytest.approx(np.abs(d).mean())


def test_metric_sums_keep_their_convention():
    gt = np.zeros((6, 6))
    gt[:, 3:] = 1
    s = MetricSums(regions=("whole",), convention="gca")
    s.add(gt * 0.5, gt)
    assert s.result()["whole"]["grad"] > 0
    d = MetricSums(regions=("whole",), convention="dim")
    d.add(gt * 0.5, gt)
    assert d.result()["whole"]["grad"] == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(MetricInputError, match="cannot add"):
        s + d
    with pytest.raises(MetricInputError, match="convention"):
        MetricSums(convention="matlab")


# ------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("pred", "match"),
    [
        (np.full((4, 4), 200.0), r"\[200, 200\], expected \[0, 1\]"),  # float in 0..255
        (np.zeros((4, 4), np.int64), "dtype int64"),
        (np.zeros((4, 4), np.uint16), "dtype uint16"),
        (np.zeros((4, 4), bool), "dtype bool"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.zeros((4, 4, 1)), "2-D"),
        (np.full((4, 4), -0.1), "expected"),
    ],
)
def test_bad_mattes_are_named(pred, match):
    gt = np.zeros((4, 4), np.uint8)
    for fn in (sad_error, mse_error, mad_error, gradient_error, connectivity_error):
        with pytest.raises(MetricInputError, match=match):
            fn(pred, gt)
        with pytest.raises(MetricInputError, match=match):
            fn(gt, pred)  # gt is checked just as well
    with pytest.raises(MetricInputError, match=match):
        matte_errors(pred, gt)
    with pytest.raises(MatdataError):  # one error family, caught by the CLI
        MetricSums(regions=("whole",)).add(pred, gt)


def test_float_matte_in_255_units_says_divide():
    with pytest.raises(MetricInputError) as info:
        sad_error(np.full((2, 2), 255.0), np.zeros((2, 2)))
    assert "divide by 255" in info.value.one_line()


@pytest.mark.parametrize(
    ("trimap", "match"),
    [
        (np.full((4, 4), 128, np.int64) * np.eye(4, dtype=np.int64) + 1, "outside"),
        (np.full((4, 4), 128.0), "outside"),  # float in 0..255 units
        (np.full((4, 4), 0.4), "outside"),
        (np.zeros((4, 4), bool), "dtype bool"),
        (np.zeros((4, 5), np.uint8), "does not match"),
    ],
)
def test_bad_trimaps_are_named(trimap, match):
    p = np.zeros((4, 4))
    with pytest.raises(MetricInputError, match=match):
        matte_errors(p, p, trimap)


def test_accepted_trimap_forms_agree():
    t8 = np.array([[0, 128], [255, 128]], np.uint8)
    expected = np.array([[False, True], [False, True]])
    for t in (t8, t8.astype(np.int64), t8.astype(np.int32), t8 / 255 * 0 + (t8 / 255.0)):
        if np.issubdtype(t.dtype, np.floating):
            t = np.where(t8 == 128, 0.5, t8 / 255.0)
        assert np.array_equal(unknown_mask(t), expected)


def test_masks_must_be_bool_and_same_shape():
    p = np.zeros((3, 3))
    with pytest.raises(MetricInputError, match="bool"):
        sad_error(p, p, np.ones((3, 3), np.uint8))
    with pytest.raises(MetricInputError, match="does not match"):
        sad_error(p, p, np.ones((3, 4), bool))
    with pytest.raises(MetricInputError, match="equal shapes"):
        sad_error(p, np.zeros((3, 4)))


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    seed=st.integers(0, 2**16),
    conv=st.sampled_from(["dim", "gca"]),
)
def test_uint8_and_float_inputs_agree_over_sizes(h, w, seed, conv):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 256, (h, w), dtype=np.uint8)
    pred = rng.integers(0, 256, (h, w), dtype=np.uint8)
    t = rng.choice(np.array([0, 128, 255], np.uint8), (h, w))
    a = matte_errors(pred, gt, t, convention=conv)
    b = matte_errors(pred / 255.0, gt / 255.0, np.where(t == 128, 0.5, t / 255.0), convention=conv)
    for r in a:
        for k in a[r]:
            assert np.isnan(a[r][k]) == np.isnan(b[r][k])
            if not np.isnan(a[r][k]):
                assert a[r][k] == pytest.approx(b[r][k], rel=1e-9, abs=1e-12)
                assert a[r][k] >= 0
