"""Hugging Face ``datasets`` features for a built dataset's WebDataset shards.

``datasets.load_dataset("webdataset", ...)`` infers the type of each ``.json`` member from
the first five samples.  Every record's ``meta`` has the same key set
(:func:`matdata.schema.conform_meta`), so no key is dropped; but a value that is null in
those five (a domain-gap op not drawn there) has no type yet, and the non-streaming loader
then fails to cast a later non-null value.  :func:`webdataset_features` gives the full
types, inferred over every record of the dataset::

    from datasets import load_dataset
    from matdata.hf import webdataset_features

    ds = load_dataset("webdataset", data_files={"train": "DIR/webdataset/train-*.tar"},
                      split="train", features=webdataset_features("DIR"))

Streaming loads need no features.  Parquet shards carry ``meta`` as JSON text and their
features in the file (:func:`matdata.shards.hf_features`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def meta_arrow_type(metas: Iterable[Mapping[str, Any]]) -> Any:  # -> pyarrow.DataType
    """The Arrow struct type of ``meta`` objects, unified over all of them."""
    import pyarrow as pa

    rows = [{"json": dict(m)} for m in metas]
    if not rows:
        return pa.struct([])
    return pa.Table.from_pylist(rows).schema.field("json").type


def webdataset_features(dataset_dir: str, split: str | None = None) -> Any:
    """``datasets.Features`` of the WebDataset columns of a built dataset (all splits, or
    ``split``): ``__key__``, ``__url__``, one ``Image`` per image member, typed ``json``."""
    import datasets
    import pyarrow as pa

    from matdata.schema import FIELDS_BY_NAME, META_EXT
    from matdata.shards import iter_records, read_index

    index = read_index(dataset_dir)
    splits = [split] if split else list(index.get("splits", {}))
    metas: list[dict[str, Any]] = []
    fields: set[str] = set()
    for s in splits:
        for rec in iter_records(dataset_dir, s):
            metas.append(rec.meta)
            fields |= set(rec.fields())
    json_type = meta_arrow_type(metas)
    feats = datasets.Features.from_arrow_schema(pa.schema([pa.field(META_EXT, json_type)]))
    out: dict[str, Any] = {
        "__key__": datasets.Value("string"),
        "__url__": datasets.Value("string"),
    }
    for name in sorted(fields, key=list(FIELDS_BY_NAME).index):
        out[FIELDS_BY_NAME[name].ext] = datasets.Image()
    out[META_EXT] = feats[META_EXT]
    return datasets.Features(out)


__all__ = ["meta_arrow_type", "webdataset_features"]
