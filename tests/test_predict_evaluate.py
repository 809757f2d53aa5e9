"""MODNet inference (reference-size rule, batching) and the `predict` / `evaluate` commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from portraits import portrait
from spec_weights import deterministic_state_dict, modnet_rename
from typer.testing import CliRunner

from matdata.cli import app, main
from matdata.imageio import decode_alpha, decode_rgba, encode_jpeg, encode_png, load_image
from matdata.metrics import MetricSums
from matdata.schema import Record
from matdata.shards import ShardWriter, write_index
from matdata.trimap import make_trimap
from modnet.inference import (
    iter_predictions,
    load_checkpoint_model,
    predict_alpha,
    predict_alphas,
    to_input,
    working_size,
)

MANIFEST = Path(__file__).parent / "data" / "specs" / "modnet.state_dict.json"
REF = ["--ref-size", "64", "--no-progress", "--device", "cpu"]  # small working sizes: fast


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    """A checkpoint in the released layout (`module.` prefix, backbone twice)."""
    state = deterministic_state_dict(MANIFEST, seed=0, rename=modnet_rename)
    path = tmp_path_factory.mktemp("ckpt") / "modnet_photographic_portrait_matting.ckpt"
    torch.save({"module." + k: v for k, v in state.items()}, path)
    return str(path)


@pytest.fixture(scope="module")
def model(ckpt):
    return load_checkpoint_model(ckpt, "cpu").model


def _portrait(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return portrait(seed, h, w)


@pytest.mark.parametrize(
    ("hw", "expected"),
    [
        ((100, 200), (512, 1024)),
        ((600, 400), (576, 384)),
        ((1000, 2000), (512, 1024)),
        ((700, 300), (672, 288)),
        ((513, 1000), (512, 992)),
        ((40, 30), (672, 512)),
    ],  # fmt: skip
)
def test_working_size_follows_the_reference_rule(hw, expected):
    assert working_size(*hw) == expected


def test_predictions_match_the_released_pipeline_and_batching(model):
    images = [_portrait(48, 64, 0)[0], _portrait(50, 70, 1)[0], _portrait(48, 64, 2)[0]]
    alphas = predict_alphas(model, images, batch_size=4, ref_size=64)
    singles = [predict_alpha(model, im, ref_size=64) for im in images]
    for im, a, s in zip(images, alphas, singles, strict=True):
        assert a.shape == im.shape[:2] and a.dtype == np.float32
        assert a.min() >= 0 and a.max() <= 1
        assert np.allclose(a, s, atol=1e-5)  # batching does not change results in eval()
    # the released recipe by hand: [-1,1], area resize to /32 sizes, inference, area back
    x = to_input(images[1])
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    with torch.no_grad():
        _, _, m = model(F.interpolate(x, size=(32, 64), mode="area"), True)
    ref = F.interpolate(m, size=(50, 70), mode="area")[0, 0].numpy()
    assert np.allclose(alphas[1], ref, atol=1e-6)
    items = [("a", images[0]), ("b", images[1])]
    keys = [k for k, _, _ in iter_predictions(model, items, ref_size=64)]
    assert keys == ["a", "b"]


def _write_images(root: Path, n: int = 2) -> tuple[Path, Path]:
    imgs, alphas = root / "imgs", root / "alphas"
    imgs.mkdir()
    alphas.mkdir()
    for i in range(n):
        rgb, a = _portrait(48 + 8 * i, 64, i)
        (imgs / f"p{i}.png").write_bytes(encode_png(rgb))
        (alphas / f"p{i}.png").write_bytes(encode_png(a))
    return imgs, alphas


def test_predict_command_writes_alphas_and_cutouts(tmp_path, ckpt, model):
    imgs, _ = _write_images(tmp_path)
    (imgs / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["predict", str(imgs), "--checkpoint", ckpt, "--out", str(out), "--cutout", *REF]
    )
    assert res.exit_code == 0, res.output
    assert "skipped (not_an_image)" in res.output
    assert sorted(p.name for p in out.iterdir()) == [
        "p0.cutout.png", "p0.png", "p1.cutout.png", "p1.png"
    ]  # fmt: skip
    for i in range(2):
        rgb = load_image(str(imgs / f"p{i}.png"))
        alpha = decode_alpha((out / f"p{i}.png").read_bytes(), "a")
        assert alpha.shape == rgb.shape[:2]
        expected = np.rint(predict_alpha(model, rgb, ref_size=64) * 255).astype(np.uint8)
        assert np.abs(alpha.astype(int) - expected).max() <= 1
        rgba_rgb, rgba_a = decode_rgba((out / f"p{i}.cutout.png").read_bytes(), "c")
        assert np.array_equal(rgba_rgb, rgb) and np.array_equal(rgba_a, alpha)


def test_evaluate_folders_json_matches_direct_metrics(tmp_path, ckpt, model):
    imgs, alphas = _write_images(tmp_path, 3)
    (imgs / "extra.png").write_bytes(encode_png(np.zeros((40, 40, 3), np.uint8)))  # no alpha
    js = tmp_path / "metrics.json"
    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--checkpoint",
            ckpt,
            "--images",
            str(imgs),
            "--alphas",
            str(alphas),
            "--json",
            str(js),
            *REF,
        ],  # fmt: skip
    )
    assert res.exit_code == 0, res.output
    assert "SAD" in res.output and "unknown region" in res.output
    report = json.loads(js.read_text())
    assert report["count"]["whole"] == 3 and report["skipped"] == {"no_alpha": 1}
    assert report["model"] == {"backbone": "mobilenetv2", "hr_channels": 32}
    sums = MetricSums()
    for i in range(3):
        rgb, gt = (
            load_image(str(imgs / f"p{i}.png")),
            decode_alpha((alphas / f"p{i}.png").read_bytes(), "a"),
        )
        sums.add(predict_alpha(model, rgb, ref_size=64), gt, make_trimap(gt))
    for region, values in sums.result().items():
        for k, v in values.items():
            assert report["metrics"][region][k] == pytest.approx(v, rel=1e-6), (region, k)
    assert len(report["images"]) == 3 and report["images"][0]["key"].endswith("p0.png")


def _record(i: int, split: str, coarse: bool = False) -> Record:
    rgb, alpha = _portrait(48, 64, 10 + i)
    return Record(
        key=f"s{i:03d}",
        image=encode_jpeg(rgb, 95),
        alpha=encode_png(alpha),
        meta={"split": split, "fg": {"id": str(i)}, "bg": {"id": "b"}, "seed": i, "coarse": coarse},
    )


def test_evaluate_built_dataset_skips_coarse_samples(tmp_path, ckpt):
    root = tmp_path / "ds"
    infos = []
    with ShardWriter(str(root), "train", 0, formats="parquet") as w:
        w.write(_record(0, "train"))
        infos += w.close()
    with ShardWriter(str(root), "val", 0, formats="both") as w:
        for i, coarse in enumerate([False, True, False]):
            w.write(_record(1 + i, "val", coarse))
        infos += w.close()
    write_index(str(root), infos, config={}, sources={}, rejects={})
    runner = CliRunner()
    for fmt in ("parquet", "webdataset"):
        res = runner.invoke(
            app,
            ["evaluate", "-c", ckpt, "--data", str(root), "--format", fmt, "--json", "-", *REF],
        )
        assert res.exit_code == 0, res.output
        report = json.loads(res.stdout)
        assert report["count"]["unknown"] == 2 and report["skipped"] == {"coarse": 1}
        assert [im["key"] for im in report["images"]] == ["s001", "s003"]
    res = runner.invoke(app, ["evaluate", "-c", ckpt, "--data", str(root), "--split", "test"])
    assert "no split 'test'" in str(res.exception)


def _run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["matdata", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return exc.value.code, capsys.readouterr().err


def test_clear_one_line_errors(tmp_path, ckpt, monkeypatch, capsys):
    imgs, alphas = _write_images(tmp_path, 1)
    cases = [
        (
            ["predict", str(imgs), "-c", str(tmp_path / "missing.ckpt"), "--out", "o"],
            "does not exist",
        ),
        (
            ["predict", str(tmp_path / "nope.jpg"), "-c", ckpt, "--out", "o"],
            "nope.jpg does not exist",
        ),
        (["evaluate", "-c", ckpt, "--data", str(tmp_path / "no-ds")], "not a built dataset"),
        (["evaluate", "-c", ckpt], "either --data DIR or --images"),
        (["evaluate", "-c", ckpt, "--images", str(imgs)], "--images and --alphas go together"),
    ]
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00" * 100)
    cases.append((["predict", str(imgs), "-c", str(garbage), "--out", "o"], "garbage.ckpt"))
    other = tmp_path / "other.ckpt"
    torch.save({"conv.weight": torch.zeros(3, 3)}, other)
    cases.append((["predict", str(imgs), "-c", str(other), "--out", "o"], "not a MODNet model"))
    # no machine has 100 GPUs: a clear error whether or not CUDA is present
    cases.append(
        (["predict", str(imgs), "-c", ckpt, "--out", "o", "--device", "cuda:99"], "cuda:99")
    )
    cases.append((["predict", str(imgs), "-c", ckpt, "--out", "o", "--device", "tpu"], "device"))
    for args, message in cases:
        code, err = _run_main(monkeypatch, capsys, *args)
        assert code == 1, (args, err)
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert lines[0].startswith("error:") and message in " ".join(lines), (args, err)
        assert "Traceback" not in err
