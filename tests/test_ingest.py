"""`matdata ingest`, the source catalog and resolve_source (local paths, memory:// URLs, CLI)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from matdata import catalog
from matdata.catalog import resolve_source
from matdata.cli import app
from matdata.errors import ConfigError, SourceError
from matdata.ingest import ingest
from matdata.rejects import read_rejects
from matdata.sources.base import items_hash, read_manifest

W, H = 32, 24


def enc(arr: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, fmt)
    return buf.getvalue()


def rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)


def alpha(seed: int) -> np.ndarray:
    return np.random.default_rng(50 + seed).integers(1, 256, (H, W), dtype=np.uint8)


def put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def pairs_tree(root: Path, n: int = 5) -> Path:
    for i in range(n):
        put(root / "images" / f"p{i:03d}.jpg", enc(rgb(i), "JPEG"))
        put(root / "alphas" / f"p{i:03d}.png", enc(alpha(i)))
    put(root / "images" / "lonely.jpg", enc(rgb(99), "JPEG"))  # missing_matte
    put(root / "images" / "bad.jpg", b"")  # zero_size
    put(root / "alphas" / "bad.png", enc(alpha(98)))
    return root


def bg_tree(root: Path, n: int = 4) -> Path:
    for i in range(n):
        put(root / f"bg{i}.jpg", enc(rgb(200 + i), "JPEG"))
    put(root / "notes.md", b"# backgrounds")  # unexpected_file
    return root


# --------------------------------------------------------------------------- ingest


def test_ingest_writes_manifest_rejects_and_registers(tmp_path: Path) -> None:
    root = pairs_tree(tmp_path / "data")
    seen: list[tuple[int, int | None]] = []
    res = ingest("folder", str(root), name="mine", progress=lambda d, t: seen.append((d, t)))
    assert (res.found, res.usable, res.rejected) == (7, 5, 2)
    assert res.by_reason == {"missing_matte": 1, "zero_size": 1}
    assert sum(res.by_split.values()) == 5 and res.by_role == {"fg": 5}
    assert seen[-1] == (7, 7)  # progress reached the total

    cat = os.environ["MATDATA_CATALOG"]
    assert res.manifest == os.path.join(cat, "mine.manifest.parquet")
    items, meta = read_manifest(res.manifest)
    assert len(items) == 5 and meta["kind"] == "folder" and meta["root"] == str(root)
    assert pq.read_table(res.manifest).num_rows == 5
    assert items_hash(items) == res.manifest_sha256
    rejects = read_rejects(res.rejects_path)
    assert Counter(r.reason for r in rejects) == {"missing_matte": 1, "zero_size": 1}

    entry = json.loads(Path(cat, "catalog.json").read_text())["mine"]
    assert entry["kind"] == "folder" and entry["root"] == str(root)
    assert entry["manifest"] == res.manifest and entry["rejects"] == res.rejects_path
    assert entry["counts"]["usable"] == 5 and entry["counts"]["by_reason"]["zero_size"] == 1

    # Re-ingest of unchanged data gives the same manifest content.
    again = ingest("folder", str(root), name="mine")
    assert again.manifest_sha256 == res.manifest_sha256


def test_out_dir_and_default_catalog_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = pairs_tree(tmp_path / "data")
    res = ingest("folder", str(root), out=str(tmp_path / "out"))
    assert res.name == "folder" and Path(res.manifest).parent == tmp_path / "out"
    assert catalog.lookup("folder")["manifest"] == res.manifest  # registered either way

    monkeypatch.delenv("MATDATA_CATALOG")
    monkeypatch.chdir(tmp_path)
    assert catalog.catalog_dir() == str(tmp_path / ".matdata")
    res = ingest("folder", str(root), name="local")
    assert Path(res.manifest).parent == tmp_path / ".matdata"
    assert (tmp_path / ".matdata" / "catalog.json").exists()


def test_missing_root_and_bad_name(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        ingest("aisegment", str(tmp_path / "nope"))
    with pytest.raises(SourceError, match="unknown source kind"):
        ingest("nosuchkind", str(tmp_path))
    with pytest.raises(Exception, match="may only use"):
        ingest("folder", str(tmp_path), name="a/b")
    assert not list(Path(os.environ["MATDATA_CATALOG"]).glob("*.parquet"))


def _cwd_with_an_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A current directory holding one usable background, for ROOT "" to find if scanned."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    Image.new("RGB", (32, 24), (90, 120, 150)).save(cwd / "scene.jpg")
    monkeypatch.chdir(cwd)
    return cwd


@pytest.mark.parametrize("root", ["", "  "])
def test_empty_root_is_refused_not_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, root: str
) -> None:
    _cwd_with_an_image(tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match=r"^ingest folder needs a ROOT path$"):
        ingest("folder", root, options={"role": "bg"})
    assert not list(Path(os.environ["MATDATA_CATALOG"]).glob("*"))  # nothing written
    assert ingest("folder", ".", options={"role": "bg"}).usable == 1  # "." is a ROOT


def test_cli_empty_root_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = _cwd_with_an_image(tmp_path, monkeypatch)
    proc = subprocess.run(
        [sys.executable, "-c", "from matdata.cli import main; main()", "ingest", "folder"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        cwd=cwd,
        timeout=120,
    )
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == ["error: ingest folder needs a ROOT path"], proc.stderr
    assert not list(Path(os.environ["MATDATA_CATALOG"]).glob("*"))


# -------------------------------------------------------------------------- resolve


def test_resolve_catalog_name_manifest_and_kind_path(tmp_path: Path) -> None:
    fg_root = pairs_tree(tmp_path / "fg")
    bg_root = bg_tree(tmp_path / "bgs")
    res = ingest("folder", str(fg_root), name="people")
    ingest("folder", str(bg_root), name="scenes", options={"role": "bg"})

    people = resolve_source("people", "fg")
    assert people.kind == "folder" and people.root == str(fg_root)
    assert len(people.items) == 5 and people.manifest == res.manifest
    assert people.manifest_sha256 == res.manifest_sha256
    assert Counter(r.reason for r in people.rejects) == {"missing_matte": 1, "zero_size": 1}
    fg = people.source().load_foreground(people.items[0])
    np.testing.assert_array_equal(fg.alpha, alpha(0))

    scenes = resolve_source("scenes", "bg")
    assert len(scenes.items) == 4 and {i.role for i in scenes.items} == {"bg"}
    assert scenes.source().load_background(scenes.items[0]).shape == (H, W, 3)
    with pytest.raises(SourceError, match="no fg items"):
        resolve_source("scenes", "fg")

    by_path = resolve_source(res.manifest, "fg")
    assert by_path.manifest_sha256 == people.manifest_sha256 and len(by_path.rejects) == 2

    fly = resolve_source(f"folder:{bg_root}", "bg")
    assert fly.manifest is None and len(fly.items) == 4 and len(fly.rejects) == 1
    assert fly.manifest_sha256 == scenes.manifest_sha256  # same items either way


def test_resolve_demo_and_unknown_names() -> None:
    fg = resolve_source("demo", "fg")
    bg = resolve_source("demo", "bg")
    assert fg.items and bg.items and fg.manifest is None
    assert {i.role for i in fg.items} == {"fg"} and {i.role for i in bg.items} == {"bg"}
    with pytest.raises(SourceError) as ei:
        resolve_source("aisegment", "fg")
    assert "matdata ingest" in ei.value.one_line()
    with pytest.raises(SourceError):
        resolve_source("/no/such/manifest.parquet", "fg")


# -------------------------------------------------------------------- fsspec URLs


def test_ingest_from_a_memory_url(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    base = "/aiseg-mem"
    g = "1803151818"
    for n in range(3):
        stem = f"{g}-{n:08d}"
        fs.pipe(f"{base}/clip_img/{g}/clip_00000000/{stem}.jpg", enc(rgb(n), "JPEG"))
        rgba = np.dstack([rgb(n), alpha(n)])
        fs.pipe(f"{base}/matting/{g}/matting_00000000/{stem}.png", enc(rgba, mode="RGBA"))
    fs.pipe(f"{base}/clip_img/{g}/clip_00000000/._{g}-00000000.jpg", b"\x00\x05")
    fs.pipe(f"{base}/clip_img/{g}/clip_00000000/{g}-00000009.jpg", enc(rgb(9), "JPEG"))

    res = ingest("aisegment", f"memory://{base}", name="memseg", out="memory://catalog-out")
    assert (res.usable, res.by_reason) == (3, {"macos_resource_fork": 1, "missing_matte": 1})
    assert res.manifest.startswith("memory://")
    src = resolve_source("memseg", "fg")
    assert all(it.image.startswith("memory://") for it in src.items)
    fg = src.source().load_foreground(src.items[1])
    np.testing.assert_array_equal(fg.alpha, alpha(1))
    fs.rm(base, recursive=True)
    fs.rm("/catalog-out", recursive=True)


# ------------------------------------------------------------------------------ CLI


def test_cli_ingest_prints_the_summary(tmp_path: Path) -> None:
    root = pairs_tree(tmp_path / "data")
    result = CliRunner().invoke(app, ["ingest", "folder", str(root), "--name", "cli-set"])
    assert result.exit_code == 0, result.output
    text = result.output
    for word in ("found", "usable", "rejected", "missing_matte", "zero_size", "cli-set"):
        assert word in text
    assert catalog.lookup("cli-set")["counts"]["found"] == 7

    bgs = bg_tree(tmp_path / "bgs")
    result = CliRunner().invoke(
        app, ["ingest", "folder", str(bgs), "-o", "role=bg", "-o", "val_fraction=0.5"]
    )
    assert result.exit_code == 0, result.output
    entry = catalog.lookup("folder")
    assert entry["options"] == {"role": "bg", "val_fraction": 0.5}
    assert entry["counts"]["by_role"] == {"bg": 4}


def test_cli_missing_root_is_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from matdata.cli import main; main()",
            "ingest",
            "aisegment",
            str(missing),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "error:" in lines[0] and "does not exist" in lines[0] and str(missing) in lines[0]
    assert "Traceback" not in proc.stderr


def test_cli_places_filter_reports_filtered_and_bad_catalog(tmp_path: Path) -> None:
    root = tmp_path / "places"
    put(root / "IO_places365.txt", b"/b/beach 2\n/b/bedroom 1\n")
    put(root / "data_256" / "b" / "beach" / "00000001.jpg", enc(rgb(1), "JPEG"))
    put(root / "data_256" / "b" / "bedroom" / "00000001.jpg", enc(rgb(2), "JPEG"))
    put(root / "data_256" / "b" / "bedroom" / "00000002.jpg", enc(rgb(3), "JPEG"))
    result = CliRunner().invoke(
        app, ["ingest", "places365", str(root), "--name", "outdoor", "-o", "io=outdoor"]
    )
    assert result.exit_code == 0, result.output
    assert "filtered out" in result.output
    entry = catalog.lookup("outdoor")
    assert entry["counts"]["usable"] == 1 and entry["counts"]["filtered"] == 2
    bg = resolve_source("outdoor", "bg")
    assert [i.category for i in bg.items] == ["beach"] and bg.items[0].io == 2

    Path(os.environ["MATDATA_CATALOG"], "catalog.json").write_text("{broken")
    with pytest.raises(SourceError, match="unreadable"):
        resolve_source("outdoor", "bg")


def test_concurrent_registrations_lose_nothing(tmp_path: Path) -> None:
    """Ingests running at the same time each add their entry (the update is locked)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from matdata import catalog\n"
        "for i in range(20):\n"
        "    catalog.register(f'{sys.argv[1]}-{i}', {'kind': 'folder', 'n': i})\n"
    )
    env = dict(os.environ, MATDATA_CATALOG=str(tmp_path / "cat"))
    procs = [subprocess.Popen([sys.executable, "-c", code, f"p{p}"], env=env) for p in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    names = json.loads((tmp_path / "cat" / "catalog.json").read_text())
    assert set(names) == {f"p{p}-{i}" for p in range(4) for i in range(20)}
