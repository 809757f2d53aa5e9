"""Shard writers/readers and dataset.json: real pyarrow, webdataset, HF datasets, DuckDB."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from matdata.errors import DatasetError
from matdata.imageio import decode_alpha, decode_image, encode_jpeg, encode_png
from matdata.schema import Record
from matdata.shards import (
    ROW_GROUP_SIZE,
    ShardInfo,
    ShardWriter,
    iter_records,
    iter_shard,
    list_shards,
    list_temporaries,
    read_index,
    verify,
    write_index,
)


def _record(i: int, split: str = "train", with_trimap: bool = False) -> Record:
    rng = np.random.default_rng(i)
    alpha = rng.integers(0, 256, (24, 20), dtype=np.uint8)
    return Record(
        key=f"fg-{i:04d}__bg_{i % 3}__000",
        image=encode_jpeg(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8), 90),
        alpha=encode_png(alpha),
        trimap=encode_png(np.full((24, 20), 128, np.uint8)) if with_trimap else None,
        meta={"split": split, "fg": {"source": "t", "id": str(i)}, "bg": {"id": "b"}, "seed": i},
    )


def _write(root: Path, n_train: int = 230, n_val: int = 7) -> list[ShardInfo]:
    infos: list[ShardInfo] = []
    with ShardWriter(str(root), "train", 0) as w:
        for i in range(n_train):
            w.write(_record(i, with_trimap=True))
        infos += w.close()
    with ShardWriter(str(root), "val", 0, formats="both") as w:
        for i in range(n_val):
            w.write(_record(1000 + i, "val"))
        infos += w.close()
    write_index(str(root), infos, config={"seed": 1}, sources={}, rejects={"found": 0})
    return infos


def test_roundtrip_both_formats_and_index(tmp_path: Path) -> None:
    infos = _write(tmp_path)
    index = read_index(str(tmp_path))
    assert index["splits"] == {
        "train": {"samples": 230, "shards": 1},
        "val": {"samples": 7, "shards": 1},
    }
    assert index["formats"] == ["parquet", "webdataset"]
    assert verify(str(tmp_path)) == []
    assert list_temporaries(str(tmp_path)) == []
    for fmt in ("parquet", "webdataset"):
        recs = list(iter_records(str(tmp_path), "train", fmt))
        assert [r.key for r in recs] == [_record(i).key for i in range(230)]
        expected = _record(5)
        expected_t = _record(5, with_trimap=True)
        assert recs[5].alpha == expected.alpha and recs[5].image == expected.image
        assert recs[4].trimap is not None and recs[5].trimap == expected_t.trimap
        assert recs[5].meta == expected.meta
    assert {s.path for s in infos} == {
        "parquet/train-00000.parquet",
        "webdataset/train-000000.tar",
        "parquet/val-00000.parquet",
        "webdataset/val-000000.tar",
    }
    assert list_shards(str(tmp_path))[0].format == "parquet"
    val = list(iter_records(str(tmp_path), "val", "webdataset"))
    assert len(val) == 7 and all(r.trimap is None and r.split == "val" for r in val)
    with pytest.raises(DatasetError, match="no split"):
        list_shards(str(tmp_path), "test")


def test_parquet_layout_row_groups_and_duckdb(tmp_path: Path) -> None:
    import duckdb
    import pyarrow.parquet as pq

    _write(tmp_path)
    path = tmp_path / "parquet" / "train-00000.parquet"
    pf = pq.ParquetFile(path)
    assert pf.metadata.num_row_groups == -(-230 // ROW_GROUP_SIZE)
    assert pf.metadata.row_group(0).num_rows == ROW_GROUP_SIZE
    image_type = pf.schema_arrow.field("image").type
    assert [image_type.field(i).name for i in range(2)] == ["bytes", "path"]
    rows = duckdb.sql(
        f"select key, json_extract_string(meta, '$.split') as split, "
        f"octet_length(alpha.bytes) as n from '{path}' where trimap is not null order by key"
    ).fetchall()
    assert len(rows) == 230 and all(r[1] == "train" and r[2] > 0 for r in rows)


def test_tar_is_reproducible_and_readable_by_webdataset(tmp_path: Path) -> None:
    import webdataset as wds

    a = _write(tmp_path / "a")
    b = _write(tmp_path / "b")
    assert [s.sha256 for s in a] == [s.sha256 for s in b]
    tar_path = tmp_path / "a" / "webdataset" / "train-000000.tar"
    with tarfile.open(tar_path) as tar:
        members = tar.getmembers()
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
    names = [m.name for m in members]
    first = [n for n in names if n.startswith(_record(0).key)]
    assert (
        first
        == sorted(first)
        == [f"{_record(0).key}.{e}" for e in ("alpha.png", "jpg", "json", "trimap.png")]
    )
    samples = list(wds.WebDataset(str(tar_path), shardshuffle=False))
    assert len(samples) == 230
    s = samples[3]
    assert s["__key__"] == _record(3).key
    assert json.loads(s["json"])["seed"] == 3
    assert decode_alpha(s["alpha.png"], "a").shape == (24, 20)
    assert decode_image(s["jpg"], "i").shape == (24, 20, 3)


def test_hf_datasets_reads_both_formats(tmp_path: Path) -> None:
    from datasets import load_dataset

    _write(tmp_path)
    pq_ds = load_dataset(
        "parquet",
        data_files={"train": str(tmp_path / "parquet" / "train-*.parquet")},
        split="train",
        cache_dir=str(tmp_path / "hf"),
    )
    assert len(pq_ds) == 230
    assert pq_ds.features["image"].__class__.__name__ == "Image"
    assert pq_ds[0]["image"].size == (20, 24)
    wds_ds = load_dataset(
        "webdataset",
        data_files={"train": str(tmp_path / "webdataset" / "train-*.tar")},
        split="train",
        streaming=True,
    )
    got = list(wds_ds)
    assert len(got) == 230
    assert got[0]["__key__"] == _record(0).key
    assert np.asarray(got[0]["alpha.png"]).shape == (24, 20)


def test_abort_and_failure_leave_nothing_visible(tmp_path: Path) -> None:
    w = ShardWriter(str(tmp_path), "train", 3)
    w.write(_record(0))
    w.abort()
    assert not (tmp_path / "parquet" / "train-00003.parquet").exists()
    assert list_temporaries(str(tmp_path)) == []
    with pytest.raises(RuntimeError), ShardWriter(str(tmp_path), "train", 4) as w2:
        w2.write(_record(1))
        raise RuntimeError("boom")
    assert list_temporaries(str(tmp_path)) == []
    assert not any((tmp_path / "webdataset").glob("*.tar"))


def test_bad_records_and_missing_index(tmp_path: Path) -> None:
    with ShardWriter(str(tmp_path), "train", 0, formats="parquet") as w:
        bad = _record(0)
        bad.key = "has.dot"
        with pytest.raises(DatasetError, match="key"):
            w.write(bad)
        w.write(_record(1))
        with pytest.raises(DatasetError, match="duplicate"):
            w.write(_record(1))
        w.abort()
    with pytest.raises(DatasetError, match="not a built dataset"):
        read_index(str(tmp_path / "nope"))


def test_verify_detects_corruption(tmp_path: Path) -> None:
    infos = _write(tmp_path)
    target = tmp_path / infos[0].path
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    problems = verify(str(tmp_path))
    assert len(problems) == 1 and "sha256" in problems[0]
    (tmp_path / infos[1].path).unlink()
    assert any("missing" in p for p in verify(str(tmp_path)))
    shard = next(s for s in infos if s.path == infos[1].path)
    with pytest.raises(DatasetError, match="missing"):
        list(iter_shard(str(tmp_path), shard))
