"""Harmonizers on arrays: paste-back at full resolution, Reinhard, pass-through, errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from harmonization import build_network, load_harmonizer, mask_kind, paste_back, resolve_device
from harmonization.harmonizers import background_ring, clear_cache
from harmonization.weights import deterministic_state_dict
from matdata.errors import CheckpointError, ConfigError, DeviceError, ItemError


def scene(h: int = 120, w: int = 160, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A bluish textured background with a reddish textured ellipse; soft mask edge."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.float32)
    img[..., 0], img[..., 1], img[..., 2] = 40, 90, 170
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (w // 2, h // 2), (w // 5, h // 3), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (5, 5), 1.0)
    mask[mask < 0.02] = 0
    fg = np.array([200, 120, 80], np.float32)
    img = img * (1 - mask[..., None]) + fg * mask[..., None]
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), mask


def lab_mean(img: np.ndarray, sel: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(img.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    return lab[sel].mean(axis=0)


@pytest.fixture(scope="module")
def idih_state() -> dict[str, torch.Tensor]:
    return deterministic_state_dict(build_network("idih256"))


def test_none_is_identity() -> None:
    img, mask = scene()
    out = load_harmonizer("none")(img, mask)
    assert out.dtype == np.uint8 and np.array_equal(out, img)


def test_reinhard_moves_foreground_statistics_to_the_ring() -> None:
    img, mask = scene()
    fg = mask >= 0.99
    ring = background_ring(mask)
    assert ring.sum() > 100 and not (ring & (mask > 0)).any()
    before = np.abs(lab_mean(img, fg) - lab_mean(img, ring))
    full = load_harmonizer("reinhard", strength=1.0)(img, mask)
    after = np.abs(lab_mean(full, fg) - lab_mean(img, ring))
    assert before.max() > 20
    assert after.max() < 0.15 * before.max()
    half = load_harmonizer("reinhard", strength=0.5)(img, mask)
    mid = np.abs(lab_mean(half, fg) - lab_mean(img, ring))
    assert after.max() < mid.max() < before.max()
    zero = load_harmonizer("reinhard", strength=0.0)(img, mask)
    assert np.abs(zero.astype(int) - img).max() <= 1  # Lab round trip only
    for out in (full, half, zero):
        assert np.array_equal(out[mask == 0], img[mask == 0])


def test_reinhard_parameters_are_checked() -> None:
    with pytest.raises(ConfigError, match="strength"):
        load_harmonizer("reinhard", strength=1.5)
    with pytest.raises(ConfigError):
        load_harmonizer("reinhard", checkpoint="x.pth")
    with pytest.raises(ConfigError, match="unknown harmonizer"):
        load_harmonizer("poisson")


def test_mask_kind_and_pass_through(idih_state) -> None:
    img, _ = scene(64, 64)
    empty = np.zeros((64, 64), np.float32)
    full = np.ones((64, 64), np.float32)
    assert mask_kind(empty) == "empty" and mask_kind(full) == "full"
    assert mask_kind(np.full((4, 4), 0.5, np.float32)) == "partial"
    for h in (load_harmonizer("reinhard"), load_harmonizer("idih256", idih_state, "cpu")):
        assert np.array_equal(h(img, empty), img)
        assert np.array_equal(h(img, full), img)


def test_paste_back_adds_the_smooth_change_and_keeps_detail() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(40, 200, (90, 130, 3)).astype(np.uint8)  # pure high frequency
    mask = np.zeros((90, 130), np.float32)
    mask[20:70, 30:100] = 1.0
    low_mask = cv2.resize(mask, (32, 32), interpolation=cv2.INTER_AREA)
    low_in = cv2.resize(img.astype(np.float32) / 255, (32, 32), interpolation=cv2.INTER_AREA)
    shift = np.array([0.1, -0.05, 0.02], np.float32)
    low_out = low_in + shift
    low_out[low_mask == 0] = 0.0  # garbage outside the mask must not leak in
    out = paste_back(img, mask, low_in, low_out, low_mask)
    expect = np.clip(np.rint(img.astype(np.float32) + 255 * shift), 0, 255)
    inner = np.zeros_like(mask, bool)
    inner[24:66, 34:96] = True
    assert np.abs(out[inner].astype(int) - expect[inner]).max() <= 1
    assert np.array_equal(out[mask == 0], img[mask == 0])


@pytest.mark.parametrize("name", ["idih256", "rainnet"])
def test_same_size_matches_released_inference(name: str) -> None:
    """At the network's own size, paste-back reduces to the released blend."""
    torch.manual_seed(0)
    state = build_network(name).state_dict()  # any weights will do: this is about conventions
    img, _ = scene(256, 256, seed=3)
    mask = np.zeros((256, 256), np.float32)
    mask[60:200, 80:170] = 1.0
    out = load_harmonizer(name, state, "cpu")(img, mask)
    net = build_network(name)
    net.load_state_dict(state)
    net.eval()
    x = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)[None]
    m = torch.from_numpy(mask)[None, None]
    with torch.no_grad():
        if name == "rainnet":
            pred = (net(x * 2 - 1, m) + 1) / 2
        else:
            mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
            std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
            pred = net((x - mean) / std, m) * std + mean
    ref = (pred.clamp(0, 1) * m + x * (1 - m))[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(out.astype(np.float32) - ref).max() <= 1.0
    assert np.abs(out.astype(int) - img).max() > 10  # the network did change the inside


def test_network_at_600x800_stays_sharp_and_keeps_background(idih_state) -> None:
    img, mask = scene(600, 800, seed=2)
    h = load_harmonizer("idih256", idih_state, "cpu")
    out = h(img, mask)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out[mask == 0], img[mask == 0])
    inside = mask >= 0.99
    change = np.abs(out[inside].astype(int) - img[inside]).mean()
    assert change > 2  # it harmonized something

    def highpass(a: np.ndarray) -> np.ndarray:
        f = a.astype(np.float32)
        return (f - cv2.GaussianBlur(f, (0, 0), 1.0))[inside].ravel()

    hp_in, hp_out = highpass(img), highpass(out)
    # detail kept: the fine texture inside is the composite's own (the deterministic
    # weights give a noisy 256x256 change, so not all of it is identical) ...
    assert np.corrcoef(hp_in, hp_out)[0, 1] > 0.9
    assert np.abs(hp_out).mean() > 0.8 * np.abs(hp_in).mean()
    # ... whereas resizing a 256x256 result up would have blurred it away
    naive = cv2.resize(cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA), (800, 600))
    assert np.corrcoef(hp_in, highpass(naive))[0, 1] < 0.5
    assert np.abs(highpass(naive)).mean() < 0.3 * np.abs(hp_in).mean()


