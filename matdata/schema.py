"""The one record schema of a built matdata dataset, shared by Parquet and WebDataset.

A *record* is one training sample.  Its fields, their encodings and their file
extensions in a WebDataset tar are fixed here and nowhere else (see ``docs/format.md``):

===========  ===============  ==================  ==========================================
field        WebDataset ext   Parquet column      content
===========  ===============  ==================  ==========================================
key          (member stem)    ``key`` string      unique, ``[A-Za-z0-9_-]+``
image        ``jpg``          Image struct        the composite, RGB JPEG
alpha        ``alpha.png``    Image struct        8-bit single-channel PNG, 255 = foreground
fg           ``fg.jpg``       Image struct        estimated foreground colours (optional)
bg           ``bg.jpg``       Image struct        the background crop (optional)
trimap       ``trimap.png``   Image struct        0 bg / 128 unknown / 255 fg (optional)
ignore       ``ignore.png``   Image struct        255 = ignore in losses (optional)
image_raw    ``raw.jpg``      Image struct        composite before harmonization (optional)
meta         ``json``         ``meta`` string     JSON object: provenance and parameters
===========  ===============  ==================  ==========================================

Parquet image columns use the Hugging Face ``Image`` storage layout
``struct<bytes: binary, path: string>``; a missing optional field is a null struct.
Encoding, validation and decoding are separate functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from matdata.errors import DatasetError

#: Bumped whenever a field is added, removed or changes meaning.
#: 2: every record's ``meta`` has the same key set (:func:`conform_meta`): each domain-gap
#: op, ``params.trimap`` and ``harmonization`` are always present, null when not applied.
SCHEMA_VERSION = 2

#: Allowed record keys (WebDataset splits member names at the first dot).
KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class FieldSpec:
    """One binary field of a record."""

    name: str
    ext: str  # WebDataset extension after ``KEY.``
    kind: str  # "jpeg" (RGB) or "png_gray" (uint8 mask)
    required: bool


#: Binary fields in canonical (written) order.
IMAGE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("image", "jpg", "jpeg", True),
    FieldSpec("alpha", "alpha.png", "png_gray", True),
    FieldSpec("fg", "fg.jpg", "jpeg", False),
    FieldSpec("bg", "bg.jpg", "jpeg", False),
    FieldSpec("trimap", "trimap.png", "png_gray", False),
    FieldSpec("ignore", "ignore.png", "png_gray", False),
    FieldSpec("image_raw", "raw.jpg", "jpeg", False),
)
FIELDS_BY_NAME = {f.name: f for f in IMAGE_FIELDS}
FIELDS_BY_EXT = {f.ext: f for f in IMAGE_FIELDS}
META_EXT = "json"

#: Keys every ``meta`` object carries.
REQUIRED_META = ("split", "fg", "bg", "seed")

#: The domain-gap ops of :class:`matdata.compose.ComposeConfig`: ``meta.params.domain_gap``
#: holds every one of them, with its drawn parameters or null when it was not applied.
DOMAIN_GAP_OPS = ("bg_blur", "color_jitter", "jpeg_match", "noise")


def conform_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` with the fixed key set of a built record (schema version 2).

    Readers that infer a schema from the first records (Hugging Face's WebDataset loader)
    silently drop a key that those records lack, so nothing optional is ever left out:
    ``params.domain_gap`` gets every op of :data:`DOMAIN_GAP_OPS` (null = not applied),
    ``params.trimap`` is null without trimaps, ``harmonization`` null until
    ``matdata harmonize`` fills it.  Unknown domain-gap ops are an error.
    """
    out = dict(meta)
    params = dict(out.get("params") or {})
    gap = dict(params.get("domain_gap") or {})
    unknown = sorted(set(gap) - set(DOMAIN_GAP_OPS))
    if unknown:
        raise DatasetError(f"meta.params.domain_gap has unknown ops {unknown}")
    params["domain_gap"] = {op: gap.get(op) for op in DOMAIN_GAP_OPS}
    params.setdefault("trimap", None)
    out["params"] = params
    out.setdefault("harmonization", None)
    return out


def meta_paths(meta: Mapping[str, Any], prefix: str = "") -> set[str]:
    """Every key path of a meta object (``params.domain_gap.noise``...), for comparisons."""
    paths: set[str] = set()
    for k, v in meta.items():
        paths.add(prefix + k)
        if isinstance(v, Mapping):
            paths |= meta_paths(v, f"{prefix}{k}.")
    return paths


@dataclass
class Record:
    """One encoded sample: bytes per image field plus the ``meta`` dict."""

    key: str
    image: bytes
    alpha: bytes
    meta: dict[str, Any]
    fg: bytes | None = None
    bg: bytes | None = None
    trimap: bytes | None = None
    ignore: bytes | None = None
    image_raw: bytes | None = None

    @property
    def split(self) -> str:
        return str(self.meta.get("split", "train"))

    def fields(self) -> dict[str, bytes]:
        """The present binary fields in canonical order."""
        out = {}
        for spec in IMAGE_FIELDS:
            value = getattr(self, spec.name)
            if value is not None:
                out[spec.name] = value
        return out


