"""The JSON Schema of ``dataset.json`` and its validation (the one place that checks it).

Every reader of a dataset (verify, inspect, qa, train, harmonize, predict/evaluate) goes
through :func:`matdata.shards.read_index`, which calls :func:`validate_index`: a file that
does not fit gives one :class:`~matdata.errors.DatasetError` line naming the field, e.g.
``dataset.json: shards[2].sha256: 'sha256' is a required property``.  Beyond the schema,
shard paths must be confined to the dataset directory (:mod:`matdata.paths`).
"""

from __future__ import annotations

import functools
from typing import Any

from matdata.errors import DatasetError
from matdata.paths import MAX_SPLIT_LEN, SPLIT_PATTERN, is_safe_relative

_SPLIT = {"type": "string", "pattern": f"^{SPLIT_PATTERN}$", "maxLength": MAX_SPLIT_LEN}
_COUNT = {"type": "integer", "minimum": 0}

#: JSON Schema (draft 2020-12) of a shard entry, also used for completion markers.
SHARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["path", "split", "format", "index", "samples", "bytes", "sha256"],
    "properties": {
        "path": {"type": "string", "minLength": 1, "maxLength": 1024},
        "split": _SPLIT,
        "format": {"enum": ["parquet", "webdataset"]},
        "index": _COUNT,
        "samples": _COUNT,
        "bytes": _COUNT,
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    },
}

#: JSON Schema of ``dataset.json`` (fields matdata reads; others are carried along).
INDEX_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["format", "schema_version", "shards"],
    "properties": {
        "format": {"const": "matdata-dataset"},
        "schema_version": {"type": "integer", "minimum": 1},
        "formats": {"type": "array", "items": {"enum": ["parquet", "webdataset"]}},
        "splits": {
            "type": "object",
            "propertyNames": _SPLIT,
            "additionalProperties": {
                "type": "object",
                "properties": {"samples": _COUNT, "shards": _COUNT},
            },
        },
        "samples": _COUNT,
        "shards": {"type": "array", "items": SHARD_SCHEMA},
        "config": {
            "type": "object",
            "properties": {
                "jpeg_quality": {"type": ["integer", "null"], "minimum": 1, "maximum": 100}
            },
        },
        "sources": {"type": "object"},
        "rejects": {"type": "object"},
        "harmonization": {"type": "object"},
    },
}


def _where(path: Any) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


@functools.cache
def _validator(which: str) -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(INDEX_SCHEMA if which == "index" else SHARD_SCHEMA)


def _check(obj: Any, which: str, name: str) -> None:
    import jsonschema

    validator = _validator(which)
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is None:
        return
    field = _where(error.absolute_path)
    message = error.message if len(error.message) <= 160 else error.message[:157] + "..."
    raise DatasetError(
        f"{name}: {field}: {message}",
        hint="the file is damaged or not written by matdata; rebuild the dataset",
    )


def validate_index(index: Any, name: str = "dataset.json") -> None:
    """Raise :class:`DatasetError` naming the first field of ``index`` that is malformed."""
    _check(index, "index", name)
    for i, shard in enumerate(index["shards"]):
        if not is_safe_relative(shard["path"]):
            raise DatasetError(
                f"{name}: shards[{i}].path: {shard['path']!r} leaves the dataset directory",
                hint="shard paths must be relative, without '..' (rebuild the dataset)",
            )


def validate_shard(entry: Any, name: str) -> None:
    """Raise :class:`DatasetError` if ``entry`` is not a well-formed, confined shard entry."""
    _check(entry, "shard", name)
    if not is_safe_relative(entry["path"]):
        raise DatasetError(f"{name}: path {entry['path']!r} leaves the dataset directory")
