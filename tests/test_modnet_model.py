"""MODNet model: the released layout (manifest), reference vectors, strict loading, backbones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from spec_weights import deterministic_state_dict, modnet_rename

from matdata.errors import CheckpointError, ConfigError
from modnet import build_modnet, infer_config, load_modnet_weights

SPECS = Path(__file__).parent / "data" / "specs"
MANIFEST = SPECS / "modnet.state_dict.json"


@pytest.fixture(scope="module")
def spec_state() -> dict[str, torch.Tensor]:
    return deterministic_state_dict(MANIFEST, seed=0, rename=modnet_rename)


@pytest.fixture(scope="module")
def spec_model(spec_state):
    model = build_modnet()
    load_modnet_weights(model, spec_state)
    return model.eval()


def test_state_dict_matches_manifest():
    manifest = json.loads(MANIFEST.read_text())
    model = build_modnet("mobilenetv2", 32)
    got = [
        [k, list(v.shape), str(v.dtype).removeprefix("torch.")]
        for k, v in model.state_dict().items()
    ]
    assert got == manifest["state_dict"]
    assert len(got) == manifest["num_keys"]
    assert sum(p.numel() for p in model.parameters()) == manifest["num_parameters"]
    # The backbone is one module registered twice, as in the released files.
    assert model.lr_branch.backbone is model.backbone


@pytest.mark.parametrize("size", ["256x256", "224x320"])
def test_reference_vectors(spec_model, size):
    ref = np.load(SPECS / "vectors" / f"modnet.seed0.{size}.npz")
    with torch.no_grad():
        semantic, detail, matte = spec_model(torch.from_numpy(ref["image"]), False)
    for name, out in (("semantic", semantic), ("detail", detail), ("matte", matte)):
        r = ref[name]
        assert out.shape == r.shape, name
        err = float(np.abs(out.numpy() - r).max())
        assert err <= 1e-4 * max(1.0, float(np.abs(r).max())), (name, err)
    # inference mode: only the matte, and the same matte
    with torch.no_grad():
        s, d, m = spec_model(torch.from_numpy(ref["image"]), True)
    assert s is None and d is None
    assert torch.equal(m, matte)


def test_released_layout_checkpoint_loads_strictly(tmp_path, spec_state, spec_model):
    path = tmp_path / "modnet_photographic_portrait_matting.ckpt"
    torch.save({"module." + k: v for k, v in spec_state.items()}, path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert all(k.startswith("module.") for k in raw)
    assert any(k.startswith("module.lr_branch.backbone.model.") for k in raw)
    model = load_modnet_weights(build_modnet(), str(path)).eval()
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(x, True)[2], spec_model(x, True)[2])
    assert infer_config(raw) == {"backbone": "mobilenetv2", "hr_channels": 32}


def test_single_backbone_copy_is_completed(spec_state):
    state = {k: v for k, v in spec_state.items() if not k.startswith("lr_branch.backbone.")}
    model = load_modnet_weights(build_modnet(), state)
    w = "backbone.model.features.5.conv.0.weight"
    assert torch.equal(model.state_dict()[w], spec_state[w])


def test_mismatched_checkpoints_are_named(tmp_path, spec_state):
    state = dict(spec_state)
    state.pop("hr_branch.conv_hr.1.layers.0.bias")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_modnet_weights(build_modnet(), state)
    assert "hr_branch.conv_hr.1.layers.0.bias" in str(err.value)
    assert "extra.weight" in str(err.value)
    small = build_modnet(hr_channels=16).state_dict()
    with pytest.raises(CheckpointError, match="shape"):
        load_modnet_weights(build_modnet(hr_channels=32), small)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="bad.ckpt"):
        load_modnet_weights(build_modnet(), str(bad))


@pytest.mark.parametrize("layout", ["features", "model.features"])
def test_backbone_only_checkpoint(tmp_path, spec_state, layout):
    # e.g. MODNet's MobileNetV2 human-segmentation weights: a bare MobileNetV2 state_dict.
    prefix = "backbone.model."
    bb = {k[len(prefix) :]: v for k, v in spec_state.items() if k.startswith(prefix)}
    if layout == "model.features":
        bb = {"model." + k: v for k, v in bb.items()}
    bb["classifier.1.weight"] = torch.zeros(1000, 1280)  # a classifier head is dropped
    path = tmp_path / "mobilenetv2_human_seg.ckpt"
    torch.save(bb, path)
    model = build_modnet(backbone_weights=str(path))
    sd = model.state_dict()
    for k in ("backbone.model.features.0.0.weight", "lr_branch.backbone.model.features.18.1.bias"):
        assert torch.equal(sd[k], spec_state[modnet_rename(k)])
    # Only the backbone came from the file: the heads keep their fresh initialisation.
    assert not torch.equal(
        sd["f_branch.conv_f.1.layers.0.weight"], spec_state["f_branch.conv_f.1.layers.0.weight"]
    )

    del bb["features.3.conv.1.weight" if layout == "features" else "model.features.3.conv.1.weight"]
    torch.save(bb, path)
    with pytest.raises(CheckpointError, match=r"missing: model\.features\.3\.conv\.1\.weight"):
        build_modnet(backbone_weights=str(path))


def test_resnet18_backbone_uses_torchvision_names(tmp_path):
    model = build_modnet("resnet18", 16)
    names = set(model.backbone.model.state_dict())
    for k in ("conv1.weight", "bn1.running_var", "layer1.1.conv2.weight",
              "layer2.0.downsample.0.weight", "layer4.1.bn2.bias"):  # fmt: skip
        assert k in names
    tv = {
        k: torch.randn_like(v.float()).to(v.dtype)
        for k, v in model.backbone.model.state_dict().items()
    }
    tv["fc.weight"] = torch.zeros(1000, 512)
    tv["fc.bias"] = torch.zeros(1000)
    torch.save(tv, tmp_path / "resnet18.pth")
    loaded = build_modnet("resnet18", 16, backbone_weights=str(tmp_path / "resnet18.pth"))
    assert torch.equal(loaded.backbone.model.layer3[0].conv1.weight, tv["layer3.0.conv1.weight"])


@pytest.mark.parametrize(
    ("backbone", "hr", "size"),
    [
        ("mobilenetv2", 16, (64, 64)),
        ("resnet18", 8, (64, 96)),
        ("pvt", 32, (96, 64)),
        ("pvt", 12, (64, 64)),
        ("resnet18", 32, (96, 96)),
    ],  # fmt: skip
)
def test_backbones_build_and_run(backbone, hr, size):
    torch.manual_seed(0)
    model = build_modnet(backbone, hr)
    h, w = size
    x = torch.rand(2, 3, h, w) * 2 - 1
    semantic, detail, matte = model(x, False)
    assert semantic.shape == (2, 1, h // 16, w // 16)
    assert detail.shape == matte.shape == (2, 1, h, w)
    for t in (semantic, detail, matte):
        assert float(t.detach().min()) >= 0 and float(t.detach().max()) <= 1
    (semantic.mean() + detail.mean() + matte.mean()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, no_grad  # every parameter is wired into the outputs
    ch = model.backbone.enc_channels
    assert model.hr_branch.conv_hr4x[0].layers[0].in_channels == 2 * hr + ch[2] + 3
    feats = model.backbone(x)
    assert [f.shape[1] for f in feats] == list(ch)
    assert [f.shape[-1] for f in feats] == [w // s for s in (2, 4, 8, 16, 32)]
    model.eval()
    with torch.no_grad():
        s, d, m = model(x, True)
    assert s is None and d is None and m.shape == (2, 1, h, w)
    state = model.state_dict()
    assert infer_config(state) == {"backbone": backbone, "hr_channels": hr}
    clone = load_modnet_weights(build_modnet(backbone, hr), state).eval()
    with torch.no_grad():
        assert torch.equal(clone(x, True)[2], m)


def test_pvt_blocks_are_residual():
    torch.manual_seed(0)
    model = build_modnet("pvt", 8)
    block = model.backbone.model.stages[2].blocks[0]
    for lin in (block.attn.proj, block.mlp.fc2):  # zero the branch outputs: identity remains
        torch.nn.init.zeros_(lin.weight)
        torch.nn.init.zeros_(lin.bias)
    t = torch.randn(1, 16, block.norm1.normalized_shape[0])
    assert torch.allclose(block(t, 4, 4), t)


def test_bad_configurations():
    with pytest.raises(ConfigError, match="unknown MODNet backbone"):
        build_modnet("vgg")
    with pytest.raises(ConfigError, match="hr_channels must be >= 4"):
        build_modnet("mobilenetv2", 3)
