"""`matdata evaluate` on the published layouts of the standard matting benchmarks."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from portraits import portrait
from spec_weights import deterministic_state_dict, modnet_rename

from matdata.benchmarks import LAYOUTS, scan_benchmark, scan_folders
from matdata.errors import MatdataError, SourceError
from matdata.imageio import encode_jpeg, encode_png
from matdata.metrics import MetricSums
from modnet.benchmarks import evaluate_set
from modnet.inference import load_checkpoint_model, predict_alpha

MANIFEST = Path(__file__).parent / "data" / "specs" / "modnet.state_dict.json"
REF = 64  # small working sizes: fast


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    state = deterministic_state_dict(MANIFEST, seed=0, rename=modnet_rename)
    path = tmp_path_factory.mktemp("ckpt") / "modnet.ckpt"
    torch.save({"module." + k: v for k, v in state.items()}, path)
    return str(path)


@pytest.fixture(scope="module")
def model(ckpt):
    return load_checkpoint_model(ckpt, "cpu").model


def _sample(seed: int, h: int = 40, w: int = 48):
    rgb, alpha = portrait(seed, h, w)
    trimap = np.where(alpha == 0, 0, np.where(alpha == 255, 255, 128)).astype(np.uint8)
    trimap[:4] = 128  # differs from a generated trimap: the supplied one must be used
    return rgb, alpha, trimap


def make_layout(root: Path, name: str, n: int = 3) -> Path:
    """Write ``n`` good samples in benchmark ``name``'s layout, plus one image without
    a matte (and for benchmarks with trimaps, one image whose matte has the wrong size)."""
    lay = LAYOUTS[name]
    base = root / lay.subdir if lay.subdir else root
    ext = ".png" if name == "comp1k" else ".jpg"
    dirs = [base / lay.images, base / lay.alphas] + ([base / lay.trimaps] if lay.trimaps else [])
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rgb, alpha, trimap = _sample(i)
        stem = f"s{i}"
        img = encode_png(rgb) if ext == ".png" else encode_jpeg(rgb, 95)
        (base / lay.images / f"{stem}{ext}").write_bytes(img)
        (base / lay.alphas / f"{stem}.png").write_bytes(encode_png(alpha))
        if lay.trimaps:
            (base / lay.trimaps / f"{stem}.png").write_bytes(encode_png(trimap))
    rgb, alpha, trimap = _sample(9)
    (base / lay.images / f"lonely{ext}").write_bytes(encode_png(rgb))  # no matte
    (base / lay.images / f"small{ext}").write_bytes(encode_png(rgb))
    (base / lay.alphas / "small.png").write_bytes(encode_png(alpha[:20]))  # wrong size
    if lay.trimaps:
        (base / lay.trimaps / "small.png").write_bytes(encode_png(trimap[:20]))
    return root


def _expected(model, root: Path, name: str, keys: list[str], convention: str = "dim"):
    lay = LAYOUTS[name]
    base = root / lay.subdir if lay.subdir else root
    regions = ("unknown", "whole") if lay.trimaps else ("whole",)
    sums = MetricSums(regions=regions, convention=convention)
    from matdata.imageio import load_alpha, load_image

    for key in keys:
        stem = Path(key).stem
        rgb = load_image(str(base / lay.images / key))
        gt = load_alpha(str(base / lay.alphas / f"{stem}.png"))
        tri = load_alpha(str(base / lay.trimaps / f"{stem}.png")) if lay.trimaps else None
        sums.add(predict_alpha(model, rgb, ref_size=REF), gt, tri)
    return sums.result()


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_each_layout_is_read_and_scored_with_its_own_trimaps(tmp_path, model, name):
    root = make_layout(tmp_path / name, name)
    bench = scan_benchmark(name, root)
    keys = [it.key for it in bench.items]
    assert sorted(Path(k).stem for k in keys) == ["s0", "s1", "s2", "small"]
    assert [(s.key.split(".")[0], s.reason) for s in bench.skipped] == [("lonely", "no_alpha")]
    res = evaluate_set(model, bench, ref_size=REF, generate_trimaps=False)
    assert [(s.key.split(".")[0], s.reason) for s in res.skipped] == [
        ("lonely", "no_alpha"),
        ("small", "size_mismatch"),
    ]
    good = [k for k in keys if not k.startswith("small")]
    assert [r["key"] for r in res.images] == good
    expected = _expected(model, root, name, good)
    got = res.sums.result()
    assert set(got) == set(expected)
    for region, values in expected.items():
        for k, v in values.items():
            assert got[region][k] == pytest.approx(v, rel=1e-6), (region, k)  # batched
    if LAYOUTS[name].trimaps is None:
        assert res.trimaps == "none" and "unknown" not in got
    else:
        assert res.trimaps == "supplied"
        assert got["unknown"]["sad"] > 0


def test_am2k_root_may_be_the_validation_folder(tmp_path):
    root = make_layout(tmp_path / "AM-2k", "am2k", n=1)
    a = scan_benchmark("am2k", root)
    b = scan_benchmark("am2k", root / "validation")
    assert [i.key for i in a.items] == [i.key for i in b.items] and len(a.items) == 2


def test_missing_trimap_and_orphan_matte_are_recorded(tmp_path):
    root = make_layout(tmp_path / "p3m", "p3m", n=2)
    (root / "trimap" / "s1.png").unlink()
    (root / "mask" / "ghost.png").write_bytes(encode_png(np.zeros((8, 8), np.uint8)))
    bench = scan_benchmark("p3m", root)
    reasons = sorted((s.key, s.reason) for s in bench.skipped)
    assert reasons == [
        ("ghost.png", "no_image"),
        ("lonely.jpg", "no_alpha"),
        ("s1.jpg", "no_trimap"),
    ]


def test_a_bad_trimap_is_a_recorded_skip(tmp_path, model):
    root = make_layout(tmp_path / "aim", "aim500", n=1)
    t = np.full((40, 48), 100, np.uint8)  # not 0/128/255
    (root / "trimap" / "s0.png").write_bytes(encode_png(t))
    res = evaluate_set(model, scan_benchmark("aim500", root), ref_size=REF)
    assert ("s0.jpg", "bad_trimap") in [(s.key, s.reason) for s in res.skipped]
    assert not res.images


def test_layout_errors_name_the_expected_folders(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(SourceError) as info:
        scan_benchmark("p3m", tmp_path / "x")
    assert "expected layout: original_image/, mask/, trimap/" in info.value.one_line()
    with pytest.raises(SourceError, match="unknown benchmark"):
        scan_benchmark("coco", tmp_path / "x")
    with pytest.raises(SourceError, match="not a folder"):
        scan_folders(tmp_path / "nope", tmp_path / "x")


def test_cli_benchmark_json_csv_and_conventions(tmp_path, ckpt, model):
    root = make_layout(tmp_path / "comp1k", "comp1k", n=2)
    js, per = tmp_path / "m.json", tmp_path / "per.csv"
    base = [sys.executable, "-m", "matdata", "evaluate", "-c", ckpt, "--benchmark", "comp1k"]
    opts = ["--root", str(root), "--ref-size", str(REF), "--no-progress", "--device", "cpu"]
    proc = subprocess.run(
        [*base, *opts, "--json", str(js), "--per-image", str(per)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "SAD (/1000)" in proc.stdout and "MSE (x1e3)" in proc.stdout
    assert "convention: dim" in proc.stdout
    report = json.loads(js.read_text())
    assert report["benchmark"] == "comp1k" and report["convention"] == "dim"
    assert report["trimaps"] == "supplied" and report["protocol"]["ref_size"] == REF
    assert report["scaling"]["sad"].endswith("/ 1000")
    assert report["skipped"] == {"no_alpha": 1, "size_mismatch": 1}
    assert {s["key"] for s in report["skipped_items"]} == {"lonely.png", "small.png"}
    expected = _expected(model, root, "comp1k", ["s0.png", "s1.png"])
    for region, values in expected.items():
        for k, v in values.items():
            assert report["metrics"][region][k] == pytest.approx(v, rel=1e-6), (region, k)
    rows = list(csv.DictReader(io.StringIO(per.read_text())))
    assert [(r["key"], r["status"]) for r in rows] == [
        ("s0.png", "ok"),
        ("s1.png", "ok"),
        ("lonely.png", "skipped"),
        ("small.png", "skipped"),
    ]
    assert float(rows[0]["unknown_sad"]) == pytest.approx(report["images"][0]["unknown"]["sad"])

    # gca: the same SAD, another Grad (mattes are not mat2gray-normalised)
    proc = subprocess.run(
        [*base, *opts, "--metric-convention", "gca", "--json", "-"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    gca = json.loads(proc.stdout)
    assert gca["convention"] == "gca"
    assert gca["metrics"]["unknown"]["sad"] == report["metrics"]["unknown"]["sad"]
    expected = _expected(model, root, "comp1k", ["s0.png", "s1.png"], "gca")
    assert gca["metrics"]["whole"]["grad"] == pytest.approx(expected["whole"]["grad"], rel=1e-6)


def test_cli_ppm100_reports_whole_image_only_and_errors_are_one_line(tmp_path, ckpt):
    from typer.testing import CliRunner

    from matdata.cli import app

    root = make_layout(tmp_path / "ppm", "ppm100", n=1)
    opts = ["--ref-size", str(REF), "--no-progress", "--device", "cpu"]
    res = CliRunner().invoke(
        app, ["evaluate", "-c", ckpt, "-b", "ppm100", "--root", str(root), "--json", "-", *opts]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout[res.stdout.index("{") :])
    assert report["trimaps"] == "none" and set(report["metrics"]) == {"whole"}
    cases = [
        (["-b", "ppm100"], "needs --root"),
        (["-b", "coco", "--root", str(root)], "unknown benchmark"),
        (["-b", "p3m", "--root", str(root)], "original_image"),
        (["-b", "ppm100", "--root", str(root), "--metric-convention", "x"], "convention"),
    ]
    for args, message in cases[1:]:  # in-process: the library error the CLI prints
        res = CliRunner().invoke(app, ["evaluate", "-c", ckpt, *args])
        assert isinstance(res.exception, MatdataError), args
        assert message in res.exception.one_line(), args
    proc = subprocess.run(  # as users run it: one line on stderr, exit code 1
        [sys.executable, "-m", "matdata", "evaluate", "-c", ckpt, *cases[0][0]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and cases[0][1] in lines[0], lines


def test_folders_with_supplied_trimaps(tmp_path, model):
    root = make_layout(tmp_path / "f", "aim500", n=2)
    bench = scan_folders(root / "original", root / "mask", root / "trimap")
    res = evaluate_set(model, bench, ref_size=REF)
    assert res.trimaps == "supplied" and len(res.images) == 2
    plain = evaluate_set(model, scan_folders(root / "original", root / "mask"), ref_size=REF)
    assert plain.trimaps == "generated"
    # the supplied trimaps mark the top rows unknown: another region, another SAD
    assert res.sums.result()["unknown"]["sad"] != plain.sums.result()["unknown"]["sad"]
