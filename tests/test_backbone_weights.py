"""--backbone-weights: the backbone is found in every checkpoint layout users have.

Each checkpoint is generated here from a randomly initialised backbone's own tensors,
renamed into the layout (torchvision, segmentation_models_pytorch, full UNet / DeepLabv3,
MODNet's human-segmentation file, MODNet itself, Lightning wrappers), with decoder/head keys
next to it; the test then checks that every value landed in the right place.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from matdata.errors import CheckpointError
from modnet import build_modnet
from modnet.backbone_weights import load_backbone, match_backbone
from modnet.backbones import BACKBONES


def _random_backbone(name: str, seed: int = 1) -> dict[str, torch.Tensor]:
    """A backbone state_dict (``model.``-relative names) with random values everywhere."""
    g = torch.Generator().manual_seed(seed)
    sd = BACKBONES[name]().state_dict()
    out = {}
    for k, v in sd.items():
        rel = k[len("model.") :]
        if v.dtype == torch.int64:
            out[rel] = torch.tensor(int(torch.randint(1, 99, (), generator=g)))
        else:
            out[rel] = torch.randn(v.shape, generator=g)
    return out


# MODNet's flat numbering inside an inverted residual block -> torchvision's nesting
_TV_EXPAND = {0: "0.0", 1: "0.1", 3: "1.0", 4: "1.1", 6: "2", 7: "3"}
_TV_FIRST = {0: "0.0", 1: "0.1", 3: "1", 4: "2"}


def _to_torchvision_mbv2(rel: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in rel.items():
        m = re.match(r"features\.(\d+)\.conv\.(\d+)\.(.+)$", k)
        if m:
            block, idx, leaf = int(m.group(1)), int(m.group(2)), m.group(3)
            table = _TV_FIRST if block == 1 else _TV_EXPAND
            k = f"features.{block}.conv.{table[idx]}.{leaf}"
        out[k] = v
    return out


def _decoder(prefix: str, n: int = 3) -> dict[str, torch.Tensor]:
    return {f"{prefix}{i}.weight": torch.randn(4, 4, 3, 3) for i in range(n)}


def _check_landed(model, rel: dict[str, torch.Tensor]) -> None:
    """Every backbone tensor of ``model`` (both registrations) equals the source's."""
    sd = model.state_dict()
    for k, v in rel.items():
        for reg in ("backbone.model.", "lr_branch.backbone.model."):
            assert torch.equal(sd[reg + k], v.to(sd[reg + k].dtype)), reg + k


def _save(tmp_path: Path, name: str, obj) -> str:
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


# ------------------------------------------------------------------ MobileNetV2 layouts


def _mbv2_layouts(rel: dict[str, torch.Tensor]) -> dict[str, dict]:
    tv = _to_torchvision_mbv2(rel)
    head = {"classifier.1.weight": torch.randn(1000, 1280), "classifier.1.bias": torch.zeros(1000)}
    smp_unet = {"encoder." + k: v for k, v in tv.items()}
    smp_unet.update(_decoder("decoder.blocks.0.conv1.0."))
    smp_unet["segmentation_head.0.weight"] = torch.randn(1, 16, 3, 3)
    full_unet = {"backbone." + k: v for k, v in rel.items()}  # a UNet around MODNet's MBv2
    full_unet.update(_decoder("up."))
    full_unet["out.weight"] = torch.randn(1, 16, 1, 1)
    modnet_full = {}
    for reg in ("module.backbone.model.", "module.lr_branch.backbone.model."):
        modnet_full.update({reg + k: v for k, v in rel.items()})
    modnet_full["module.hr_branch.x.weight"] = torch.randn(3)
    return {
        "mobilenetv2_human_seg.ckpt": dict(rel),  # official MODNet repository's MobileNetV2
        "torchvision_mobilenet_v2.pth": {**tv, **head},
        "smp_unet_mobilenet_v2.pth": smp_unet,
        "unet_full.pth": {"state_dict": full_unet},
        "modnet_full.ckpt": modnet_full,
        "lightning.ckpt": {"state_dict": {"model." + k: v for k, v in smp_unet.items()}},
    }


