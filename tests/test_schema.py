"""The record contract: validation, both serialisations round-trip, canonical meta."""

from __future__ import annotations

import numpy as np
import pytest

from matdata.errors import DatasetError
from matdata.imageio import encode_jpeg, encode_png
from matdata.schema import (
    Record,
    arrow_schema,
    decode_record,
    dump_meta,
    from_parquet_row,
    from_wds_sample,
    to_parquet_row,
    to_wds_members,
    validate_record,
)


def _record(key: str = "fg-1__bg-2__000") -> Record:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    meta = {"split": "train", "fg": {"source": "demo", "id": "fg-1"}, "bg": {}, "seed": 3}
    return Record(key, encode_jpeg(img), encode_png(alpha), meta, trimap=encode_png(alpha))


def test_validate_rejects_bad_keys_and_meta():
    validate_record(_record())
    for bad in ("a.b", "a/b", "", "é"):
        with pytest.raises(DatasetError, match="key"):
            validate_record(_record(bad))
    rec = _record()
    del rec.meta["seed"]
    with pytest.raises(DatasetError, match="seed"):
        validate_record(rec)
    rec = _record()
    rec.meta["x"] = float("nan")
    with pytest.raises(DatasetError, match="JSON"):
        validate_record(rec)


def test_wds_members_sorted_and_round_trip():
    rec = _record()
    members = to_wds_members(rec)
    names = [n for n, _ in members]
    assert names == sorted(names)
    assert {n.split(".", 1)[1] for n in names} == {"jpg", "alpha.png", "trimap.png", "json"}
    sample = {"__key__": rec.key, **{n.split(".", 1)[1]: b for n, b in members}}
    back = from_wds_sample(sample)
    assert back.image == rec.image and back.alpha == rec.alpha and back.trimap == rec.trimap
    assert back.meta == rec.meta and back.fg is None


def test_parquet_row_round_trip_and_schema():
    import pyarrow as pa

    rec = _record()
    row = to_parquet_row(rec)
    table = pa.Table.from_pylist([row], schema=arrow_schema())
    assert table.schema.field("image").type == pa.struct(
        [("bytes", pa.binary()), ("path", pa.string())]
    )
    back = from_parquet_row(table.to_pylist()[0])
    assert back.image == rec.image and back.meta == rec.meta and back.fg is None
    assert row["image"]["path"] == f"{rec.key}.jpg"


def test_decode_record_and_canonical_meta():
    rec = _record()
    dec = decode_record(rec)
    assert dec.image.shape == (20, 30, 3) and dec.alpha.shape == (20, 30)
    assert dump_meta({"b": 1, "a": 2}) == '{"a":2,"b":1}'
