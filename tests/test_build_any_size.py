"""Foregrounds of the sizes real sources have all build (they used to be dropped as
``load_failed`` rejects above ~0.5 MP while the build exited 0)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from matdata.imageio import encode_jpeg, encode_png

SIZES = [(768, 1024), (1000, 800), (1080, 1920), (601, 799), (37, 23)]  # (H, W)


def test_build_keeps_foregrounds_of_every_size(tmp_path: Path) -> None:
    fg = tmp_path / "fg"
    (fg / "images").mkdir(parents=True)
    (fg / "alphas").mkdir()
    rng = np.random.default_rng(0)
    for h, w in SIZES:
        rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        yy, xx = np.mgrid[0:h, 0:w]
        d = np.hypot((yy - h / 2) / (h / 3), (xx - w / 2) / (w / 3))
        alpha = np.clip((1.1 - d) * 5 * 255, 0, 255).astype(np.uint8)
        (fg / "images" / f"p{h}x{w}.jpg").write_bytes(encode_jpeg(rgb, 90))
        (fg / "alphas" / f"p{h}x{w}.png").write_bytes(encode_png(alpha))
    out = tmp_path / "ds"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "matdata",
            "build",
            "--fg",
            f"folder:{fg}",
            "--bg",
            "demo",
            "--out",
            str(out),
            "--per-fg",
            "1",
            "--size",
            "48",
            "--workers",
            "1",
            "--no-progress",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    index = json.loads((out / "dataset.json").read_text())
    acct = index["rejects"]["by_source"]
    fg_acct = next(a for name, a in acct.items() if name != "demo")
    assert fg_acct == {**fg_acct, "found": len(SIZES), "used": len(SIZES), "build_failed": 0}
    assert index["samples"] == len(SIZES)