@pytest.mark.parametrize(
    "layout",
    [
        "mobilenetv2_human_seg.ckpt",
        "torchvision_mobilenet_v2.pth",
        "smp_unet_mobilenet_v2.pth",
        "unet_full.pth",
        "modnet_full.ckpt",
        "lightning.ckpt",
    ],
)
def test_mobilenetv2_layouts_load_every_tensor_in_place(tmp_path: Path, layout: str) -> None:
    rel = _random_backbone("mobilenetv2")
    path = _save(tmp_path, layout, _mbv2_layouts(rel)[layout])
    lines: list[str] = []
    model = build_modnet("mobilenetv2", 8, backbone_weights=path, log=lines.append)
    _check_landed(model, rel)
    assert f"took {len(rel)} tensors" in lines[0]
    # the heads keep their fresh initialisation
    fresh = build_modnet("mobilenetv2", 8, log=None).state_dict()
    assert model.state_dict()["hr_branch.tohr_enc2x.layers.0.weight"].shape == (
        fresh["hr_branch.tohr_enc2x.layers.0.weight"].shape
    )
    text = "\n".join(lines)
    if layout == "smp_unet_mobilenet_v2.pth":
        assert "'encoder.'" in lines[0] and "torchvision" in lines[0]
        assert "ignored 4 keys" in text and "decoder.blocks.* (3)" in text
        assert "segmentation_head.0.* (1)" in text
    if layout == "torchvision_mobilenet_v2.pth":
        assert "ignored 2 keys: classifier.1.* (2)" in text
    if layout == "modnet_full.ckpt":
        assert "identical copies not used: 'lr_branch.backbone.model.'" in text
    if layout == "mobilenetv2_human_seg.ckpt":
        assert "MODNet / official layout" in lines[0] and "ignored nothing" in text


def test_human_seg_file_named_as_in_the_official_manifest(tmp_path: Path) -> None:
    """The official MODNet's MobileNetV2 names, from the released model's key manifest
    (``backbone.model.`` stripped: the bare MobileNetV2 the human_seg file was saved from)."""
    import numpy as np
    from conftest import DATA
    from spec_weights import manifest_entries

    entries = manifest_entries(DATA / "specs" / "modnet.state_dict.json")
    rng = np.random.default_rng(4)
    human_seg = {}
    for key, shape, dtype in entries:
        if key.startswith("backbone.model."):
            value = rng.standard_normal(shape).astype(np.float32)
            tensor = torch.from_numpy(value) if dtype == "float32" else torch.tensor(7)
            human_seg[key[len("backbone.model.") :]] = tensor
    assert len(human_seg) == 312 and "features.17.conv.7.running_var" in human_seg
    path = _save(tmp_path, "mobilenetv2_human_seg.ckpt", human_seg)
    model = build_modnet("mobilenetv2", 32, backbone_weights=path, log=None)
    _check_landed(model, human_seg)


def test_old_checkpoints_without_batchnorm_counters_load(tmp_path: Path) -> None:
    rel = _random_backbone("resnet18")
    old = {k: v for k, v in rel.items() if not k.endswith("num_batches_tracked")}
    lines: list[str] = []
    path = _save(tmp_path, "r.pth", old)
    model = build_modnet("resnet18", 8, backbone_weights=path, log=lines.append)
    _check_landed(model, old)
    assert "BatchNorm counters not in the file" in "\n".join(lines)


# ------------------------------------------------------------------ ResNet-18 layouts


def _resnet_layouts(rel: dict[str, torch.Tensor]) -> dict[str, dict]:
    head = {"fc.weight": torch.randn(1000, 512), "fc.bias": torch.zeros(1000)}
    smp_dlv3p = {"encoder." + k: v for k, v in rel.items()}
    smp_dlv3p.update(_decoder("decoder.aspp.0.convs.0."))
    smp_dlv3p.update(_decoder("decoder.block1.0."))
    # torchvision segmentation models keep the trunk under backbone.* (IntermediateLayerGetter)
    tv_seg = {"backbone." + k: v for k, v in rel.items()}
    tv_seg.update(_decoder("classifier.0.convs.0."))
    tv_seg.update(_decoder("aux_classifier.0."))
    return {
        "resnet18_torchvision.pth": {**rel, **head},
        "smp_deeplabv3plus_resnet18.pth": smp_dlv3p,
        "deeplabv3_full.pth": {"model": tv_seg},
    }


@pytest.mark.parametrize(
    "layout", ["resnet18_torchvision.pth", "smp_deeplabv3plus_resnet18.pth", "deeplabv3_full.pth"]
)
def test_resnet18_layouts_load_every_tensor_in_place(tmp_path: Path, layout: str) -> None:
    rel = _random_backbone("resnet18", seed=2)
    path = _save(tmp_path, layout, _resnet_layouts(rel)[layout])
    lines: list[str] = []
    model = build_modnet("resnet18", 8, backbone_weights=path, log=lines.append)
    _check_landed(model, rel)
    assert f"took {len(rel)} tensors" in lines[0]
    if layout == "smp_deeplabv3plus_resnet18.pth":
        assert "decoder.aspp.* (3)" in lines[-1] and "decoder.block1.* (3)" in lines[-1]


