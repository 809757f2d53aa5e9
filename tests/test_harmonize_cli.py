"""`matdata harmonize` and `matdata harmonize-eval` end to end, and their one-line errors.

A real local Dask cluster (one worker process on loopback) is shared by the tests of this
module through ``--scheduler``, so the worker imports torch and loads a network once.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from harmonization import build_network
from harmonization.weights import deterministic_state_dict
from matdata.cli import app
from matdata.imageio import encode_jpeg, encode_png, fast_decode_jpeg, fast_decode_png_gray
from matdata.rejects import read_rejects
from matdata.schema import Record
from matdata.shards import ShardWriter, iter_records, list_shards, read_index, verify, write_index

runner = CliRunner()


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        env={"OMP_NUM_THREADS": "1"},
    )
    yield cluster.scheduler_address
    cluster.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, scheduler: str) -> Path:
    """A small dataset built from the embedded demo source, in both formats."""
    out = tmp_path_factory.mktemp("demo") / "ds"
    res = runner.invoke(
        app,
        ["build", "--fg", "demo", "--bg", "demo", "--out", str(out), "--per-fg", "1",
         "--size", "96x128", "--samples-per-shard", "2", "--format", "both",
         "--fg-option", "n_fg=4", "--bg-option", "n_bg=3", "--scheduler", scheduler,
         "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return out


def records(path: Path) -> dict[str, Record]:
    return {r.key: r for r in iter_records(str(path))}


def far_background(alpha: np.ndarray, margin: int = 24) -> np.ndarray:
    k = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    return cv2.dilate((alpha > 0).astype(np.uint8), k) == 0


def check_output(src: Path, out: Path, model: str, quality: int = 95) -> dict[str, Record]:
    """Same keys, formats, splits and sizes; originals kept; background pixels untouched."""
    assert verify(str(out)) == []
    a, b = read_index(str(src)), read_index(str(out))
    assert b["formats"] == a["formats"] and b["splits"] == a["splits"]
    assert b["harmonization"]["model"] == model
    for fmt in a["formats"]:
        keys_in = [r.key for r in iter_records(str(src), None, fmt)]
        assert keys_in == [r.key for r in iter_records(str(out), None, fmt)]
    old, new = records(src), records(out)
    far_pixels = 0
    for key, r in new.items():
        o = old[key]
        assert r.image_raw == o.image and r.alpha == o.alpha and r.meta["split"] == o.meta["split"]
        assert r.meta["harmonization"]["model"] == model
        img, raw = fast_decode_jpeg(r.image), fast_decode_jpeg(r.image_raw)
        assert img.shape == raw.shape
        alpha = fast_decode_png_gray(r.alpha)
        # the harmonizer leaves mask == 0 bit-identical; after the JPEG re-encode, pixels
        # whose neighbouring 16x16 blocks are all background decode exactly as a re-encode
        far = far_background(alpha)
        reenc = fast_decode_jpeg(encode_jpeg(raw, quality))
        assert np.array_equal(img[far], reenc[far])
        far_pixels += int(far.sum())
        assert np.abs(img[alpha == 0].astype(int) - raw[alpha == 0]).mean() < 2.0
    assert far_pixels > 500
    return new


def test_reinhard_end_to_end_deterministic_and_resumable(demo: Path, tmp_path: Path, scheduler):
    out = tmp_path / "h"
    args = ["harmonize", str(demo), "--model", "reinhard", "--strength", "1.0", "--out",
            str(out), "--scheduler", scheduler, "--no-progress"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    n_tasks = len(list_shards(str(demo)))
    assert "harmonized" in res.output and f"{n_tasks} / 0" in res.output
    new = check_output(demo, out, "reinhard")
    changed = [k for k, r in new.items() if r.meta["harmonization"]["applied"] == "harmonized"]
    assert changed and all(new[k].image != new[k].image_raw for k in changed)
    assert new[changed[0]].meta["harmonization"]["params"]["strength"] == 1.0
    index_bytes = (out / "dataset.json").read_bytes()
    shards = list_shards(str(out))
    # resume: drop one finished shard (file + marker); a rerun rewrites only that one,
    # byte-identical, and the index comes out the same
    victim = shards[0]
    (out / victim.path).unlink()
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert f"1 / {n_tasks - 1}" in res.output
    assert (out / "dataset.json").read_bytes() == index_bytes
    # a different harmonization into the same folder is refused
    res = runner.invoke(app, [*args[:5], "0.5", *args[6:]])
    assert res.exit_code != 0 and "different" in str(res.exception)


def test_rainnet_with_checkpoint_end_to_end(demo: Path, tmp_path: Path, scheduler):
    weights = tmp_path / "net_G_last.pth"
    torch.save(deterministic_state_dict(build_network("rainnet")), weights)
    out = tmp_path / "r"
    res = runner.invoke(
        app,
        ["harmonize", str(demo), "--model", "rainnet", "--checkpoint", str(weights), "--out",
         str(out), "--batch-size", "2", "--device", "cpu", "--scheduler", scheduler,
         "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    new = check_output(demo, out, "rainnet")
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert read_index(str(out))["harmonization"]["checkpoint_sha256"] == sha
    assert all(r.meta["harmonization"]["checkpoint_sha256"] == sha for r in new.values())
    assert any(r.image != r.image_raw for r in new.values())


def _record(key: str, image: np.ndarray, alpha: np.ndarray) -> Record:
    meta = {"split": "train", "fg": {"id": key}, "bg": {"id": "b"}, "seed": 0}
    return Record(key=key, image=encode_jpeg(image, 95), alpha=encode_png(alpha), meta=meta)


def test_empty_full_and_bad_records_are_counted(tmp_path: Path, scheduler):
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 80, 3)).astype(np.uint8)
    partial = np.zeros((64, 80), np.uint8)
    partial[10:50, 20:60] = 255
    recs = [
        _record("partial", img, partial),
        _record("empty", img, np.zeros((64, 80), np.uint8)),
        _record("full", img, np.full((64, 80), 255, np.uint8)),
        _record("mismatch", img, np.zeros((32, 80), np.uint8)),
    ]
    with ShardWriter(str(src), "train", 0, ("webdataset",)) as w:
        for r in recs:
            w.write(r)
        infos = w.close()
    write_index(str(src), infos, config={"jpeg_quality": 95}, sources={}, rejects={})
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        ["harmonize", str(src), "--model", "reinhard", "--out", str(out), "--scheduler",
         scheduler, "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    counts = read_index(str(out))["harmonization"]["counts"]
    assert counts == {"harmonized": 1, "empty": 1, "full": 1, "rejected": 1}
    new = records(out)
    assert sorted(new) == ["empty", "full", "partial"]
    for key in ("empty", "full"):
        assert new[key].image == recs[[r.key for r in recs].index(key)].image
        assert new[key].meta["harmonization"]["applied"] == key
    rejects = read_rejects(str(out / "rejects.parquet"))
    assert [(r.path, r.reason, r.stage) for r in rejects] == [
        ("mismatch", "size_mismatch", "harmonize")
    ]
    # harmonizing a harmonized dataset starts again from image_raw: models replace each
    # other instead of stacking ("none" gives the original composites back)
    again = tmp_path / "again"
    res = runner.invoke(
        app,
        ["harmonize", str(out), "--model", "none", "--out", str(again), "--scheduler",
         scheduler, "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    original = {r.key: r.image for r in recs}
    for key, r in records(again).items():
        assert r.image == r.image_raw == original[key]
        assert r.meta["harmonization"]["model"] == "none"


# ------------------------------------------------------------------------ harmonize-eval


def write_as(path: Path, arr: np.ndarray) -> None:
    """Lossless pixels under the layout's file names (the decoder sniffs the content)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(arr))


