"""Matting metrics (alphamatting.com definitions) against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from matdata.metrics import (
    METRICS,
    MetricSums,
    connectivity_error,
    gaussian_derivative_taps,
    gradient_error,
    mad_error,
    matte_errors,
    mse_error,
    reduce_sums,
    sad_error,
    unknown_mask,
)


def _rng_matte(seed: int, shape=(24, 32)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.zeros(shape)
    a[6:18, 8:24] = 1.0
    a[4:20, 6:26] += 0.3 * rng.random((16, 20))
    return np.clip(a, 0, 1)


def _trimap(shape=(24, 32)) -> np.ndarray:
    t = np.zeros(shape, np.uint8)
    t[4:20, 6:26] = 128
    t[8:16, 10:22] = 255
    return t


def test_perfect_prediction_is_zero():
    gt = _rng_matte(0)
    errors = matte_errors(gt.copy(), gt, _trimap())
    for region in ("unknown", "whole"):
        for k in METRICS:
            assert errors[region][k] == 0.0, (region, k)
    assert sad_error(gt, gt) == mse_error(gt, gt) == gradient_error(gt, gt) == 0.0
    assert connectivity_error(gt, gt) == 0.0


def test_sad_mse_mad_by_hand_with_regions():
    gt = np.zeros((4, 4))
    pred = np.zeros((4, 4))
    pred[0, 0] = 0.5
    pred[1, 1] = 0.5
    pred[3, 3] = 0.25
    trimap = np.zeros((4, 4), np.uint8)
    trimap[:2, :2] = 128  # unknown: the top-left 2x2 block (holds both 0.5 errors)
    m = unknown_mask(trimap)
    assert m.sum() == 4
    assert sad_error(pred, gt) == pytest.approx(1.25 / 1000)
    assert sad_error(pred, gt, m) == pytest.approx(1.0 / 1000)
    assert mse_error(pred, gt) == pytest.approx((0.25 + 0.25 + 0.0625) / 16)
    assert mse_error(pred, gt, m) == pytest.approx(0.5 / 4)
    assert mad_error(pred, gt) == pytest.approx(1.25 / 16)
    assert mad_error(pred, gt, m) == pytest.approx(1.0 / 4)
    e = matte_errors(pred, gt, trimap)
    assert e["unknown"]["sad"] == pytest.approx(0.001) and e["whole"]["sad"] == pytest.approx(
        0.00125
    )
    assert e["unknown"]["mse"] == pytest.approx(0.125)
    # float trimaps (0 / 0.5 / 1) select the same region; uint8 mattes are read as /255
    float_trimap = np.where(trimap == 128, 0.5, trimap / 255.0).astype(np.float32)
    assert np.array_equal(unknown_mask(float_trimap), m)
    assert sad_error((pred * 255).round().astype(np.uint8), gt) == pytest.approx(
        (128 + 128 + 64) / 255 / 1000
    )
    assert np.isnan(mse_error(pred, gt, np.zeros((4, 4), bool)))


def test_gradient_taps_follow_the_benchmark_filter():
    g, dg = gaussian_derivative_taps(1.4)
    assert g.shape == dg.shape == (9,)  # half size ceil(1.4 sqrt(-2 ln(sqrt(2 pi) 1.4 0.01))) = 4
    assert np.sum(np.outer(g, dg) ** 2) == pytest.approx(1.0)  # unit L2 norm
    assert np.allclose(dg, -dg[::-1]) and dg[4] == 0


def _brute_gradient_magnitude(a: np.ndarray, sigma: float = 1.4) -> np.ndarray:
    """Direct 2-D convolution with the benchmark's kernel hx(i,j) = G(i) dG(j) / norm."""
    half = 4
    u = np.arange(-half, half + 1, dtype=float)
    gauss = np.exp(-(u**2) / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))
    dgauss = -u * gauss / sigma**2
    hx = gauss[:, None] * dgauss[None, :]
    hx /= np.sqrt(np.sum(hx**2))
    hy = hx.T
    p = np.pad(a, half, mode="edge")
    gx = np.zeros_like(a)
    gy = np.zeros_like(a)
    for y in range(a.shape[0]):
        for x in range(a.shape[1]):
            win = p[y : y + 2 * half + 1, x : x + 2 * half + 1][::-1, ::-1]  # convolution
            gx[y, x] = np.sum(win * hx)
            gy[y, x] = np.sum(win * hy)
    return np.sqrt(gx**2 + gy**2)


