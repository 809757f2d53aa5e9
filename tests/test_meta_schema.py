"""One fixed meta schema: every record of a build has the same meta key set, Parquet and
WebDataset carry the same meta, and Hugging Face's WebDataset loader returns every key in
every row (streaming and not)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matdata.build_config import BuildConfig
from matdata.errors import DatasetError
from matdata.hf import webdataset_features
from matdata.schema import (
    DOMAIN_GAP_OPS,
    SCHEMA_VERSION,
    Record,
    conform_meta,
    dump_meta,
    meta_paths,
)
from matdata.shards import ShardWriter, iter_records, read_index
from pipelines.build import run_build

GAP = {"bg_blur": 0.3, "noise": 0.3, "jpeg_match": 0.2, "color_jitter": 0.3}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("meta") / "ds"
    cfg = BuildConfig(
        fg="demo",
        bg="demo",
        out=str(out),
        per_fg=3,
        size=(32, 32),
        formats=("parquet", "webdataset"),
        samples_per_shard=12,
        fg_options={"n_fg": 8, "size": "32x40", "val_fraction": 0.0},
        bg_options={"n_bg": 4, "val_fraction": 0.0},
        seed=5,  # jpeg_match is not drawn in the first five records (HF reads those)
        **GAP,
    )
    run_build(cfg, workers=1, progress=False)
    return out


def _null_at(meta: dict, path: str) -> bool:
    """True when ``path`` or one of its ancestors holds null in ``meta``."""
    cur = meta
    for part in path.split("."):
        if cur is None:
            return True
        if part not in cur:
            return False
        cur = cur[part]
    return cur is None


def _missing(meta: dict, union: set[str]) -> list[str]:
    """Paths of ``union`` that ``meta`` lacks without a null standing for them."""
    have = meta_paths(meta)
    return sorted(p for p in union - have if not _null_at(meta, p))


def _records(out: Path, fmt: str) -> list[Record]:
    return list(iter_records(str(out), "train", fmt))


def _tars(out: Path) -> list[str]:
    return sorted(str(p) for p in (out / "webdataset").glob("train-*.tar"))


def test_every_record_has_the_same_keys_in_both_formats(built):
    pq, wd = _records(built, "parquet"), _records(built, "webdataset")
    assert len(pq) == len(wd) == 24
    union = set().union(*(meta_paths(r.meta) for r in pq))
    for a, b in zip(pq, wd, strict=True):
        assert a.key == b.key and dump_meta(a.meta) == dump_meta(b.meta)  # identical meta
        assert _missing(a.meta, union) == [], a.key  # every key, null where not applied
        assert set(a.meta["params"]["domain_gap"]) == set(DOMAIN_GAP_OPS)
        assert a.meta["schema_version"] == SCHEMA_VERSION == 2
        assert a.meta["harmonization"] is None and a.meta["params"]["trimap"] is None
    applied = {op: sum(r.meta["params"]["domain_gap"][op] is not None for r in pq) for op in GAP}
    assert all(0 < n < len(pq) for n in applied.values()), applied  # drawn in some only
    assert read_index(str(built))["schema_version"] == 2


def _strip(meta: dict) -> dict:
    """The schema-1 form: ops that were not applied left out."""
    m = json.loads(dump_meta(meta))
    m["params"]["domain_gap"] = {k: v for k, v in m["params"]["domain_gap"].items() if v}
    return m


def test_hf_webdataset_returns_every_key_in_every_row(built, tmp_path):
    from datasets import load_dataset

    recs = {r.key: r.meta for r in _records(built, "webdataset")}
    union = set().union(*(meta_paths(m) for m in recs.values()))
    first = [r.meta for r in _records(built, "webdataset")[:5]]
    # the case that lost keys before: an op absent from the first five records HF reads
    assert any(all(m["params"]["domain_gap"][op] is None for m in first) for op in GAP)

    files = {"train": _tars(built)}
    streamed = list(load_dataset("webdataset", data_files=files, split="train", streaming=True))
    loaded = load_dataset(
        "webdataset",
        data_files=files,
        split="train",
        features=webdataset_features(str(built)),
        cache_dir=str(tmp_path / "hf"),
    )
    for rows in (streamed, list(loaded)):
        assert len(rows) == 24
        for row in rows:
            expected = recs[row["__key__"].rsplit("/", 1)[-1]]
            assert _missing(row["json"], union) == []
            assert dump_meta(row["json"]) == dump_meta(expected)
        assert rows[0]["jpg"].size == (32, 32)


def test_schema_1_meta_loses_keys_in_hf(built, tmp_path):
    """Why the key set is fixed: the same records without the null ops lose keys."""
    from datasets import load_dataset

    out = tmp_path / "old"
    with ShardWriter(str(out), "train", 0, formats="webdataset") as w:
        for r in _records(built, "webdataset"):
            r.meta = _strip(r.meta)
            w.write(r)
        w.close()
    tars = sorted(str(p) for p in (out / "webdataset").glob("*.tar"))
    ds = load_dataset("webdataset", data_files={"train": tars}, split="train", streaming=True)
    rows = list(ds)
    lost = [r for r in rows if len(r["json"]["params"]["domain_gap"]) < len(DOMAIN_GAP_OPS)]
    had = [r for r in _records(built, "webdataset") if any(r.meta["params"]["domain_gap"].values())]
    assert lost and had  # keys dropped silently: what schema 2 prevents


def test_conform_meta():
    m = conform_meta({"split": "train", "params": {"domain_gap": {"noise": {"sigma": 2.0}}}})
    assert m["params"]["domain_gap"] == {
        "bg_blur": None,
        "color_jitter": None,
        "jpeg_match": None,
        "noise": {"sigma": 2.0},
    }
    assert m["params"]["trimap"] is None and m["harmonization"] is None
    assert conform_meta(m) == m  # idempotent
    with pytest.raises(DatasetError, match="unknown ops"):
        conform_meta({"params": {"domain_gap": {"sepia": {}}}})


def _schema_1(meta: dict) -> dict:
    """A record's meta as schema 1 wrote it: version 1, ops not applied left out, no
    ``params.trimap`` without trimaps, no ``harmonization``."""
    m = _strip(meta)
    m["schema_version"] = 1
    if m["params"].get("trimap") is None:
        del m["params"]["trimap"]
    del m["harmonization"]
    return m


def test_harmonize_makes_a_schema_1_dataset_schema_2(built, tmp_path):
    """A dataset built by schema 1 comes out of ``matdata harmonize`` as schema 2: every
    meta key present (null where not applied), the values unchanged."""
    from matdata.shards import ShardInfo, iter_shard, write_index
    from pipelines.harmonize import run_harmonize

    old = tmp_path / "old"
    index = read_index(str(built))
    first = next(ShardInfo.from_dict(d) for d in index["shards"] if d["format"] == "parquet")
    with ShardWriter(str(old), first.split, first.index, formats=("parquet", "webdataset")) as w:
        for r in iter_shard(str(built), first):
            w.write(Record(**{**r.__dict__, "meta": _schema_1(r.meta)}))
        written = w.close()
    write_index(str(old), written, config=index["config"], sources=index["sources"],
                rejects=index["rejects"])  # fmt: skip
    raw = json.loads((old / "dataset.json").read_text())
    (old / "dataset.json").write_text(json.dumps({**raw, "schema_version": 1}))
    before = _records(old, "parquet")
    assert before and all("trimap" not in r.meta["params"] for r in before)
    assert any(len(r.meta["params"]["domain_gap"]) < len(DOMAIN_GAP_OPS) for r in before)

    out = tmp_path / "h"
    run_harmonize(str(old), str(out), "reinhard", workers=1, progress=False)
    want = {r.key: r.meta for r in _records(built, "parquet")}
    for fmt in ("parquet", "webdataset"):
        after = _records(out, fmt)
        assert [r.key for r in after] == [r.key for r in before]
        for r in after:
            assert r.meta["schema_version"] == 2 and r.meta["harmonization"]["model"] == "reinhard"
            assert {**r.meta, "harmonization": None} == want[r.key]  # every key, same values
    assert read_index(str(out))["schema_version"] == 2