def iharmony_tree(root: Path, mismatch: bool = False) -> None:
    """Two subsets.  Composite = real + 10 (all channels) inside a 20x20 mask on 40x50
    images, so by hand: fMSE = 100, MSE = 100 * 400/2000 = 20, PSNR = 10 log10(255^2/20)."""
    for subset, names in (("HCOCO", ["c1_1_1", "c1_1_2"]), ("HFlickr", ["f7_3_1"])):
        d = root / subset
        lines = []
        for name in names:
            real_name, mask_name = name.split("_")[0], "_".join(name.split("_")[:-1])
            real = np.full((40, 50, 3), 100, np.uint8)
            mask = np.zeros((40, 50), np.uint8)
            mask[5:25, 10:30] = 255
            comp = real.copy()
            comp[mask > 0] += 10
            write_as(d / "real_images" / f"{real_name}.jpg", real)
            write_as(d / "masks" / f"{mask_name}.png", mask[:30] if mismatch else mask)
            write_as(d / "composite_images" / f"{name}.jpg", comp)
            lines.append(f"{name}.jpg")
        (d / f"{subset}_test.txt").write_text("\n".join(lines) + "\n")


def test_harmonize_eval_table_and_json(tmp_path: Path):
    iharmony_tree(tmp_path / "ih")
    js = tmp_path / "res.json"
    res = runner.invoke(
        app,
        ["harmonize-eval", str(tmp_path / "ih"), "--model", "none", "--json", str(js),
         "--protocol", "matdata"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "HCOCO" in res.output and "HFlickr" in res.output and "20.00" in res.output
    data = json.loads(js.read_text())
    psnr = 10 * np.log10(255**2 / 20)
    for sub, n in (("HCOCO", 2), ("HFlickr", 1)):
        m = data["subsets"][sub]
        assert m["images"] == n
        assert m["mse"] == pytest.approx(20.0) and m["fmse"] == pytest.approx(100.0)
        assert m["psnr"] == pytest.approx(psnr)
    assert data["all"]["images"] == 3
    # a harmonizer that moves the foreground towards its surroundings lowers the error
    res = runner.invoke(
        app,
        ["harmonize-eval", str(tmp_path / "ih"), "--model", "reinhard", "--strength", "1",
         "--json", str(js), "--protocol", "matdata"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(js.read_text())["all"]["fmse"] < 1.0


# ------------------------------------------------------------------ one-line CLI errors


def run_cli(*args: str) -> tuple[int, str]:
    """The console entry point in a fresh interpreter: ``(exit code, stderr)``."""
    code = "import sys; from matdata.cli import main; sys.argv = ['matdata', *sys.argv[1:]]; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    return proc.returncode, proc.stderr


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``matdata.cli.main`` in this process (as the console script runs it)."""
    from matdata.cli import main

    monkeypatch.setattr(sys, "argv", ["matdata", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0), capsys.readouterr().err


def assert_one_line(result: tuple[int, str], *needles: str) -> None:
    code, err = result
    assert code == 1, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    text = " ".join(lines)
    assert lines and lines[0].startswith("error:"), err
    for n in needles:
        assert n in text, err


def test_bad_inputs_give_one_error_line(tmp_path: Path, monkeypatch, capsys):
    ds = tmp_path / "ds"
    write_index(str(ds), [], config={}, sources={}, rejects={})
    wrong = tmp_path / "issam256.pth"
    torch.save(deterministic_state_dict(build_network("issam256")), wrong)
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(wrong.read_bytes()[:5000])
    out = str(tmp_path / "out")
    iharmony_tree(tmp_path / "ih", mismatch=True)
    ih = str(tmp_path / "ih")
    cases = [
        (["harmonize", str(ds), "--out", out, "--model", "idih256", "--checkpoint", str(wrong),
          "--device", "cpu"], ("does not fit", "missing", "unexpected")),
        (["harmonize-eval", ih, "--model", "issam256", "--checkpoint", str(truncated),
          "--device", "cpu"], ("truncated or corrupt",)),
        (["harmonize-eval", ih, "--model", "none"], ("size mismatch", "mask is 50x30")),
        (["harmonize", str(ds), "--out", out, "--model", "rainnet"], ("--checkpoint",)),
        (["harmonize", str(ds), "--out", out, "--model", "reinhard"], ("has no shards",)),
    ]  # fmt: skip
    for args, needles in cases:
        assert_one_line(run_main(monkeypatch, capsys, *args), *needles)
    # and once through a fresh interpreter, as a user runs it
    if torch.cuda.is_available():
        args, needles = ["harmonize-eval", ih, "--model", "none"], ("size mismatch",)
    else:
        args = ["harmonize", str(ds), "--out", out, "--model", "reinhard", "--device", "cuda"]
        needles = ("CUDA is not available",)
    assert_one_line(run_cli(*args), *needles)
