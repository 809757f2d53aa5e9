"""`matdata export`: the official layout (strict load, same matte), ONNX in onnxruntime,
TorchScript; and predict's rounding."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from spec_weights import deterministic_state_dict, modnet_rename
from torch import nn

from modnet import build_modnet, load_modnet_weights
from modnet.export import ExportError, check_export, export_model, run_exported
from modnet.inference import alpha_to_uint8, load_checkpoint_model

SPECS = Path(__file__).parent / "data" / "specs"
MANIFEST = SPECS / "modnet.state_dict.json"


@pytest.fixture(scope="module")
def spec_state() -> dict[str, torch.Tensor]:
    return deterministic_state_dict(MANIFEST, seed=0, rename=modnet_rename)


@pytest.fixture(scope="module")
def model(spec_state):
    m = build_modnet()
    load_modnet_weights(m, spec_state)
    return m.eval()


@pytest.fixture(scope="module")
def resnet_model():
    torch.manual_seed(0)
    return build_modnet("resnet18", hr_channels=8).eval()


def _official_model_from_manifest() -> nn.Module:
    """The official wrapping (``nn.DataParallel(MODNet())``), checked against the key set
    of the released files kept in the repository."""
    manifest = json.loads(MANIFEST.read_text())["state_dict"]
    official = nn.DataParallel(build_modnet("mobilenetv2", 32))
    got = [(k, list(v.shape)) for k, v in official.state_dict().items()]
    assert got == [("module." + k, shape) for k, shape, _ in manifest]
    return official


def test_official_export_loads_strictly_and_gives_the_official_matte(tmp_path, model, spec_state):
    path = tmp_path / "modnet_official.ckpt"
    export_model(model, "official", str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    manifest = json.loads(MANIFEST.read_text())["state_dict"]
    assert list(state) == ["module." + k for k, _, _ in manifest]  # backbone listed twice
    assert all(k.startswith("module.") for k in state)
    assert any(k.startswith("module.lr_branch.backbone.model.") for k in state)
    for k, _, _ in manifest:
        assert torch.equal(state["module." + k], spec_state[k]), k

    official = _official_model_from_manifest()
    official.load_state_dict(state, strict=True)
    # the reference forward pass of the original implementation with these weights
    ref = np.load(SPECS / "vectors" / "modnet.seed0.256x256.npz")
    with torch.no_grad():
        _, _, matte = official.module.eval()(torch.from_numpy(ref["image"]), True)
    err = float(np.abs(matte.numpy() - ref["matte"]).max())
    assert err <= 1e-4, err
    # and it loads back into matdata unchanged
    again = load_checkpoint_model(str(path)).model.state_dict()
    assert all(torch.equal(again[k], v) for k, v in model.state_dict().items())


def test_official_export_of_a_trained_checkpoint(tmp_path, model):
    src = tmp_path / "last.pt"  # a `matdata train` checkpoint: {"model": bare state_dict}
    torch.save({"model": model.state_dict(), "step": 3}, src)
    loaded = load_checkpoint_model(str(src)).model
    out = tmp_path / "o.ckpt"
    export_model(loaded, "official", str(out))
    official = _official_model_from_manifest()
    official.load_state_dict(torch.load(out, weights_only=True), strict=True)
    assert check_export(loaded, "official", str(out), ((64, 96),)) == 0.0


def test_onnx_runs_in_onnxruntime_at_two_sizes(tmp_path, model):
    import onnx

    path = tmp_path / "modnet.onnx"
    export_model(model, "onnx", str(path), sample_hw=(64, 64))
    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,), (outp,) = proto.graph.input, proto.graph.output
    assert (inp.name, outp.name) == ("image", "matte")
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))
    diff = check_export(model, "onnx", str(path), ((96, 128), (160, 64)))
    assert diff <= 1e-3, diff
    x = torch.rand(2, 3, 64, 96) * 2 - 1  # a batch of two, another size
    with torch.no_grad():
        ref = model(x, True)[2].numpy()
    got = run_exported("onnx", str(path), x)
    assert got.shape == (2, 1, 64, 96) and np.abs(got - ref).max() <= 1e-3


def test_torchscript_agrees_within_1e5(tmp_path, model):
    path = tmp_path / "modnet.pt"
    export_model(model, "torchscript", str(path), sample_hw=(64, 64))
    assert check_export(model, "torchscript", str(path), ((96, 128), (160, 64))) <= 1e-5


def test_other_backbones_export_to_onnx_and_torchscript_not_official(tmp_path, resnet_model):
    for target, tol in (("onnx", 1e-3), ("torchscript", 1e-5)):
        path = tmp_path / f"r18.{target}"
        export_model(resnet_model, target, str(path), sample_hw=(64, 64))
        assert check_export(resnet_model, target, str(path), ((64, 96), (96, 64))) <= tol
    with pytest.raises(ExportError, match="only the MobileNetV2 backbone"):
        export_model(resnet_model, "official", str(tmp_path / "x.ckpt"))
    assert not (tmp_path / "x.ckpt").exists()


def test_cli_export_official_and_resnet_refusal(tmp_path, model, resnet_model):
    ckpt, r18 = tmp_path / "m.ckpt", tmp_path / "r18.pt"
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, ckpt)
    torch.save({"model": resnet_model.state_dict()}, r18)
    out = tmp_path / "official.ckpt"
    run = [sys.executable, "-m", "matdata", "export"]
    proc = subprocess.run(
        [*run, str(ckpt), "--to", "official", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "max |matte - torch|" in proc.stdout and "0.00e+00" in proc.stdout
    assert set(torch.load(out, weights_only=True)) == {"module." + k for k in model.state_dict()}
    proc = subprocess.run(
        [*run, str(r18), "--to", "official", "--out", str(tmp_path / "no.ckpt"), "--no-check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "only the MobileNetV2 backbone" in lines[0], lines
    assert "--to onnx" in lines[0]


def test_predict_rounds_and_truncate_gives_official_demo_parity():
    a = np.array([0.0, 0.999, 0.5 / 255, 1.5 / 255, 254.6 / 255, 1.0], np.float32)
    assert alpha_to_uint8(a).tolist() == [0, 255, 0, 2, 255, 255]
    official = (a * 255).astype(np.uint8)  # the official demo's conversion
    assert np.array_equal(alpha_to_uint8(a, truncate=True), official)
    assert alpha_to_uint8(a, truncate=True).tolist() == [0, 254, 0, 1, 254, 255]