def test_pvt_from_a_modnet_checkpoint(tmp_path: Path) -> None:
    src = build_modnet("pvt", 8, log=None)
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    path = _save(tmp_path, "pvt.pt", {"model": src.state_dict(), "step": 3})
    model = build_modnet("pvt", 16, backbone_weights=path, log=None)
    rel = {k[len("model.") :]: v for k, v in src.backbone.state_dict().items()}
    _check_landed(model, rel)


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenetv2"])
def test_segmentation_stage_checkpoint_feeds_modnet(tmp_path: Path, backbone: str) -> None:
    from modnet.segmentation import SegNet

    seg = SegNet(backbone)
    with torch.no_grad():
        for p in seg.parameters():
            p.normal_()
    state = {"format": "matdata-modnet-train", "model": seg.state_dict(), "step": 5}
    path = _save(tmp_path, "seg.pt", state)
    lines: list[str] = []
    model = build_modnet(backbone, 8, backbone_weights=path, log=lines.append)
    rel = {k[len("model.") :]: v for k, v in seg.backbone.state_dict().items()}
    _check_landed(model, rel)
    head = {k for k in seg.state_dict() if k.startswith("head.")}
    assert f"ignored {len(head)} keys: head." in lines[-1]


# ------------------------------------------------------------------ what must fail


def test_missing_and_misshaped_tensors_are_named(tmp_path: Path) -> None:
    rel = _random_backbone("mobilenetv2")
    tv = _to_torchvision_mbv2(rel)
    del tv["features.5.conv.1.1.running_var"]
    msg = r"1 missing: model\.features\.5\.conv\.4\.running_var"
    with pytest.raises(CheckpointError, match=msg):
        load_backbone(BACKBONES["mobilenetv2"](), _save(tmp_path, "a.pth", tv))
    rel2 = dict(rel)
    rel2["features.18.0.weight"] = torch.randn(1024, 320, 1, 1)  # another width
    with pytest.raises(CheckpointError, match=r"features\.18\.0\.weight \(1024, 320, 1, 1\)"):
        load_backbone(BACKBONES["mobilenetv2"](), _save(tmp_path, "b.pth", rel2))


def test_deeper_network_and_two_different_copies_are_refused(tmp_path: Path) -> None:
    rel = _random_backbone("resnet18")
    deeper = dict(rel)
    deeper["layer1.2.conv1.weight"] = torch.randn(64, 64, 3, 3)  # a ResNet-34 block
    with pytest.raises(CheckpointError, match=r"no place in resnet18: layer1\.2\.conv1\.weight"):
        load_backbone(BACKBONES["resnet18"](), _save(tmp_path, "r34.pth", deeper))
    other = _random_backbone("resnet18", seed=9)
    both = {"encoder." + k: v for k, v in rel.items()}
    both.update({"teacher." + k: v for k, v in other.items()})
    msg = r"two different resnet18 backbones.*'encoder\.'.*'teacher\.'"
    with pytest.raises(CheckpointError, match=msg):
        load_backbone(BACKBONES["resnet18"](), _save(tmp_path, "two.pth", both))


def test_wrong_backbone_and_unsafe_files(tmp_path: Path) -> None:
    rel = _random_backbone("resnet18")
    msg = r"holds no mobilenetv2 backbone \(top-level keys: bn1"
    with pytest.raises(CheckpointError, match=msg):
        load_backbone(BACKBONES["mobilenetv2"](), _save(tmp_path, "r.pth", rel))
    pickled = tmp_path / "evil.pth"
    torch.save({"state_dict": rel, "obj": Path("x")}, pickled)
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_backbone(BACKBONES["resnet18"](), str(pickled))


def test_match_reports_ignored_keys() -> None:
    rel = _random_backbone("resnet18")
    state = {"encoder." + k: v for k, v in rel.items()}
    state["decoder.x.weight"] = torch.zeros(1)
    weights, report = match_backbone(BACKBONES["resnet18"](), state, "mem")
    assert len(weights) == len(rel) and report.prefix == "encoder."
    assert report.ignored == ["decoder.x.weight"]


def test_cli_train_reports_the_backbone_load_and_fails_in_one_line(tmp_path: Path) -> None:
    rel = _random_backbone("mobilenetv2")
    bad = dict(rel)
    del bad["features.0.0.weight"]
    path = _save(tmp_path, "bad.pth", bad)
    proc = subprocess.run(
        [sys.executable, "-m", "matdata", "train", "--data", str(tmp_path), "--out",
         str(tmp_path / "run"), "--backbone-weights", path, "--device", "cpu"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and "missing: model.features.0.0.weight" in err[0], proc.stderr
