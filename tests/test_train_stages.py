"""`matdata train` on several datasets, the segmentation pretraining stage, and a MODNet run
started from its backbone; runs without validation say so."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import run_main as _main
from hypothesis import given, settings
from hypothesis import strategies as st

TINY = [
    "--hr-channels", "8", "--batch-size", "2", "--image-size", "64", "--device", "cpu",
    "--warmup", "0", "--log-every", "1", "--seed", "1",
]  # fmt: skip


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(demo_dataset) -> dict[str, Path]:
    """Three demo datasets of 8 foregrounds (their names matter: --data-weights uses them)."""

    def build(name: str, seed: int, val: float) -> Path:
        fg = {"n_fg": 8, "seed": seed, "val_fraction": val}
        return demo_dataset(name=name, per_fg=1, seed=seed, fg=fg, bg={"n_bg": 4})

    return {"fine": build("fine", 0, 0.6), "more": build("more", 1, 0.6),
            "noval": build("noval", 2, 0.0)}  # fmt: skip


def test_two_datasets_mixed_validated_apart_recorded_and_resumed_exactly(
    data: dict[str, Path], tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    mix = ["--data", str(data["fine"]), "--data", str(data["more"]), "--data-weights",
           "fine=0.5,more=0.5"]  # fmt: skip
    assert _main(["train", *mix, "--out", str(a), "--steps", "4", "--ckpt-every", "2",
                  "--val-every", "4", "--workers", "1", *TINY]) == 0  # fmt: skip
    cfg = json.loads((a / "config.json").read_text())
    assert [d["name"] for d in cfg["datasets"]] == ["fine", "more"]
    for d in cfg["datasets"]:
        raw = (Path(d["path"]) / "dataset.json").read_bytes()
        assert d["dataset_json_sha256"] == hashlib.sha256(raw).hexdigest()
        assert d["weight"] == 0.5 and d["splits"]["val"] > 0
    assert cfg["data_weights"] == {"fine": 0.5, "more": 0.5}
    vals = [r for r in _records(a) if r["kind"] == "val"]
    assert [(r["step"], r["dataset"]) for r in vals] == [
        (0, "fine"), (0, "more"), (4, "fine"), (4, "more"),
    ]  # fmt: skip
    assert all(r["samples"] > 0 and r["loss"] > 0 for r in vals)
    # resume from step 2 with another loader worker count: the same weights at step 4
    mid = a / "checkpoints" / "step-0000002.pt"
    assert _main(["train", "--resume", str(mid), "--out", str(b), "--workers", "0"]) == 0
    wa = torch.load(a / "last.pt", weights_only=True)["model"]
    wb = torch.load(b / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # the mix cannot change under a resumed run
    code = _main(["train", "--resume", str(mid), "--out", str(b), "--data-weights", "fine=1"])
    assert code != 0


def test_segmentation_stage_then_modnet_from_its_backbone(
    data: dict[str, Path], tmp_path: Path, capfd
) -> None:
    from test_backbone_weights import _to_torchvision_mbv2

    from modnet.backbones import BACKBONES

    # the stage starts from "ImageNet" weights: a torchvision-layout MobileNetV2 file
    init = {k[len("model.") :]: v for k, v in BACKBONES["mobilenetv2"]().state_dict().items()}
    torch.save(_to_torchvision_mbv2(init), tmp_path / "mobilenet_v2.pth")
    seg = tmp_path / "seg"
    assert _main(["train", "--task", "segmentation", "--data", str(data["fine"]), "--out",
                  str(seg), "--steps", "12", "--val-every", "12", "--workers", "0",
                  "--lr", "3e-3", "--backbone-weights", str(tmp_path / "mobilenet_v2.pth"),
                  *TINY]) == 0  # fmt: skip
    err = capfd.readouterr().err
    assert "took 312 tensors" in err and "MobileNetV2 (torchvision layout)" in err
    vals = [r for r in _records(seg) if r["kind"] == "val"]
    assert [r["step"] for r in vals] == [0, 12]
    first, last = vals
    assert 0.0 <= first["iou"] <= 1.0 and 0.0 <= last["iou"] <= 1.0
    assert last["loss"] < first["loss"], (first, last)
    ckpt = torch.load(seg / "last.pt", weights_only=True)
    assert json.loads(ckpt["model_config"]) == {"task": "segmentation", "backbone": "mobilenetv2"}
    assert any(k.startswith("head.blocks.") for k in ckpt["model"])

    run = tmp_path / "matting"
    assert _main(["train", "--data", str(data["fine"]), "--out", str(run), "--steps", "1",
                  "--val-every", "0", "--workers", "0", "--backbone-weights", str(seg),
                  *TINY]) == 0  # fmt: skip
    err = capfd.readouterr().err
    assert "took 312 tensors" in err and "'backbone.model.'" in err
    assert "head.blocks.* (" in err and "head.logit.* (2)" in err
    # predict refuses the segmentation checkpoint in one line, pointing to its use
    assert _main(["evaluate", "-c", str(seg / "last.pt"), "--data", str(data["fine"]),
                  "--device", "cpu"]) != 0  # fmt: skip
    err = capfd.readouterr().err
    assert "is a segmentation model" in err and "--backbone-weights" in err
    # the MODNet run started from the segmentation backbone (same values before step 1)
    from modnet import build_modnet

    model = build_modnet("mobilenetv2", 8, backbone_weights=str(seg / "last.pt"), log=None)
    for k, v in ckpt["model"].items():
        if k.startswith("backbone."):
            assert torch.equal(model.state_dict()[k], v)
            assert torch.equal(model.state_dict()["lr_branch." + k], v)


def test_running_without_validation_is_said(data: dict[str, Path], tmp_path: Path, capfd) -> None:
    run = tmp_path / "r"
    assert _main(["train", "--data", str(data["noval"]), "--out", str(run), "--steps", "1",
                  "--workers", "0", *TINY]) == 0  # fmt: skip
    err = capfd.readouterr().err
    assert "has no val split: training runs without validation" in err
    assert "val_fraction" in err and "this run reports no validation metrics" in err
    assert not [r for r in _records(run) if r["kind"] == "val"]


@pytest.mark.parametrize("backbone", ["mobilenetv2", "resnet18", "pvt"])
def test_segmentation_heads_shapes_and_masked_loss(backbone: str) -> None:
    from modnet.segmentation import DeepLabV3PlusHead, SegNet, UNetHead, iou_counts, masked_bce

    net = SegNet(backbone)
    assert isinstance(net.head, UNetHead if backbone == "mobilenetv2" else DeepLabV3PlusHead)
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    logits = net(x)  # batch of one in train mode works (no BatchNorm on the pooled branch)
    assert logits.shape == (1, 1, 64, 96)
    target = (torch.rand(1, 1, 64, 96) > 0.5).float()
    ignore = torch.zeros_like(target)
    ignore[..., :32] = 1
    logits.retain_grad()
    masked_bce(logits, target, ignore).backward()
    assert logits.grad[..., :32].abs().max() == 0 and logits.grad[..., 32:].abs().max() > 0
    counts = iou_counts(torch.tensor([[1.0, -1, 1, 1]]), torch.tensor([[1.0, 1, 0, 1]]),
                        torch.tensor([[0.0, 0, 0, 1]]))  # fmt: skip
    assert counts.tolist() == [1, 3, 1, 3]  # I, U, correct, counted


def test_option_combinations_that_cannot_work_are_refused(tmp_path: Path) -> None:
    from matdata.errors import ConfigError
    from modnet.train import resolve_config

    base = {"data": str(tmp_path), "out": str(tmp_path / "r")}
    with pytest.raises(ConfigError, match="--init and --backbone-weights both"):
        resolve_config({**base, "init": "a.ckpt", "backbone_weights": "b.pth"})
    with pytest.raises(ConfigError, match="--init loads a whole MODNet"):
        resolve_config({**base, "task": "segmentation", "init": "a.ckpt"})
    with pytest.raises(ConfigError, match="unknown task 'depth'"):
        resolve_config({**base, "task": "depth"})
    with pytest.raises(ConfigError, match="'x', which is not one of the --data sets"):
        resolve_config({**base, "data": ["/d/a", "/d/b"], "data_weights": {"x": 1.0}})


@settings(max_examples=30, deadline=None)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
)
def test_iou_counts_and_masked_loss_match_numpy(h: int, w: int, seed: int) -> None:
    from modnet.segmentation import iou_counts, masked_bce

    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, 1, h, w)).astype(np.float32)
    target = rng.random((2, 1, h, w)).astype(np.float32)
    ignore = (rng.random((2, 1, h, w)) < 0.3).astype(np.float32)
    keep = ignore < 0.5
    pred, true = (logits > 0) & keep, (target >= 0.5) & keep
    expect = [(pred & true).sum(), (pred | true).sum(), ((pred == true) & keep).sum(), keep.sum()]
    t = [torch.from_numpy(x) for x in (logits, target, ignore)]
    assert iou_counts(*t).tolist() == [float(x) for x in expect]
    x = logits.astype(np.float64)
    bce = np.maximum(x, 0) - x * target + np.log1p(np.exp(-np.abs(x)))
    ref = (bce * keep).sum() / max(keep.sum(), 1)
    assert float(masked_bce(*t)) == pytest.approx(ref, rel=1e-5, abs=1e-6)