def test_gradient_error_matches_direct_convolution():
    gt = np.zeros((12, 14))
    gt[:, 7:] = 1.0  # a vertical step
    pred = np.clip(gt + 0.1 * np.random.default_rng(1).random(gt.shape), 0, 1)
    trimap = np.zeros(gt.shape, np.uint8)
    trimap[:, 4:10] = 128
    expected = (_brute_gradient_magnitude(pred) - _brute_gradient_magnitude(gt)) ** 2
    gca = {"convention": "gca"}  # the matte as given (dim would stretch pred to [0, 1])
    assert gradient_error(pred, gt, **gca) == pytest.approx(expected.sum() / 1000, rel=1e-9)
    m = unknown_mask(trimap)
    assert gradient_error(pred, gt, m, **gca) == pytest.approx(expected[m].sum() / 1000, rel=1e-9)
    # a constant offset has no gradient error, though it has a SAD
    assert gradient_error(np.full((8, 8), 0.7), np.full((8, 8), 0.2)) == pytest.approx(0.0)


def test_connectivity_by_hand():
    gt = np.ones((4, 4))
    pred = np.ones((4, 4))
    pred[0, 0] = 0.0  # cut off at the first threshold: l = 0, phi(pred) = 1, phi(gt) = 0
    assert connectivity_error(pred, gt) == pytest.approx(1 / 1000)
    inner = np.ones((4, 4), bool)
    inner[0, 0] = False
    assert connectivity_error(pred, gt, inner) == pytest.approx(0.0)

    # left half on, right half off except (0,3) = 1 and a soft bridge (0,2) = 0.35
    pred = np.zeros((4, 4))
    pred[:, :2] = 1.0
    pred[0, 3] = 1.0
    pred[0, 2] = 0.35
    # (0,2),(0,3) stay connected up to t = 0.3 -> l = 0.3; (0,2): |1 - (1 - 0.7)| = 0.7,
    # (0,3): phi equal; the six other right pixels leave at t = 0.1 -> l = 0, error 1 each.
    assert connectivity_error(pred, gt) == pytest.approx(6.7 / 1000)
    pred[0, 2] = 0.0  # no bridge: (0,3) is an island, l = 0 for the whole right half
    assert connectivity_error(pred, gt) == pytest.approx(7 / 1000)


def test_metric_sums_reduce_exactly():
    gts = [_rng_matte(s) for s in range(5)]
    preds = [np.clip(g + 0.2 * np.random.default_rng(10 + i).random(g.shape) - 0.1, 0, 1)
             for i, g in enumerate(gts)]  # fmt: skip
    trimaps = [_trimap() for _ in gts]
    trimaps[3] = np.full(gts[3].shape, 255, np.uint8)  # no unknown pixels in image 3

    whole = MetricSums()
    per_image = [whole.add(p, g, t) for p, g, t in zip(preds, gts, trimaps, strict=True)]
    parts = [MetricSums(), MetricSums()]  # e.g. two DDP ranks
    for i, (p, g, t) in enumerate(zip(preds, gts, trimaps, strict=True)):
        parts[i % 2].add(p, g, t)

    merged = parts[0] + parts[1]
    assert np.allclose(merged.to_array(), whole.to_array())
    assert np.allclose(reduce_sums(parts).to_array(), whole.to_array())
    assert np.allclose(MetricSums.from_array(whole.to_array()).to_array(), whole.to_array())

    res = whole.result()
    for k in ("sad", "grad", "conn"):
        expected = np.mean([e["unknown"][k] for e in per_image])
        assert res["unknown"][k] == pytest.approx(expected)
    # MSE/MAD of the unknown region: image 3 has none, so it is left out of the mean
    assert whole.count["unknown"] == 5 and whole.valid["unknown"] == 4
    expected_mse = np.mean([e["unknown"]["mse"] for i, e in enumerate(per_image) if i != 3])
    assert res["unknown"]["mse"] == pytest.approx(expected_mse)
    assert res["whole"]["mad"] == pytest.approx(np.mean([e["whole"]["mad"] for e in per_image]))
    assert set(whole.flat()) == {f"{r}/{k}" for r in ("unknown", "whole") for k in METRICS}
    assert all(np.isnan(v) for v in MetricSums().result()["whole"].values())


def test_bad_inputs():
    with pytest.raises(ValueError, match="shapes"):
        sad_error(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="trimap"):
        matte_errors(np.zeros((4, 4)), np.zeros((4, 4)), None, regions=("unknown",))