def validate_record(rec: Record) -> str:
    """Check a whole record before any byte of it is written; raise :class:`DatasetError`.

    Returns the canonical meta text (:func:`dump_meta`), which the writers reuse."""
    if not isinstance(rec.key, str) or not KEY_RE.match(rec.key):
        raise DatasetError(f"record key {rec.key!r} must match [A-Za-z0-9_-]+")
    for spec in IMAGE_FIELDS:
        value = getattr(rec, spec.name)
        if spec.required and not value:
            raise DatasetError(f"record {rec.key}: field {spec.name!r} is required")
        if value is not None and not isinstance(value, bytes | bytearray | memoryview):
            raise DatasetError(f"record {rec.key}: field {spec.name!r} must be bytes")
    if not isinstance(rec.meta, Mapping):
        raise DatasetError(f"record {rec.key}: meta must be a JSON object")
    missing = [k for k in REQUIRED_META if k not in rec.meta]
    if missing:
        raise DatasetError(f"record {rec.key}: meta lacks {', '.join(missing)}")
    try:
        return dump_meta(rec.meta)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"record {rec.key}: meta is not JSON-serialisable: {exc}") from exc


def dump_meta(meta: Mapping[str, Any]) -> str:
    """Canonical JSON text of ``meta`` (sorted keys, no NaN) so shards are byte-stable."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False)


def load_meta(text: str | bytes) -> dict[str, Any]:
    return json.loads(text)


# ----------------------------------------------------------------------------- WebDataset


def to_wds_members(rec: Record, meta_text: str | None = None) -> list[tuple[str, bytes]]:
    """Tar members ``(name, bytes)`` of one record, sorted by name (reproducible tars);
    ``meta_text``: the record's :func:`dump_meta` text where the caller already has it."""
    members = [(f"{rec.key}.{FIELDS_BY_NAME[n].ext}", bytes(v)) for n, v in rec.fields().items()]
    text = dump_meta(rec.meta) if meta_text is None else meta_text
    members.append((f"{rec.key}.{META_EXT}", text.encode()))
    return sorted(members)


def from_wds_sample(sample: Mapping[str, Any]) -> Record:
    """Build a :class:`Record` from a dict keyed by extension (``__key__``, ``jpg``, ...)."""
    key = sample.get("__key__")
    if not key:
        raise DatasetError("WebDataset sample without __key__")
    meta_raw = sample.get(META_EXT)
    if meta_raw is None:
        raise DatasetError(f"record {key}: no .json member")
    meta = meta_raw if isinstance(meta_raw, dict) else load_meta(meta_raw)
    kwargs = {}
    for spec in IMAGE_FIELDS:
        if spec.ext in sample:
            kwargs[spec.name] = bytes(sample[spec.ext])
    if "image" not in kwargs or "alpha" not in kwargs:
        raise DatasetError(f"record {key}: image or alpha member missing")
    return Record(key=str(key).rsplit("/", 1)[-1], meta=meta, **kwargs)


# -------------------------------------------------------------------------------- Parquet


def arrow_schema():  # -> pyarrow.Schema (pyarrow imported lazily)
    """The Parquet schema: ``key``, one HF Image struct per image field, ``meta`` JSON text."""
    import pyarrow as pa

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cols = [pa.field("key", pa.string(), nullable=False)]
    cols += [pa.field(spec.name, image_type, nullable=not spec.required) for spec in IMAGE_FIELDS]
    cols.append(pa.field("meta", pa.string(), nullable=False))
    return pa.schema(cols, metadata={b"matdata_schema_version": str(SCHEMA_VERSION).encode()})


def to_parquet_row(rec: Record, meta_text: str | None = None) -> dict[str, Any]:
    """One Parquet row: image structs carry ``path = KEY.EXT`` so decoders know the format;
    ``meta_text``: the record's :func:`dump_meta` text where the caller already has it."""
    text = dump_meta(rec.meta) if meta_text is None else meta_text
    row: dict[str, Any] = {"key": rec.key, "meta": text}
    for spec in IMAGE_FIELDS:
        value = getattr(rec, spec.name)
        row[spec.name] = (
            None if value is None else {"bytes": bytes(value), "path": f"{rec.key}.{spec.ext}"}
        )
    return row


def from_parquet_row(row: Mapping[str, Any]) -> Record:
    kwargs = {}
    for spec in IMAGE_FIELDS:
        value = row.get(spec.name)
        if value is not None and value.get("bytes") is not None:
            kwargs[spec.name] = value["bytes"]
    return Record(key=row["key"], meta=load_meta(row["meta"]), **kwargs)


# ------------------------------------------------------------------------------- decoding


@dataclass
class DecodedRecord:
    """A record with its images decoded to arrays (RGB ``(H,W,3)``, masks ``(H,W)``)."""

    key: str
    image: np.ndarray
    alpha: np.ndarray
    meta: dict[str, Any]
    fg: np.ndarray | None = None
    bg: np.ndarray | None = None
    trimap: np.ndarray | None = None
    ignore: np.ndarray | None = None
    image_raw: np.ndarray | None = None


def decode_record(rec: Record, fields: tuple[str, ...] | None = None) -> DecodedRecord:
    """Decode the requested fields (default: all present) of a record matdata wrote."""
    from matdata.imageio import fast_decode_jpeg, fast_decode_png_gray

    out: dict[str, Any] = {"key": rec.key, "meta": rec.meta}
    for spec in IMAGE_FIELDS:
        value = getattr(rec, spec.name)
        if value is None or (fields is not None and spec.name not in fields and not spec.required):
            continue
        out[spec.name] = (
            fast_decode_jpeg(value) if spec.kind == "jpeg" else fast_decode_png_gray(value)
        )
    return DecodedRecord(**out)


def is_coarse(meta: Mapping[str, Any]) -> bool:
    """Whether a record's alpha is a coarse mask (e.g. Supervisely: no matting ground truth,
    semantic supervision only): the ONE rule, used by training, evaluation and QA.

    The builder writes ``meta["coarse"]`` and ``meta["fg"]["coarse"]``; either being true
    makes the record coarse (a record that says neither is fine)."""
    fg = meta.get("fg")
    return bool(meta.get("coarse")) or (isinstance(fg, Mapping) and bool(fg.get("coarse")))
