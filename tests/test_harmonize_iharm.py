"""`harmonize-eval --protocol iharm`: the released iDIH evaluation (256x256 bilinear, soft
mask fMSE, PSNR peak = max of the real image, 1e-6 terms), checked against formulas
written out here, on hand-made cases where it differs from the matdata protocol."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from harmonization import build_network, load_harmonizer
from harmonization.evaluate import evaluate, iter_triples, load_triple_iharm
from harmonization.weights import deterministic_state_dict
from matdata.cli import app
from matdata.errors import MatdataError
from matdata.imageio import encode_png
from matdata.metrics_harmonization import (
    fmse,
    iharm_fmse,
    iharm_metrics,
    iharm_psnr,
    mse,
    psnr,
)


def _ref_mse(p, r) -> float:
    p, r = np.asarray(p, float), np.asarray(r, float)
    return sum((a - b) ** 2 for a, b in zip(p.ravel(), r.ravel(), strict=True)) / p.size


def _ref_fmse(p, r, m) -> float:
    """sum over pixels and channels of m * e^2 / (C * sum m + 1e-6), written as loops."""
    num, h, w, c = 0.0, *np.shape(p)
    for y in range(h):
        for x in range(w):
            for ch in range(c):
                num += float(m[y][x]) * (float(p[y][x][ch]) - float(r[y][x][ch])) ** 2
    return num / (c * float(np.sum(np.asarray(m, np.float64))) + 1e-6)


def _ref_psnr(p, r) -> float:
    return 10 * math.log10(float(np.max(r)) ** 2 / (_ref_mse(p, r) + 1e-6))


# ------------------------------------------------------------------------ definitions


def test_psnr_peak_is_the_real_images_maximum():
    real = np.full((3, 4, 3), 150, np.uint8)
    real[0, 0] = 200  # the peak: 200, not 255
    pred = real.astype(float)
    pred[1, 1] += [6, 0, 8]  # squared error 100 at one pixel
    e = 100 / 36
    assert iharm_psnr(pred, real) == pytest.approx(10 * math.log10(200**2 / (e + 1e-6)))
    assert iharm_psnr(pred, real) == pytest.approx(_ref_psnr(pred, real))
    assert psnr(pred, real) == pytest.approx(10 * math.log10(255**2 / e))  # matdata: 255
    assert abs(iharm_psnr(pred, real) - psnr(pred, real)) > 2  # 20 log10(255/200) = 2.1 dB


def test_identical_images_and_empty_masks_as_the_released_code():
    real = np.zeros((2, 2, 3), np.uint8)
    real[0, 0] = 255
    m = iharm_metrics(real, real, np.ones((2, 2)))
    assert m["mse"] == 0.0 and m["fmse"] == 0.0
    assert m["psnr"] == pytest.approx(10 * math.log10(255**2 / 1e-6))  # 108.13 dB, finite
    assert m["psnr"] == pytest.approx(108.1308, abs=1e-4)
    assert psnr(real, real) == float("inf")  # the matdata protocol
    pred = real.astype(float) + 9.0
    assert iharm_fmse(pred, real, np.zeros((2, 2))) == 0.0  # 0 / (0 + 1e-6)
    assert iharm_psnr(pred, np.zeros((2, 2, 3))) == float("-inf")  # no peak (code fails)


def test_fmse_weights_by_the_soft_mask():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (3, 4, 3)).astype(np.uint8)
    pred = np.clip(real + rng.normal(0, 12, real.shape), 0, 255)
    soft = np.array([[1, 0.75, 0.5, 0.25], [0.6, 0.4, 0, 0], [0.1, 0, 0, 1]])
    assert iharm_fmse(pred, real, soft) == pytest.approx(_ref_fmse(pred, real, soft), rel=1e-12)
    # the matdata protocol thresholds the mask at 0.5 (> 0.5): another number
    binary = soft > 0.5
    assert fmse(pred, real, soft) == pytest.approx(
        _ref_fmse(pred, real, binary.astype(float)), rel=1e-6
    )
    assert abs(iharm_fmse(pred, real, soft) - fmse(pred, real, soft)) > 1.0
    assert mse(pred, real) == pytest.approx(_ref_mse(pred, real))


# -------------------------------------------------------------------------- protocol


def write_tree(root: Path, h: int = 40, w: int = 60) -> None:
    """One subset, two composites of one real image: a soft-edged mask, and an empty one.
    Real and composite carry gradients, so resizing to 256 changes every number."""
    d = root / "HFlickr"
    yy, xx = np.mgrid[:h, :w]
    real = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=2).clip(0, 230).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[8:30, 12:40] = 255
    mask[8:30, 40:44] = 128  # a soft edge
    comp = real.astype(int)
    comp[mask > 0] += np.array([25, -10, 5])
    comp = np.clip(comp, 0, 255).astype(np.uint8)
    for rel, arr in (
        ("real_images/f1.jpg", real),
        ("masks/f1_1.png", mask),
        ("masks/f1_2.png", np.zeros_like(mask)),
        ("composite_images/f1_1_1.jpg", comp),
        ("composite_images/f1_2_1.jpg", comp),
    ):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(encode_png(arr))  # lossless, under the layout's names
    (d / "HFlickr_test.txt").write_text("f1_1_1.jpg\nf1_2_1.jpg\n")


def _bilinear(arr: np.ndarray, size: int = 256) -> np.ndarray:
    """Half-pixel bilinear resize without antialiasing (what cv2.INTER_LINEAR computes)."""
    t = torch.from_numpy(np.asarray(arr, np.float64))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0]
    return out[0].numpy() if np.ndim(arr) == 2 else out.permute(1, 2, 0).numpy()


def test_inputs_are_resized_bilinearly_with_a_soft_mask(tmp_path):
    write_tree(tmp_path)
    t = next(iter(iter_triples(tmp_path)))
    comp, mask, real = load_triple_iharm(t)
    assert comp.shape == real.shape == (256, 256, 3) and comp.dtype == np.uint8
    assert mask.shape == (256, 256) and mask.dtype == np.float32
    raw = np.zeros((40, 60))
    raw[8:30, 12:40], raw[8:30, 40:44] = 1.0, 128 / 255
    assert np.abs(mask - _bilinear(raw)).max() < 1e-5
    assert np.mean((mask > 0) & (mask < 1)) > 0  # soft, not binary
    assert np.abs(comp.astype(float) - _bilinear(comp_src(tmp_path))).max() <= 1.0


def comp_src(root: Path) -> np.ndarray:
    from matdata.imageio import load_image

    return load_image(str(root / "HFlickr" / "composite_images" / "f1_1_1.jpg"))


def test_none_harmonizer_scores_by_the_iharm_definitions(tmp_path):
    write_tree(tmp_path)
    res = evaluate(tmp_path, load_harmonizer("none"))
    assert res["protocol"] == "iharm" and res["size"] == 256
    rows = res["per_image"]
    assert [r["name"] for r in rows] == ["f1_1_1", "f1_2_1"]
    for t, row in zip(iter_triples(tmp_path), rows, strict=True):
        comp, mask, real = load_triple_iharm(t)
        assert row["mse"] == pytest.approx(_ref_mse(comp, real), rel=1e-9)
        assert row["psnr"] == pytest.approx(_ref_psnr(comp, real), rel=1e-9)
        assert row["fmse"] == pytest.approx(_ref_fmse(comp, real, mask), rel=1e-9)
    assert rows[1]["fmse"] == 0.0  # the empty mask
    assert res["all"]["fmse"] == pytest.approx((rows[0]["fmse"] + rows[1]["fmse"]) / 2)
    native = evaluate(tmp_path, load_harmonizer("none"), protocol="matdata")
    assert native["protocol"] == "matdata"
    assert native["per_image"][0]["fmse"] != pytest.approx(rows[0]["fmse"], rel=1e-3)


def test_a_network_is_scored_on_its_raw_unrounded_output(tmp_path):
    write_tree(tmp_path)
    net = build_network("idih256")
    state = deterministic_state_dict(net)
    h = load_harmonizer("idih256", state, "cpu")
    res = evaluate(tmp_path, h)
    net.load_state_dict(state)
    net.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    for t, row in zip(iter_triples(tmp_path), res["per_image"], strict=True):
        comp, mask, real = load_triple_iharm(t)
        x = torch.from_numpy(comp).permute(2, 0, 1)[None].float() / 255
        m = torch.from_numpy(mask)[None, None]
        with torch.no_grad():
            y = net((x - mean) / std, m)
        pred = ((y * std + mean) * 255).clamp(0, 255)[0].permute(1, 2, 0).double().numpy()
        assert not np.allclose(pred, np.rint(pred))  # unrounded floats are scored
        assert row["mse"] == pytest.approx(_ref_mse(pred, real), rel=1e-5)
        assert row["fmse"] == pytest.approx(_ref_fmse(pred, real, mask), rel=1e-5, abs=1e-9)
        assert row["psnr"] == pytest.approx(_ref_psnr(pred, real), rel=1e-6)
    # the empty mask was run through the network too (the composite is not passed through)
    comp, _, real = load_triple_iharm(list(iter_triples(tmp_path))[1])
    assert res["per_image"][1]["mse"] != pytest.approx(_ref_mse(comp, real), rel=1e-6)


def test_cli_default_protocol_and_errors(tmp_path):
    write_tree(tmp_path / "ih")
    js = tmp_path / "r.json"
    runner = CliRunner()
    res = runner.invoke(
        app, ["harmonize-eval", str(tmp_path / "ih"), "--model", "none", "--json", str(js)]
    )
    assert res.exit_code == 0, res.output
    assert "protocol iharm" in res.output
    data = json.loads(js.read_text())
    assert data["protocol"] == "iharm" and data["size"] == 256
    base = ["harmonize-eval", str(tmp_path / "ih"), "-m", "none"]
    proc = subprocess.run(  # as users run it: one line, exit code 1
        [sys.executable, "-m", "matdata", *base, "--size", "64"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and "--protocol matdata" in lines[0]
    res = runner.invoke(app, [*base, "--protocol", "x"])
    assert isinstance(res.exception, MatdataError) and "iharm or matdata" in str(res.exception)
