"""The four harmonization networks: exact state_dict layout, strict loading of released-style
checkpoints, and agreement with the reference forward passes in tests/data/specs/vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from spec_weights import deterministic_state_dict, manifest_entries

from harmonization import build_network, load_network
from harmonization.weights import deterministic_state_dict as lib_deterministic
from matdata.checkpoints import load_weights
from matdata.errors import CheckpointError, ConfigError

SPECS = Path(__file__).parent / "data" / "specs"
NETWORKS = ("rainnet", "idih256", "issam256", "dih256")
VECTORS = sorted(p for p in (SPECS / "vectors").glob("*.npz") if p.name.split(".")[0] in NETWORKS)


def manifest(name: str) -> Path:
    return SPECS / f"{name}.state_dict.json"


@pytest.fixture(scope="module")
def states() -> dict[str, dict[str, torch.Tensor]]:
    """The spec's deterministic weights per network (made once: RainNet has 55M values)."""
    return {name: deterministic_state_dict(manifest(name), seed=0) for name in NETWORKS}


@pytest.fixture(scope="module")
def loaded(states) -> dict[str, torch.nn.Module]:
    """Each network with the spec's deterministic weights, strictly loaded, in eval()."""
    out = {}
    for name in NETWORKS:
        model = build_network(name)
        load_weights(model, states[name])
        out[name] = model.eval()
    return out


@pytest.mark.parametrize("name", NETWORKS)
def test_state_dict_matches_manifest(name: str) -> None:
    model = build_network(name)
    got = [
        (k, tuple(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in model.state_dict().items()
    ]
    expected = manifest_entries(manifest(name))
    assert got == expected
    spec = json.loads(manifest(name).read_text())
    assert len(got) == spec["num_keys"]
    assert sum(p.numel() for p in model.parameters()) == spec["num_parameters"]


@pytest.mark.parametrize("name", NETWORKS)
def test_library_recipe_equals_test_recipe(name: str, states) -> None:
    """harmonization.weights (used by the CLI test and the benchmark) is the spec recipe;
    the large RainNet convolutions are skipped to keep the test fast."""
    pairs = [(k, s) for k, s, _ in manifest_entries(manifest(name)) if np.prod(s) <= 300_000]
    ours = lib_deterministic(pairs, seed=0)
    assert len(ours) >= 10
    for k, _ in pairs:
        assert torch.equal(ours[k], states[name][k]), k


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_forward_matches_reference(path: Path, loaded: dict[str, torch.nn.Module]) -> None:
    name = path.name.split(".")[0]
    data = np.load(path)
    with torch.no_grad():
        out = loaded[name](torch.from_numpy(data["image"]), torch.from_numpy(data["mask"]))
    ref = data["out"]
    assert out.shape == ref.shape
    err = float(np.abs(out.numpy() - ref).max())
    assert err <= 1e-4 * max(1.0, float(np.abs(ref).max())), f"{path.name}: max err {err}"


def test_rainnet_dropout_is_live_only_in_train_mode(loaded) -> None:
    data = np.load(SPECS / "vectors" / "rainnet.seed0.256x256.npz")
    x, m = torch.from_numpy(data["image"]), torch.from_numpy(data["mask"])
    model = loaded["rainnet"]
    try:
        torch.manual_seed(0)
        with torch.no_grad():
            train_out = model.train()(x, m)
    finally:
        model.eval()
    assert float((train_out - torch.from_numpy(data["out"])).abs().max()) > 1e-2


# ------------------------------------------------------------------ checkpoint loading


def test_released_file_loads_strictly_with_prefix_and_wrapper(tmp_path: Path, states) -> None:
    state = states["idih256"]
    plain = tmp_path / "idih256.pth"
    torch.save(state, plain)
    prefixed = tmp_path / "dp.pth"
    torch.save({"module." + k: v for k, v in state.items()}, prefixed)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": state, "epoch": torch.tensor(3)}, wrapped)
    ref = load_network("idih256", str(plain)).state_dict()
    for path in (prefixed, wrapped):
        other = load_network("idih256", str(path)).state_dict()
        assert all(torch.equal(ref[k], other[k]) for k in ref)
    assert not load_network("idih256", str(plain)).training


def test_rainnet_filter_accepts_generator_prefix(states) -> None:
    state = states["rainnet"]
    model = load_network("rainnet", {"netG." + k: v for k, v in state.items()})
    assert torch.equal(model.state_dict()["model_out.1.bias"], state["model_out.1.bias"])


def test_wrong_checkpoint_names_keys(states) -> None:
    with pytest.raises(CheckpointError) as exc:
        load_network("idih256", states["dih256"])
    text = exc.value.one_line()
    assert "missing" in text and "decoder.conv_attention.weight" in text
    assert "unexpected" in text and "encoder.block0.block.1.weight" in text


def test_mis_shaped_key_is_named(states) -> None:
    state = dict(states["issam256"])
    state["decoder.to_rgb.bias"] = torch.zeros(4)
    with pytest.raises(CheckpointError, match=r"decoder\.to_rgb\.bias \(4,\) != \(3,\)"):
        load_network("issam256", state)


def test_truncated_and_pickled_files_are_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    torch.save(deterministic_state_dict(manifest("issam256")), good)
    data = good.read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_network("issam256", str(bad))
    evil = tmp_path / "object.pth"
    torch.save(
        {"state_dict": deterministic_state_dict(manifest("issam256")), "cfg": Path("x")}, evil
    )
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_network("issam256", str(evil))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_network("issam256", str(tmp_path / "absent.pth"))


def test_unknown_network() -> None:
    with pytest.raises(ConfigError, match="unknown network"):
        build_network("idih1024")
