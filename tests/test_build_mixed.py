"""A mixed build: fine AISegment + coarse Supervisely foregrounds over Places365 + COCO
backgrounds (all ingested from fixtures in their real layouts), on a real Dask cluster."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from coco_fixture import jpeg, make_coco
from PIL import Image

from matdata.build_config import BuildConfig
from matdata.builder import prepare_build, task_digest
from matdata.errors import ConfigError
from matdata.imageio import decode_alpha
from matdata.ingest import ingest
from matdata.shards import iter_records, read_index
from matdata.sources.base import assign_split
from pipelines.build import run_build

K = 2


def _put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _png(arr: np.ndarray, mode: str) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "PNG")
    return buf.getvalue()


def _groups(n_train: int, n_val: int, prefix: str, **kw) -> list[str]:
    """Group names whose hashed split is train (first n_train) or val (then n_val)."""
    tr, va = [], []
    i = 0
    while len(tr) < n_train or len(va) < n_val:
        g = f"{prefix}{i:04d}"
        (tr if assign_split(g, **kw) == "train" else va).append(g)
        i += 1
    return tr[:n_train] + va[:n_val]


def make_aisegment(root: Path) -> None:
    groups = _groups(2, 1, "18031518", val_fraction=0.3)
    for gi, g in enumerate(groups):
        for n in (1, 2):
            stem = f"{g}-{n:08d}"
            _put(root / "clip_img" / g / "clip_00000000" / f"{stem}.jpg", jpeg(gi * 10 + n))
            a = np.zeros((40, 48), np.uint8)
            a[6:36, 10:38] = 255
            a[5, 10:38] = 128
            rgba = np.dstack([np.full((40, 48, 3), 180, np.uint8), a])
            _put(root / "matting" / g / "matting_00000000" / f"{stem}.png", _png(rgba, "RGBA"))


def make_supervisely(root: Path) -> str:
    ds = _groups(1, 0, "people")[0]  # one dataset folder that lands in train
    poly = {
        "classTitle": "person",
        "geometryType": "polygon",
        "points": {"exterior": [[8, 4], [40, 4], [40, 36], [8, 36]], "interior": []},
    }
    neutral = {
        "classTitle": "neutral",
        "geometryType": "rectangle",
        "points": {"exterior": [[2, 2], [6, 6]]},
    }
    meta = {"classes": [{"title": "person", "shape": "polygon"}], "tags": []}
    _put(root / "meta.json", json.dumps(meta).encode())
    for n in range(3):
        img = np.random.default_rng(50 + n).integers(0, 255, (40, 48, 3), dtype=np.uint8)
        _put(root / ds / "img" / f"p{n}.png", _png(img, "RGB"))
        objs = [poly, neutral] if n == 0 else [poly]
        ann = {"size": {"height": 40, "width": 48}, "tags": [], "objects": objs}
        _put(root / ds / "ann" / f"p{n}.png.json", json.dumps(ann).encode())
    return ds


def make_places(root: Path) -> None:
    for n in range(1, 4):
        _put(root / "data_256" / "a" / "airfield" / f"0000000{n}.jpg", jpeg(70 + n, size=(64, 64)))
    for n in range(1, 3):
        _put(root / "val_256" / f"Places365_val_0000000{n}.jpg", jpeg(80 + n, size=(64, 64)))


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import os

    base = tmp_path_factory.mktemp("mixed")
    old = os.environ.get("MATDATA_CATALOG")
    os.environ["MATDATA_CATALOG"] = str(base / "catalog")
    make_aisegment(base / "AISegment")
    make_supervisely(base / "sly")
    make_places(base / "places")
    make_coco(base / "coco")
    res = {
        "ais": ingest("aisegment", str(base / "AISegment"), name="ais",
                      options={"val_fraction": 0.3}),
        "sly": ingest("supervisely", str(base / "sly"), name="sly"),
        "places": ingest("places365", str(base / "places"), name="places"),
        "coco": ingest("coco", str(base / "coco"), name="coco"),
    }  # fmt: skip
    yield {"base": base, "catalog": str(base / "catalog"), "res": res}
    if old is None:
        os.environ.pop("MATDATA_CATALOG", None)
    else:
        os.environ["MATDATA_CATALOG"] = old


def _cfg(out: Path, fg=("ais", "sly"), **kw) -> BuildConfig:
    base = dict(
        fg=fg,
        bg=("places", "coco"),
        out=str(out),
        per_fg=K,
        size=(48, 48),
        augment=False,
        samples_per_shard=4,
        seed=3,
    )
    base.update(kw)
    return BuildConfig(**base)


@pytest.fixture(scope="module")
def mixed(sources) -> tuple[Path, object]:
    out = sources["base"] / "ds2"
    return out, run_build(_cfg(out), workers=2, progress=False)


def test_ingest_says_when_val_is_empty(sources, monkeypatch) -> None:
    monkeypatch.setenv("MATDATA_CATALOG", sources["catalog"])
    sly = sources["res"]["sly"]
    assert sly.by_split == {"train": 3}
    assert any("no val items" in w and "val_fraction" in w for w in sly.warnings)
    assert sources["res"]["coco"].filtered_by_reason == {"category person": 4}


def test_mixed_build_accounting_provenance_and_coarse(sources, mixed, monkeypatch) -> None:
    monkeypatch.setenv("MATDATA_CATALOG", sources["catalog"])
    out, summary = mixed
    res = sources["res"]
    index = read_index(str(out))
    acct = index["rejects"]["by_source"]
    assert set(acct) == {"ais", "sly", "places", "coco"}
    for name, a in acct.items():
        assert a["used"] + a["rejected"] == a["found"], name
        assert a["found"] == res[name].found, name
    assert acct["coco"]["ingest_rejected"] == 4 and acct["coco"]["used"] == 4
    assert [s["name"] for s in index["sources"]["fg"]] == ["ais", "sly"]
    assert [s["name"] for s in index["sources"]["bg"]] == ["coco", "places"]
    assert index["config"]["fg"] == ["ais", "sly"]
    by = index["samples_by_source"]
    assert sum(by["fg"]["ais"].values()) == 6 * K and by["fg"]["sly"] == {"train": 3 * K}
    bg_total = sum(n for d in by["bg"].values() for n in d.values())
    assert bg_total == index["samples"] == summary.samples == 9 * K
    # the coarse sample's neutral region is its ignore mask; fine samples get a zero one
    seen = {"ais": 0, "sly": 0}
    bg_sources = set()
    for rec in iter_records(str(out)):
        m = rec.meta
        seen[m["fg"]["source"]] += 1
        bg_sources.add(m["bg"]["source"])
        assert rec.ignore is not None  # same fields in every record of the build
        ign = decode_alpha(rec.ignore, rec.key)
        if m["fg"]["source"] == "sly":
            assert m["coarse"] is True and m["fg"]["coarse"] is True
            assert (ign.max() == 255) == (m["fg"]["id"].endswith("p0"))
        else:
            assert m["coarse"] is False and ign.max() == 0
        if m["bg"]["source"] == "coco":
            assert "person" not in m["bg"].get("tags", [])
            assert m["bg"]["id"] in {
                "train2017-000000000004",
                "train2017-000000000005",
                "train2017-000000000006",
                "val2017-000000000011",
            }
    assert seen == {"ais": 6 * K, "sly": 3 * K} and bg_sources == {"places", "coco"}
    # the val foregrounds drew from the val backgrounds of both sources only
    for rec in iter_records(str(out), "val"):
        assert rec.meta["bg"]["split"] == "val" and rec.meta["bg"]["pool"] == "split"


def test_mixed_build_deterministic_and_sources_independent(sources, mixed, monkeypatch) -> None:
    monkeypatch.setenv("MATDATA_CATALOG", sources["catalog"])
    out2, _ = mixed
    out1 = sources["base"] / "ds1"
    run_build(_cfg(out1), workers=1, progress=False)
    assert (out1 / "dataset.json").read_bytes() == (out2 / "dataset.json").read_bytes()
    # resume: a lost shard is rebuilt, the others are kept, the bytes are the same
    before = (out1 / "dataset.json").read_bytes()
    lost = sorted((out1 / "parquet").glob("train-*.parquet"))[1]
    lost.unlink()
    again = run_build(_cfg(out1), workers=1, progress=False)
    assert again.written == 1 and again.skipped == len(read_index(str(out1))["shards"]) - 1
    assert (out1 / "dataset.json").read_bytes() == before and lost.exists()
    # adding a foreground source leaves the other source's samples byte-identical
    only = sources["base"] / "ais-only"
    run_build(_cfg(only, fg=("ais",)), workers=1, progress=False)
    mixed_recs = {r.key: r for r in iter_records(str(out2))}
    alone = list(iter_records(str(only)))
    assert len(alone) == 6 * K
    for rec in alone:
        other = mixed_recs[rec.key]
        assert other.image == rec.image and other.alpha == rec.alpha
        assert other.meta["seed"] == rec.meta["seed"]
    # --fg order does not matter either
    a = prepare_build(_cfg(sources["base"] / "x", fg=("sly", "ais")))
    b = prepare_build(_cfg(sources["base"] / "x"))
    assert a.plan_sha256 == b.plan_sha256
    # the plan hashes shards from its arrays; a materialised task hashes to the same
    assert all(task_digest(t) == t.digest for t in a.tasks)


def _bg_sources(plan) -> set[str]:
    return {t.bg_names[p[1]] for t in plan.tasks for p in t.pairs}


def test_bg_weights_and_errors(sources, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MATDATA_CATALOG", sources["catalog"])
    only_places = prepare_build(_cfg(tmp_path / "w", bg_weights="places=1,coco=0"))
    assert _bg_sources(only_places) == {"places"}
    only_coco = prepare_build(_cfg(tmp_path / "w", bg_weights={"places": 0, "coco": 2}))
    assert _bg_sources(only_coco) == {"coco"}
    assert only_coco.config.to_dict()["bg_weights"] == {"coco": 2.0, "places": 0.0}
    with pytest.raises(ConfigError, match="not a --bg source"):
        prepare_build(_cfg(tmp_path / "w", bg_weights="places=1,coco=1,nope=2"))
    with pytest.raises(ConfigError, match="no weight for coco"):
        prepare_build(_cfg(tmp_path / "w", bg_weights="places=1"))
    with pytest.raises(ConfigError, match="bad --bg-weights"):
        _cfg(tmp_path / "w", bg_weights="places")
    with pytest.raises(ConfigError, match="given twice"):
        prepare_build(_cfg(tmp_path / "w", fg=("ais", "ais")))
    # the same items under a second name: keys would collide
    from matdata.catalog import lookup, register

    register("ais2", lookup("ais"))
    with pytest.raises(ConfigError, match="sample keys would collide"):
        prepare_build(_cfg(tmp_path / "w", fg=("ais", "ais2")))
    # --bg-category works on COCO's categories (and keeps no Places scene here)
    cars = prepare_build(_cfg(tmp_path / "w", bg_categories=("car",)))
    assert _bg_sources(cars) == {"coco"}
    ids = {t.bg_items[p[1]].id for t in cars.tasks for p in t.pairs}
    assert ids <= {"train2017-000000000004", "train2017-000000000006", "val2017-000000000011"}
    # ... and on Places' scene categories across both sources (COCO has no category column
    # values, Places no tags: the all-null columns must not break the match)
    airfield = prepare_build(_cfg(tmp_path / "w", bg_categories=("/a/airfield",)))
    assert _bg_sources(airfield) == {"places"}
    both = prepare_build(_cfg(tmp_path / "w", bg_categories=("/a/airfield", "car")))
    assert _bg_sources(both) == {"places", "coco"}
    # a foreground source without val is named, with the option that fixes it
    assert any("--fg sly: no val foregrounds" in w and "val_fraction" in w
               for w in cars.warnings)  # fmt: skip


def test_inspect_breaks_down_by_source(mixed) -> None:
    import subprocess
    import sys

    out, _ = mixed
    r = subprocess.run(
        [sys.executable, "-c", "from matdata.cli import main; main()", "inspect", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "COLUMNS": "200"},
    )
    assert r.returncode == 0, r.stderr
    rows = {ln.split("│")[1].strip(): ln for ln in r.stdout.splitlines() if ln.count("│") > 3}
    assert {"ais", "sly", "places", "coco"} <= set(rows)
    sly = [c.strip() for c in rows["sly"].split("│")[1:-1]]
    assert sly[:2] == ["sly", "fg"] and sly[-2:] == [str(3 * K), "0"]  # train, val samples


def test_cli_mixed_build(sources, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "MATDATA_CATALOG": sources["catalog"], "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", "from matdata.cli import main; main()", *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )

    out = tmp_path / "cli"
    common = ["--fg", "ais", "--fg", "sly", "--bg", "places", "--bg", "coco", "--out", str(out)]
    r = cli("build", *common, "--bg-weights", "places=1,coco", "--per-fg", "1")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "bad --bg-weights" in r.stderr
    r = cli("build", *common, "--bg-weights", "places=1,coco=1", "--per-fg", "1",
            "--size", "32", "-w", "1", "--no-progress")  # fmt: skip
    assert r.returncode == 0, r.stderr
    for name in ("ais", "sly", "places", "coco"):
        assert f"│ {name} " in r.stdout
    assert "--fg sly: no val foregrounds" in " ".join(r.stderr.split())
    index = read_index(str(out))
    assert index["config"]["bg_weights"] == {"coco": 1.0, "places": 1.0}
    assert index["samples"] == 9
