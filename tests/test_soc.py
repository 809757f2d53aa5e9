"""SOC adaptation (`matdata adapt`, modnet/soc.py) on small unlabelled images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from matdata.rejects import read_rejects
from modnet import build_modnet
from modnet.inference import load_checkpoint_model
from modnet.soc import SOCConfig, adapt


def _portraits(folder: Path, n: int = 3) -> None:
    """Smooth scenes with a bright blob (something person-like to be consistent about)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        low = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = cv2.resize(low, (100, 80), interpolation=cv2.INTER_CUBIC)
        cv2.ellipse(img, (50 + 5 * i, 45), (18, 30), 0, 0, 360, (230, 200, 180), -1)
        cv2.imwrite(str(folder / f"p{i}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("soc")
    torch.manual_seed(0)
    model = build_modnet("mobilenetv2", hr_channels=8)
    ckpt = root / "start.pt"
    torch.save({"model": model.state_dict()}, ckpt)
    _portraits(root / "images")
    return {"root": root, "ckpt": ckpt, "images": root / "images"}


def _cfg(setup: dict[str, Path], out: str, **kw) -> SOCConfig:
    base = dict(
        checkpoint=str(setup["ckpt"]), images=(str(setup["images"]),), out=str(out),
        steps=3, batch_size=2, image_size=64, device="cpu",
    )  # fmt: skip
    base.update(kw)
    return SOCConfig(**base)


def test_adapt_writes_a_loadable_checkpoint_and_records_rejects(setup) -> None:
    out = setup["root"] / "run"
    summary = adapt(_cfg(setup, out))
    assert summary["images"] == 4 and summary["rejected"] == 1
    rejects = read_rejects(str(out / "rejects.parquet"))
    assert [Path(r.path).name for r in rejects] == ["broken.jpg"]
    start = torch.load(setup["ckpt"], weights_only=True)["model"]
    adapted = load_checkpoint_model(str(out / "soc.pt")).model.state_dict()
    assert set(adapted) == set(start)
    changed = [k for k in start if not torch.equal(start[k], adapted[k])]
    assert any(k.endswith("weight") for k in changed)
    # BatchNorm running statistics are kept (SOC runs on a few images at a time)
    assert not [k for k in changed if k.endswith(("running_mean", "running_var"))]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 1 and rows[-1]["step"] == 3
    assert all(np.isfinite(r["total"]) for r in rows)


def test_adapt_is_deterministic_and_lowers_the_consistency_loss(setup) -> None:
    kw = dict(steps=12, batch_size=1, lr=1e-3, seed=3, log_every=1)
    a = adapt(_cfg(setup, setup["root"] / "a", **kw))
    b = adapt(_cfg(setup, setup["root"] / "b", **kw))
    sa = torch.load(setup["root"] / "a" / "soc.pt", weights_only=True)["model"]
    sb = torch.load(setup["root"] / "b" / "soc.pt", weights_only=True)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["last"] == b["last"]
    # the same three images are seen four times: the consistency loss goes down
    rows = [json.loads(x) for x in (setup["root"] / "a" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    first = np.mean([r["total"] for r in rows[:3]])
    assert np.mean([r["total"] for r in rows[-3:]]) < first


def test_config_is_checked() -> None:
    from matdata.errors import ConfigError

    with pytest.raises(ConfigError, match="multiple of 32"):
        SOCConfig(checkpoint="c", images=("i",), out="o", image_size=50)
    with pytest.raises(ConfigError):
        SOCConfig(checkpoint="c", images=("i",), out="o", steps=0)


def test_cli_adapt_then_predict(setup, tmp_path: Path) -> None:
    import os

    cli = [sys.executable, "-m", "matdata"]
    env = dict(os.environ, COLUMNS="200")
    run = tmp_path / "run"
    args = ["adapt", str(setup["images"]), "-c", str(setup["ckpt"]), "--out", str(run),
            "--steps", "2", "--image-size", "64", "--device", "cpu", "--no-progress"]  # fmt: skip
    proc = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "4 / 1" in proc.stdout and "soc.pt" in proc.stdout  # images / rejected
    pred = [*cli, "predict", str(setup["images"] / "p0.jpg"), "-c", str(run / "soc.pt"),
            "--out", str(tmp_path / "alphas"), "--device", "cpu", "--no-progress"]  # fmt: skip
    proc = subprocess.run(pred, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    alpha = cv2.imread(str(tmp_path / "alphas" / "p0.png"), cv2.IMREAD_UNCHANGED)
    assert alpha.shape == (80, 100)
    bad = subprocess.run(
        [*cli, *args[:-7], "--image-size", "50"], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 1
    assert "multiple of 32" in bad.stdout + bad.stderr and "Traceback" not in bad.stderr