def test_batch_equals_single_calls(idih_state) -> None:
    h = load_harmonizer("idih256", idih_state, "cpu", batch_size=2)
    items = [scene(100, 140, 0), scene(64, 64, 1), scene(90, 60, 2)]
    items.append((items[0][0], np.zeros((100, 140), np.float32)))
    outs = h.batch([i for i, _ in items], [m for _, m in items])
    for (img, m), o in zip(items, outs, strict=True):
        assert np.array_equal(o, h(img, m))


def _devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def test_paste_back_torch_matches_numpy() -> None:
    from harmonization.harmonizers import paste_back_torch

    rng = np.random.default_rng(4)
    img, mask = scene(90, 130, seed=4)
    low_mask = cv2.resize(mask, (32, 32), interpolation=cv2.INTER_AREA)
    low_in = cv2.resize(img.astype(np.float32) / 255, (32, 32), interpolation=cv2.INTER_AREA)
    low_out = np.clip(low_in + rng.normal(0, 0.05, low_in.shape).astype(np.float32), 0, 1)
    ref = paste_back(img, mask, low_in, low_out, low_mask)

    def t(a: np.ndarray, chw: bool = False) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(a))
        return x.permute(2, 0, 1) if chw else x

    out = paste_back_torch(t(img), t(mask), t(low_in, True), t(low_out, True), t(low_mask))
    out = out.numpy()
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.abs(out.astype(int) - ref).max() <= 1
    assert np.array_equal(out[mask == 0], img[mask == 0])


