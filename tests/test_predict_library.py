"""``modnet.predict``: the library behind ``matdata predict``, called from Python."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from spec_weights import deterministic_state_dict, modnet_rename

from matdata.errors import ConfigError
from matdata.imageio import decode_alpha, decode_rgba, encode_png, load_image
from modnet.inference import alpha_to_uint8, load_checkpoint_model, predict_alpha
from modnet.predict import output_paths, plan_predictions, predict_images

MANIFEST = Path(__file__).parent / "data" / "specs" / "modnet.state_dict.json"


def _image(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_plan_refuses_collisions_and_empty_inputs(tmp_path: Path) -> None:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.png").write_bytes(encode_png(_image(8, 8, 0)))
    (tmp_path / "a" / "y.png").write_bytes(encode_png(_image(8, 8, 1)))
    with pytest.raises(ConfigError, match=r"a/x.png and .*b/x.png would both be written as"):
        plan_predictions([str(tmp_path)], str(tmp_path / "out"))
    assert plan_predictions([str(tmp_path / "a")], "o") == [
        str(tmp_path / "a" / "x.png"),
        str(tmp_path / "a" / "y.png"),
    ]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no image files found"):
        plan_predictions([str(tmp_path / "empty")], "o")
    assert output_paths("/in/p.q.jpg", "/o") == ("/o/p.q.png", "/o/p.q.cutout.png")


def test_predict_images_writes_what_the_model_predicts(tmp_path: Path) -> None:
    state = deterministic_state_dict(MANIFEST, seed=0, rename=modnet_rename)
    ckpt = tmp_path / "m.ckpt"
    torch.save({"module." + k: v for k, v in state.items()}, ckpt)
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(encode_png(_image(40, 48, 0)))
    (src / "bad.png").write_bytes(b"not an image")
    seen: list[str] = []
    steps: list[tuple[int, int]] = []
    res = predict_images(
        [str(src)], str(ckpt), str(tmp_path / "out"), cutout=True, device="cpu", ref_size=64,
        on_skip=lambda exc: seen.append(exc.reason), on_progress=lambda d, t: steps.append((d, t)),
    )  # fmt: skip
    assert (res.files, res.written, res.skipped, seen) == (
        2,
        1,
        {"not_an_image": 1},
        ["not_an_image"],
    )
    assert (res.backbone, res.hr_channels, res.device) == ("mobilenetv2", 32, "cpu")
    assert steps[0] == (0, 2) and steps[-1] == (2, 2)
    model = load_checkpoint_model(str(ckpt), "cpu").model
    rgb = load_image(str(src / "a.png"))
    want = alpha_to_uint8(predict_alpha(model, rgb, ref_size=64))
    got = decode_alpha((tmp_path / "out" / "a.png").read_bytes(), "a.png")
    assert np.array_equal(got, want)
    cut_rgb, cut_a = decode_rgba((tmp_path / "out" / "a.cutout.png").read_bytes(), "a.cutout.png")
    assert np.array_equal(cut_a, want) and np.array_equal(cut_rgb, rgb)
