"""The halo / colour-bleed score: exact on constructed composites, and the planted defect
of a real demo build (``--fg-estimator none`` vs the default estimator)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matdata.qa.halo import MIN_SIDE, halo_score

F = np.array([200.0, 120.0, 60.0])  # subject colour
B_ORIG = np.array([40.0, 200.0, 220.0])  # the source photo's backdrop
BLEED = float(np.linalg.norm(B_ORIG - F))  # |v| of a photo pasted without estimation


def _scene(h: int, w: int, seed: int, steep: bool = False) -> np.ndarray:
    """A new background: a gentle gradient, or (``steep``) sines a few pixels across."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = rng.uniform(60, 190, 3)
    if steep:
        return np.stack([base[c] + 50 * np.sin(xx / 2.0 + c + yy / 3.0) for c in range(3)], -1)
    return base + np.stack([20 * xx / w, 15 * yy / h, -10 * xx / w], -1)


def _alpha(h: int, w: int, soft: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    d = np.sqrt(((xx - w / 2) / (0.3 * w)) ** 2 + ((yy - h / 2) / (0.35 * h)) ** 2)
    a = np.clip((1.0 - d) * min(0.3 * w, 0.35 * h) / soft + 0.5, 0, 1)
    return np.rint(a * 255).astype(np.uint8)


def _composites(h: int, w: int, seed: int = 0, soft: float = 3.0, steep: bool = False):
    """(clean, bleeding, alpha, bg): ``a*F + (1-a)*B`` and the same with the photo
    ``a*F + (1-a)*B_orig`` pasted in place of ``F``."""
    alpha = _alpha(h, w, soft)
    a = alpha.astype(np.float64)[..., None] / 255
    bg = _scene(h, w, seed, steep)
    photo = a * F + (1 - a) * B_ORIG
    clean = np.rint(np.clip(a * F + (1 - a) * bg, 0, 255)).astype(np.uint8)
    bleed = np.rint(np.clip(a * photo + (1 - a) * bg, 0, 255)).astype(np.uint8)
    return clean, bleed, alpha, np.rint(np.clip(bg, 0, 255)).astype(np.uint8)


@settings(max_examples=12, deadline=None)
@given(
    h=st.integers(MIN_SIDE, 300),
    w=st.integers(MIN_SIDE, 300),
    seed=st.integers(0, 10_000),
    soft=st.floats(1.5, 3.5),
)
def test_halo_recovers_the_bleeding_colour(h, w, seed, soft):
    """On ``a*(a*F + (1-a)*B_orig) + (1-a)*B`` the residual is exactly
    ``a*(1-a)*(B_orig - F)``: the score is |B_orig - F| (up to rounding and the
    background's gradient inside a box); a clean composite scores near 0."""
    clean, bleed, alpha, _ = _composites(h, w, seed, soft)
    got = halo_score(bleed, alpha)
    assert got["halo"] is not None and got["halo_px"] >= 50
    assert abs(got["halo"] - BLEED) < 0.08 * BLEED, (got, BLEED)
    assert halo_score(clean, alpha)["halo"] < 5.0
    # channel order does not change the score (the scan works in BGR)
    assert halo_score(bleed[..., ::-1].copy(), alpha)["halo"] == got["halo"]


def test_halo_on_the_working_scale_of_large_images():
    """A 600x560 image is scored on its 2x area average: the same bleeding colour."""
    clean, bleed, alpha, _ = _composites(600, 560, soft=6.0)
    got = halo_score(bleed, alpha)
    assert abs(got["halo"] - BLEED) < 0.08 * BLEED, got
    assert halo_score(clean, alpha)["halo"] < 5.0


def test_halo_uses_the_stored_background_layer():
    """A background with structure a few pixels across biases the box mean of the clear
    neighbours; the stored ``bg`` layer (``--keep-layers``) removes that bias."""
    clean, bleed, alpha, bg = _composites(192, 160, steep=True)
    local = halo_score(clean, alpha)["halo"]
    layer = halo_score(clean, alpha, bg)["halo"]
    assert layer < 1.0 < local
    assert abs(halo_score(bleed, alpha, bg)["halo"] - BLEED) < 0.05 * BLEED


def test_halo_uses_the_stored_background_layer_on_the_working_scale():
    """At 512 px and more the ``bg`` layer is area-averaged with the image (it used to be
    cut with the wrong window there and raised)."""
    clean, bleed, alpha, bg = _composites(600, 560, soft=6.0, steep=True)
    assert halo_score(clean, alpha, bg)["halo"] < 1.0
    assert abs(halo_score(bleed, alpha, bg)["halo"] - BLEED) < 0.05 * BLEED


def test_halo_is_none_without_a_soft_edge_or_below_min_side():
    clean, _, alpha, _ = _composites(160, 140)
    binary = np.where(alpha > 127, 255, 0).astype(np.uint8)
    assert halo_score(clean, binary) == {"halo": None, "halo_px": 0}
    assert halo_score(clean, np.zeros_like(alpha))["halo"] is None
    small, _, a_small, _ = _composites(MIN_SIDE - 1, 200)
    assert halo_score(small, a_small)["halo"] is None
    # a soft edge much wider than the box reaches neither side from most band pixels
    _, wide, a_wide, _ = _composites(160, 160, soft=12.0)
    assert halo_score(wide, a_wide)["halo"] is None
    with pytest.raises(ValueError):
        halo_score(clean[:, :, 0], alpha)


# ------------------------------------------------------------------ planted defect


@pytest.fixture(scope="module")
def estimator_builds(tmp_path_factory) -> dict[str, Path]:
    """The same demo foregrounds and backgrounds built twice: the raw photos pasted with
    their studio backdrop (``--fg-estimator none``) and with the default estimator."""
    from matdata.build_config import BuildConfig
    from pipelines.build import run_build

    root = tmp_path_factory.mktemp("halo_builds")
    out = {}
    for est in ("none", BuildConfig.fg_estimator):
        cfg = BuildConfig(
            fg="demo",
            bg="demo",
            out=str(root / est),
            per_fg=2,
            size=(192, 256),
            fg_estimator=est,
            samples_per_shard=12,
            fg_options={"n_fg": 12, "n_bg": 8},
            bg_options={"n_fg": 12, "n_bg": 8},
        )
        run_build(cfg, workers=1, progress=False)
        out[est] = root / est
    return out


def test_planted_halo_none_estimator_vs_default(estimator_builds, tmp_path):
    """Figures at the time of writing (24 records each, all scored): ``none`` flags 21/24
    (halo p5 25.5, median 69.1, max 197.5); the default estimator flags 0/24 (p5 3.4,
    median 7.5, max 29.0)."""
    from matdata.qa import write_report
    from pipelines.qa import run_qa

    figs = {}
    for est, ds in estimator_builds.items():
        report = run_qa(str(ds), in_process=True, sample=4)
        write_report(report, str(tmp_path / est))
        rows = [json.loads(x) for x in (tmp_path / est / "records.jsonl").read_text().split("\n")
                if x]  # fmt: skip
        halo = np.array([r["halo"] for r in rows if r["halo"] is not None])
        flagged = [r["key"] for r in rows if any(f["flag"] == "halo" for f in r["flags"])]
        summary = json.loads((tmp_path / est / "summary.json").read_text())
        assert summary["metrics"]["halo"]["n"] == halo.size
        assert summary["flags"]["by_flag"].get("halo", 0) == len(flagged)
        figs[est] = (len(rows), halo, flagged)
    n, halo_none, flagged_none = figs["none"]
    n_def, halo_def, flagged_def = figs.pop("none") and next(iter(figs.values()))
    assert n == n_def == 24
    assert halo_none.size >= 0.9 * n and halo_def.size >= 0.9 * n  # scored, not skipped
    assert np.median(halo_none) > 4 * np.median(halo_def)  # clearly worse
    assert len(flagged_none) >= 0.75 * n  # most of the none build is flagged
    assert len(flagged_def) <= 1  # the default build: almost none


def test_cli_compare_two_estimator_builds(estimator_builds, tmp_path):
    """``matdata qa A --compare B`` as users run it: the same 24 keys side by side, the
    halo distribution shifted down by the estimator, flags moved accordingly."""
    import subprocess
    import sys

    out = tmp_path / "r"
    a, b = estimator_builds["none"], estimator_builds["blur_fusion"]
    cmd = [sys.executable, "-m", "matdata", "qa", str(a), "--compare", str(b), "--out", str(out),
           "--in-process", "--no-progress", "--sample", "3"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads((out / "compare.json").read_text())
    assert data["common_keys"] == 24 and data["only_a"] == data["only_b"] == 0
    halo = data["metrics"]["halo"]
    assert halo["b"]["median"] < halo["a"]["median"] / 4
    assert halo["b_minus_a"]["median"] < 0 and halo["b_minus_a"]["p95"] < 0
    assert data["metrics"]["coverage"]["b_minus_a"]["p95"] == 0  # same alpha in both
    assert data["flags"]["by_flag"]["halo"]["a"] >= 18 >= 1 >= data["flags"]["by_flag"]["halo"]["b"]
    top = data["largest_halo_changes"]
    assert all(c["diff"] < 0 for c in top[:10])
    assert abs(top[0]["diff"]) >= abs(top[-1]["diff"])
    html = (out / "compare.html").read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    for key in data["pair_keys"]:
        assert f"alt='A edges {key}'" in html and f"alt='B edges {key}'" in html
    assert len(data["pair_keys"]) >= 3
    assert "compare:" in res.stdout


def test_cli_compare_missing_dataset_is_one_line(estimator_builds, tmp_path):
    import subprocess
    import sys

    a, nope = str(estimator_builds["none"]), str(tmp_path / "nope")
    cmd = [sys.executable, "-m", "matdata", "qa", a, "--compare", nope, "--out",
           str(tmp_path / "r"), "--in-process", "--no-progress"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert len([x for x in res.stderr.splitlines() if x.strip()]) == 1, res.stderr