@pytest.mark.parametrize("device", _devices())
def test_on_device_path_agrees_with_host_path(idih_state, device: str) -> None:
    """Resize + paste-back on the device (the CUDA default) give the host path's result."""
    img, mask = scene(600, 800, seed=5)
    host = load_harmonizer("idih256", idih_state, "cpu", on_device=False)(img, mask)
    dev = load_harmonizer("idih256", idih_state, device, on_device=True, autocast=False)
    items = [(img, mask), scene(100, 140, 1), (img, np.zeros_like(mask))]
    outs = dev.batch([i for i, _ in items], [m for _, m in items])
    assert np.array_equal(outs[0][mask == 0], img[mask == 0])
    assert np.array_equal(outs[2], img)  # empty mask: passed through
    inside = mask > 0
    diff = np.abs(outs[0].astype(int) - host)[inside]
    # torch's area resize bins differ slightly from OpenCV's at non-integer scales
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 4
    assert np.abs(outs[0].astype(int) - img)[mask >= 0.99].mean() > 2


def test_bad_inputs_raise_item_errors() -> None:
    img, mask = scene(64, 80)
    h = load_harmonizer("reinhard")
    with pytest.raises(ItemError, match="size mismatch.*mask is 64x64") as exc:
        h(img, mask[:, :64])
    assert exc.value.reason == "size_mismatch"
    with pytest.raises(ItemError, match="divide by 255"):
        h(img, (mask * 255).astype(np.uint8))
    with pytest.raises(ItemError, match=r"\[0, 1\]"):
        h(img, mask * 2)


def test_networks_need_a_checkpoint_and_a_valid_size(idih_state) -> None:
    with pytest.raises(CheckpointError, match="--checkpoint") as exc:
        load_harmonizer("rainnet")
    assert "reinhard" in exc.value.one_line()
    with pytest.raises(ConfigError, match="multiples of 128"):
        load_harmonizer("idih256", idih_state, "cpu", size=200)
    with pytest.raises(ConfigError, match="at least 256"):
        load_harmonizer("idih256", idih_state, "cpu", size=(128, 256))
    h = load_harmonizer("idih256", idih_state, "cpu", size=(256, 384))
    img, mask = scene(50, 90)
    assert h(img, mask).shape == img.shape


def test_network_cached_per_process(tmp_path: Path, idih_state) -> None:
    path = tmp_path / "idih256.pth"
    torch.save(idih_state, path)
    clear_cache()
    a = load_harmonizer("idih256", str(path), "cpu")
    b = load_harmonizer("idih256", str(path), "cpu")
    assert a is b
    assert (
        a.provenance()["checkpoint_sha256"]
        == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    )
    clear_cache()


def test_devices() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda:1")


def test_harmonization_metrics_by_hand() -> None:
    from matdata.metrics_harmonization import aggregate, fmse, image_metrics, mse, psnr

    real = np.zeros((4, 5, 3), np.uint8)
    pred = real.copy()
    pred[0, 0] = [3, 4, 0]  # squared error 9 + 16 = 25 at one pixel
    mask = np.zeros((4, 5), np.float32)
    mask[0, :2] = 1.0  # two foreground pixels
    assert mse(pred, real) == pytest.approx(25 / 60)
    assert fmse(pred, real, mask) == pytest.approx(25 / (3 * 2))
    assert fmse(pred, real, np.zeros((4, 5))) == 0.0
    assert psnr(pred, real) == pytest.approx(10 * np.log10(255**2 / (25 / 60)))
    assert psnr(real, real) == float("inf")
    agg = aggregate([image_metrics(pred, real, mask), image_metrics(real, real, mask)])
    assert agg["images"] == 2 and agg["mse"] == pytest.approx(25 / 120)
    with pytest.raises(ValueError, match="shape mismatch"):
        mse(pred, real[:3])
