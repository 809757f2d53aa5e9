"""`matdata build` end to end on the demo source: real Dask LocalCluster, real readers."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_cli

from matdata.build_config import BuildConfig
from matdata.builder import (
    generate_records,
    prepare_build,
    run_shard,
    shard_samples,
)
from matdata.catalog import resolve_source
from matdata.errors import ConfigError
from matdata.imageio import decode_alpha, decode_image
from matdata.options import parse_bytes, parse_size
from matdata.rejects import RejectRateError, read_rejects
from matdata.schema import Record, decode_record
from matdata.shards import (
    iter_records,
    iter_shard,
    list_shards,
    list_temporaries,
    read_index,
    verify,
)
from pipelines.build import run_build

FG_OPTS = {"n_fg": 10, "size": "48x64", "val_fraction": 0.5}
BG_OPTS = {"n_bg": 6, "val_fraction": 0.5}
K = 3


def _cfg(out: Path, **kw) -> BuildConfig:
    base = dict(
        fg="demo",
        bg="demo",
        out=str(out),
        per_fg=K,
        size=(64, 64),
        trimap=True,
        keep_layers=True,
        formats=("parquet", "webdataset"),
        samples_per_shard=7,
        fg_options=FG_OPTS,
        bg_options=BG_OPTS,
        seed=7,
    )
    base.update(kw)
    return BuildConfig(**base)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("build2") / "ds"
    summary = run_build(_cfg(out), workers=2, progress=False)
    return out, summary


def _expected_splits() -> dict[str, int]:
    items = resolve_source("demo", "fg", FG_OPTS).items
    out: dict[str, int] = {}
    for it in items:
        out[it.split] = out.get(it.split, 0) + K
    return out


def test_index_counts_provenance_and_rejects(built) -> None:
    out, summary = built
    index = read_index(str(out))
    expected = _expected_splits()
    assert set(expected) == {"train", "val"}
    assert {s: d["samples"] for s, d in index["splits"].items()} == expected
    assert summary.samples == sum(expected.values()) == 30
    assert verify(str(out)) == [] and list_temporaries(str(out)) == []
    assert index["config"]["per_fg"] == K and index["config"]["seed"] == 7
    (fg_info,), (bg_info,) = index["sources"]["fg"], index["sources"]["bg"]
    assert fg_info["manifest_sha256"] and bg_info["kind"] == "demo"
    # 10 fg + 6 bg inputs of the demo source, none rejected
    acct = index["rejects"]["by_source"]["demo"]
    assert acct["found"] == 16 and acct["used"] + acct["rejected"] == acct["found"]
    assert read_rejects(str(out / "rejects.parquet")) == []
    # shards of whole foregrounds (K=3 pairs each) of at most 7 samples, in both formats
    pq_shards = list_shards(str(out), "train", "parquet")
    assert [s.samples for s in pq_shards] == [6, 6, 6, 6]
    fg_shard: dict[str, set[str]] = {}
    for shard in pq_shards:
        for rec in iter_shard(str(out), shard):
            fg_shard.setdefault(rec.meta["fg"]["id"], set()).add(shard.path)
    assert len(fg_shard) == 8 and all(len(v) == 1 for v in fg_shard.values())
    assert len(list_shards(str(out), fmt="webdataset")) == len(list_shards(str(out)))

    recs = list(iter_records(str(out), "val"))
    bg_items = {it.id: it for it in resolve_source("demo", "bg", BG_OPTS).items}
    for rec in recs:
        m = rec.meta
        assert m["split"] == "val" and m["fg"]["source"] == "demo"
        assert m["fg"]["id"].startswith("demo-fg-") and m["bg"]["id"] in bg_items
        bg = bg_items[m["bg"]["id"]]
        assert m["bg"]["category"] == bg.category
        # backgrounds come from the foreground's split when the bg source has that split
        assert bg.split == "val" and m["bg"]["pool"] == "split"
        assert isinstance(m["seed"], int) and m["compose"]["size"] == [64, 64]
        assert "fg_scale" in m["params"] and m["params"]["trimap"]["radius"] >= 1
        d = decode_record(rec)
        assert d.image.shape == (64, 64, 3) and d.alpha.shape == (64, 64)
        assert set(np.unique(d.trimap)) <= {0, 128, 255}
        assert d.fg.shape == d.bg.shape == (64, 64, 3)
    keys = [r.key for r in iter_records(str(out))]
    assert len(keys) == len(set(keys)) == 30


def test_real_readers(built, tmp_path: Path) -> None:
    import duckdb
    import webdataset as wds
    from datasets import load_dataset

    out, _ = built
    tars = sorted(str(p) for p in (out / "webdataset").glob("train-*.tar"))
    samples = list(wds.WebDataset(tars, shardshuffle=False))
    assert len(samples) == 24
    s = samples[0]
    assert {"jpg", "alpha.png", "fg.jpg", "bg.jpg", "trimap.png", "json"} <= set(s)
    assert decode_image(s["jpg"], "x").shape == (64, 64, 3)
    assert json.loads(s["json"])["split"] == "train"

    hf_pq = load_dataset(
        "parquet",
        data_files={"train": str(out / "parquet" / "train-*.parquet")},
        split="train",
        cache_dir=str(tmp_path / "hf"),
    )
    assert len(hf_pq) == 24 and hf_pq[0]["alpha"].size == (64, 64)
    hf_wds = load_dataset(
        "webdataset",
        data_files={"val": str(out / "webdataset" / "val-*.tar")},
        split="val",
        streaming=True,
    )
    rows = list(hf_wds)
    assert len(rows) == 6 and np.asarray(rows[0]["trimap.png"]).shape == (64, 64)

    glob = str(out / "parquet" / "*.parquet")
    n, n_val = duckdb.sql(
        f"select count(*), count(*) filter (where json_extract_string(meta, '$.split') = 'val')"
        f" from '{glob}'"
    ).fetchall()[0]
    assert (n, n_val) == (30, 6)


def test_deterministic_across_worker_counts(built, tmp_path: Path) -> None:
    out2, _ = built
    out1 = tmp_path / "ds1"
    run_build(_cfg(out1), workers=1, progress=False)
    a = read_index(str(out1))
    b = read_index(str(out2))
    assert [(s["path"], s["sha256"]) for s in a["shards"]] == [
        (s["path"], s["sha256"]) for s in b["shards"]
    ]
    assert (out1 / "dataset.json").read_bytes() == (out2 / "dataset.json").read_bytes()
    # a different seed changes the samples
    other = prepare_build(_cfg(tmp_path / "x", seed=8))
    assert other.plan_sha256 != prepare_build(_cfg(tmp_path / "y")).plan_sha256


def test_exact_alpha_without_augment_native(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path / "nat",
        size=None,
        augment=False,
        per_fg=2,
        trimap=False,
        keep_layers=False,
        formats=("webdataset",),
        samples_per_shard=None,
        fg_options={"n_fg": 4, "size": "48x64"},
    )
    plan = prepare_build(cfg)
    assert len(plan.tasks) == 1  # 256MB shards
    res = run_shard(plan.tasks[0])  # the Dask task body, in-process
    assert res.samples == 8 and not res.rejects
    src = resolve_source("demo", "fg", {"n_fg": 4, "size": "48x64"})
    by_id = {it.id: it for it in src.items}
    demo = src.source()
    for rec in iter_records_of(tmp_path / "nat", res):
        want = demo.load_foreground(by_id[rec.meta["fg"]["id"]]).alpha
        got = decode_alpha(rec.alpha, rec.key)
        assert got.dtype == np.uint8 and np.array_equal(got, want)
        assert rec.meta["params"]["flip"] is False and rec.meta["compose"]["augment"] is False


def iter_records_of(root: Path, res) -> list[Record]:
    from matdata.shards import iter_shard

    return [r for s in res.shards for r in iter_shard(str(root), s)]


def test_planning_filters_replacement_and_accounting(tmp_path: Path) -> None:
    # --bg-io outdoor keeps 2 of the 6 demo backgrounds (outdoor, texture); K=3 > 2
    cfg = _cfg(tmp_path / "f", bg_io="outdoor", per_fg=3, samples_per_shard=100)
    plan = prepare_build(cfg)
    filtered = [r for r in plan.rejects if r.reason == "filtered"]
    assert len(filtered) == 4 and all("outdoor" in r.detail for r in filtered)
    assert plan.with_replacement == 10 and any("replacement" in w for w in plan.warnings)
    a = plan.accounting["demo"]
    assert a["found"] == 16 and a["filtered"] == 4
    bg_ids = {t.bg_items[p[1]].id for t in plan.tasks for p in t.pairs}
    assert bg_ids <= {"demo-bg-0002", "demo-bg-0003"}
    # without replacement the K backgrounds of one foreground are distinct
    bg12 = {"n_bg": 12, "val_fraction": 0.5}
    pools = {}
    for it in resolve_source("demo", "bg", bg12).items:
        pools[it.split] = pools.get(it.split, 0) + 1
    assert min(pools["train"], pools["val"]) >= 3
    plan2 = prepare_build(_cfg(tmp_path / "g", bg_options=bg12, per_fg=3))
    assert plan2.with_replacement == 0 and plan2.warnings == []
    per_fg: dict[int, list[int]] = {}
    for t in plan2.tasks:
        for p in t.pairs:
            per_fg.setdefault(p[0], []).append(p[1])
    assert all(len(v) == len(set(v)) == 3 for v in per_fg.values())
    # category filter, Places-style prefixes
    plan3 = prepare_build(_cfg(tmp_path / "h", bg_categories=("demo/indoor",)))
    assert {t.bg_items[p[1]].category for t in plan3.tasks for p in t.pairs} == {"demo/indoor"}


def test_build_stage_reject_is_recorded(tmp_path: Path) -> None:
    plan = prepare_build(_cfg(tmp_path / "r", formats=("parquet",)))
    task = plan.tasks[0]
    fi = task.pairs[0][0]
    task.fg_items[fi] = replace(task.fg_items[fi], id="demo-fg-broken")
    out = list(generate_records(task))
    rejects = [x for x in out if not isinstance(x, Record)]
    assert len(rejects) == 1 and rejects[0].stage == "build" and rejects[0].reason == "source"
    n_pairs_of_broken = sum(1 for p in task.pairs if p[0] == fi)
    assert len(out) - 1 == task.samples - n_pairs_of_broken


def test_option_parsing() -> None:
    assert parse_size("512") == (512, 512)
    assert parse_size("640x480") == (640, 480)
    assert parse_size("native") is None
    with pytest.raises(ConfigError, match="--size"):
        parse_size("big")
    assert parse_bytes("256MB") == 256_000_000 and parse_bytes("1GiB") == 1024**3
    with pytest.raises(ConfigError, match="shard-size"):
        parse_bytes("lots")
    # small splits still get several shards; big ones follow --shard-size
    assert shard_samples(200, 10**6) == 25 and shard_samples(8, 10**6) == 16
    assert shard_samples(10**6, 500) == 500


def _cli(*args: str) -> subprocess.CompletedProcess:
    return run_cli(list(args), timeout=120)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    r = _cli("build", "--fg", "demo", "--bg", "demo", "--out", str(tmp_path / "o"), "--size", "x1")
    assert r.returncode == 1 and "bad --size 'x1'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = _cli("build", "--fg", "nosuch", "--bg", "demo", "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "unknown source 'nosuch'" in r.stderr


def test_cli_refuses_a_different_build(built) -> None:
    out, _ = built
    before = (out / "dataset.json").read_bytes()
    r = _cli("build", "--fg", "demo", "--bg", "demo", "--out", str(out), "--per-fg", "1")
    assert r.returncode == 1 and "holds a different build" in r.stderr and "--overwrite" in r.stderr
    assert (out / "dataset.json").read_bytes() == before


def _jpeg(seed: int, w: int, h: int) -> bytes:
    from matdata.imageio import encode_jpeg

    rng = np.random.default_rng(seed)
    return encode_jpeg(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), 90)


def _put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_build_from_ingested_aisegment_and_places365(tmp_path: Path) -> None:
    """Ingest rejects + a build-stage failure + filtered inputs: used + rejected == found."""
    from PIL import Image

    from matdata.ingest import ingest

    ais, pl = tmp_path / "AISegment", tmp_path / "places"
    g = "1803151818"
    for n in range(1, 5):
        _put(ais / "clip_img" / g / "clip_00000000" / f"{g}-{n:08d}.jpg", _jpeg(n, 48, 64))
        a = np.zeros((64, 48), np.uint8)
        a[10:60, 8:40] = 255
        a[9, 8:40] = 128
        rgba = np.dstack([np.full((64, 48, 3), 200, np.uint8), a])
        p = ais / "matting" / g / "matting_00000000" / f"{g}-{n:08d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgba, "RGBA").save(p)
    _put(ais / "clip_img" / g / "clip_00000000" / f"{g}-00000009.jpg", _jpeg(9, 48, 64))
    _put(pl / "categories_places365.txt", b"/a/airfield 0\n/b/bedroom 1\n")
    _put(pl / "IO_places365.txt", b"/a/airfield 2\n/b/bedroom 1\n")
    for n in range(1, 4):
        _put(pl / "data_256" / "a" / "airfield" / f"0000000{n}.jpg", _jpeg(10 + n, 80, 80))
        _put(pl / "data_256" / "b" / "bedroom" / f"0000000{n}.jpg", _jpeg(20 + n, 80, 80))
    _put(pl / "data_256" / "b" / "bedroom" / "00000009.jpg", _jpeg(30, 80, 80)[:200])
    fg_res = ingest("aisegment", str(ais))
    bg_res = ingest("places365", str(pl))
    assert fg_res.rejected >= 1 and bg_res.rejected >= 1
    # an input that disappears after ingest fails at build time
    (ais / "clip_img" / g / "clip_00000000" / f"{g}-00000004.jpg").unlink()

    out = tmp_path / "ds"
    cfg = BuildConfig(
        fg="aisegment", bg="places365", out=str(out), per_fg=2, size=(64, 64), bg_io="outdoor"
    )
    # 1 of 5 portraits failing at build time is beyond the default --max-reject-rate:
    # the build fails (rejects recorded, no dataset.json) and stays resumable
    with pytest.raises(RejectRateError, match="aisegment: 1 of 5") as err:
        run_build(cfg, workers=1, progress=False)
    assert err.value.by_reason == {"unreadable": 1}
    assert (out / "rejects.parquet").exists() and not (out / "dataset.json").exists()
    s = run_build(cfg, workers=1, progress=False, max_reject_rate=0.25)
    assert s.skipped == len(list((out / ".parts").glob("*-*.json"))) and s.written == 0
    assert s.samples == 3 * 2  # 4 usable portraits, one lost at build time
    index = read_index(str(out))
    acct = index["rejects"]["by_source"]
    assert acct["aisegment"]["found"] == fg_res.found
    assert acct["aisegment"]["build_failed"] == 1
    assert acct["places365"]["filtered"] == 3  # the bedrooms are indoor
    for a in acct.values():
        assert a["used"] + a["rejected"] == a["found"]
    rej = read_rejects(str(out / "rejects.parquet"))
    assert len(rej) == index["rejects"]["total"] == sum(a["rejected"] for a in acct.values())
    assert {r.stage for r in rej} == {"ingest", "build"}
    assert index["sources"]["fg"][0]["manifest"].endswith(".parquet")
    for rec in iter_records(str(out)):
        assert rec.meta["bg"]["category"] == "airfield" and rec.meta["fg"]["source"] == "aisegment"
