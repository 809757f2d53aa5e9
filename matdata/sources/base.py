"""What every source yields: :class:`Item` rows, a manifest format, and deterministic splits.

A *source* scans a dataset once and yields an :class:`Item` per usable input and a
:class:`~matdata.rejects.Reject` per unusable one.  The items are stored as a Parquet
*manifest* (one row per item, columns = the fields of :class:`Item`); the builder reads
only manifests, so a scan is never repeated and a build records which manifest it used.

Loading an item's pixels is the source's other job (:meth:`Source.load_foreground`,
:meth:`Source.load_background`), because only the source knows how its alpha is stored
(RGBA matte, annotation JSON, procedural demo...).
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from matdata.errors import ConfigError, SourceError
from matdata.registry import Registry
from matdata.rejects import Reject

#: Manifest format version (Parquet key-value metadata ``matdata_manifest_version``).
MANIFEST_VERSION = 1

ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_ID_BAD = re.compile(r"[^A-Za-z0-9_-]+")


def safe_id(text: str) -> str:
    """Map any string to the ``[A-Za-z0-9_-]`` alphabet deterministically.

    Runs of other characters become ``_``; if anything was replaced, a short hash of the
    original is appended so distinct inputs never collide.  Text decoded from a file name
    that is not UTF-8 (lone surrogates, as ``os.fsdecode(b'bad\\xff.jpg')`` gives) is
    hashed by its raw bytes.
    """
    cleaned = _ID_BAD.sub("_", text).strip("_") or "x"
    if cleaned == text:
        return text
    return f"{cleaned}-{hashlib.sha1(_raw(text)).hexdigest()[:8]}"


def _raw(text: str) -> bytes:
    """UTF-8 bytes of ``text``; a file name's undecodable bytes as they were on disk."""
    for errors in ("strict", "surrogateescape", "surrogatepass"):
        try:
            return text.encode("utf-8", errors)
        except UnicodeEncodeError:
            continue
    return text.encode("utf-8", "replace")  # pragma: no cover - surrogatepass takes all


def is_utf8(text: str) -> bool:
    """False for text that cannot be written as UTF-8 (a non-UTF-8 file name decoded with
    surrogate escapes, as ``os.listdir`` gives it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """``text`` made storable as UTF-8: undecodable bytes of a file name become ``\\xNN``."""
    if is_utf8(text):
        return text
    return _raw(text).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Item:
    """One usable input of a source (a foreground with its matte, or a background)."""

    id: str  # stable, unique within the source, [A-Za-z0-9_-]+
    source: str  # source kind: aisegment | supervisely | places365 | folder | demo
    role: str  # "fg" or "bg"
    split: str  # train | val | test
    image: str  # path or URL of the image
    width: int  # after EXIF orientation
    height: int
    sha256: str  # content hash of the image bytes (and of the matte bytes, if any)
    group: str = ""  # unit of group-aware splitting (shoot group, dataset folder...)
    alpha: str | None = None  # matte / annotation path, None if in the image or procedural
    coarse: bool = False  # True for coarse masks (Supervisely): semantic supervision only
    category: str | None = None  # background scene category (Places365)
    io: int | None = None  # Places365: 1 indoor, 2 outdoor
    tags: tuple[str, ...] = ()
    extra: str = "{}"  # JSON object text with kind-specific fields

    def extra_dict(self) -> dict[str, Any]:
        return json.loads(self.extra)

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["tags"] = list(self.tags)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Item:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in row.items() if k in names}
        kw["tags"] = tuple(kw.get("tags") or ())
        return cls(**kw)


@dataclass
class Foreground:
    """Pixels of a foreground item: RGB ``(H,W,3)``, alpha ``(H,W)``, optional ignore ``(H,W)``."""

    rgb: np.ndarray
    alpha: np.ndarray
    ignore: np.ndarray | None = None
    coarse: bool = False


@dataclass
class ScanResult:
    """What a scan found, counted so that ``usable + rejected == found``."""

    items: list[Item] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)

    @property
    def found(self) -> int:
        return len(self.items) + len(self.rejects)


Progress = Callable[[int], None]  # called with the number of inputs just examined

#: Options every file-tree source understands: verification, scan workers, splits.
COMMON_OPTIONS = ("verify", "workers", "val_fraction", "test_fraction", "salt")


def check_options(kind: str, options: dict[str, Any], known: Iterable[str] | None) -> None:
    """Refuse an option ``kind`` does not understand (a typo must not be ignored), naming
    the valid ones; ``known`` None means the source does not declare its options."""
    if known is None:
        return
    valid = sorted(set(known))
    unknown = sorted(k for k in options if k not in valid)
    if not unknown:
        return
    import difflib

    close = difflib.get_close_matches(unknown[0], valid, n=1)
    maybe = f"did you mean {close[0]}? " if close else ""
    raise ConfigError(
        f"unknown {kind} source option {', '.join(unknown)}",
        hint=f"{maybe}valid options: {', '.join(valid) or 'none'}",
    )


class Source(ABC):
    """A dataset source.  Subclasses set ``kind`` and ``roles`` and implement the methods."""

    kind: str = ""
    roles: tuple[str, ...] = ("fg",)
    #: The option keys (``-o KEY=VALUE``) this source understands; None: not checked.
    known_options: tuple[str, ...] | None = None
    #: The option that puts more of the source in ``val`` (said when val is empty/tiny).
    split_hint: str = "re-ingest with -o val_fraction=0.1 (or more groups)"

    def __init__(self, root: str, **options: Any):
        check_options(self.kind, options, self.known_options)
        self.root = root.rstrip("/") if root not in ("", "/") else root
        self.options = options

    @abstractmethod
    def scan(self, progress: Progress | None = None) -> Iterator[Item | Reject]:
        """Yield an :class:`Item` or a :class:`Reject` for every input found, once each."""

    def load_foreground(self, item: Item) -> Foreground:
        raise SourceError(f"source {self.kind!r} has no foregrounds")

    def load_background(self, item: Item) -> np.ndarray:
        """A background's RGB pixels; by default the decoded image file, whose bytes must
        still hash to the item's ``sha256`` (else ``changed_since_ingest``)."""
        from matdata.imageio import decode_image
        from matdata.sources._common import read_checked

        (data,) = read_checked(item, item.image)
        return decode_image(data, item.image)


# ------------------------------------------------------------------------------ splits


def assign_split(
    group: str, *, val_fraction: float = 0.05, test_fraction: float = 0.0, salt: str = ""
) -> str:
    """Deterministic, group-aware split: every item of ``group`` lands in the same split.

    The group name is hashed (sha256, so it is stable across Python versions and
    machines) to a number in [0, 1); the lowest ``test_fraction`` go to ``test``, the next
    ``val_fraction`` to ``val``, the rest to ``train``.
    """
    digest = hashlib.sha256(_raw(f"{salt}{group}")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


# ---------------------------------------------------------------------------- registry

#: Source kinds.  Each source module registers its class with ``@SOURCES.register(kind)``;
#: the modules are imported on the first lookup, so that ``matdata --help`` stays light.
SOURCES: Registry[type[Source]] = Registry(
    "source kind",
    modules=tuple(
        f"matdata.sources.{m}"
        for m in ("aisegment", "supervisely", "places365", "coco", "folder", "demo")
    ),
    error=SourceError,
)
#: The former name of :data:`SOURCES` (``kind in REGISTRY``, ``REGISTRY[kind]`` still work).
REGISTRY = SOURCES


def source_class(kind: str) -> type[Source]:
    """The :class:`Source` subclass registered as ``kind``."""
    return SOURCES.get(kind)


def make_source(kind: str, root: str, **options: Any) -> Source:
    """``create_source``: an instance of the ``kind`` source over ``root``."""
    return SOURCES.create(kind, root, **options)


create_source = make_source


# ---------------------------------------------------------------------------- manifests


def manifest_schema():  # -> pyarrow.Schema
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("source", pa.string()),
            ("role", pa.string()),
            ("split", pa.string()),
            ("image", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("sha256", pa.string()),
            ("group", pa.string()),
            ("alpha", pa.string()),
            ("coarse", pa.bool_()),
            ("category", pa.string()),
            ("io", pa.int8()),
            ("tags", pa.list_(pa.string())),
            ("extra", pa.string()),
        ]
    )


class ManifestWriter:
    """Stream items into a Parquet manifest in batches (flat memory for any source size).

    Written to a temporary name and renamed on :meth:`close`.
    """

    def __init__(self, path: str, *, meta: dict[str, Any], batch_size: int = 2048):
        import pyarrow.parquet as pq

        from matdata.storage import get_fs, tmp_name

        self.path = path
        self._fs, p = get_fs(path)
        parent = p.rsplit("/", 1)[0] if "/" in p else ""
        if parent:
            self._fs.makedirs(parent, exist_ok=True)
        self._final = p
        self._tmp = tmp_name(p)
        self._file = self._fs.open(self._tmp, "wb")
        schema = manifest_schema().with_metadata(
            {
                b"matdata_manifest_version": str(MANIFEST_VERSION).encode(),
                b"matdata_source": json.dumps(meta, sort_keys=True).encode(),
            }
        )
        self._writer = pq.ParquetWriter(self._file, schema)
        self._schema = schema
        self._batch: list[dict[str, Any]] = []
        self._batch_size = batch_size
        self.count = 0
        self._hash = hashlib.sha256()

    def write(self, item: Item) -> None:
        row = item.to_row()
        self._batch.append(row)
        self._hash.update(json.dumps(row, sort_keys=True).encode())
        self.count += 1
        if len(self._batch) >= self._batch_size:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._batch:
            self._writer.write_table(pa.Table.from_pylist(self._batch, schema=self._schema))
            self._batch = []

    @property
    def content_hash(self) -> str:
        """sha256 over the rows written (stable across re-scans of unchanged data)."""
        return self._hash.hexdigest()

    def close(self) -> None:
        self._flush()
        self._writer.close()
        self._file.close()
        self._fs.mv(self._tmp, self._final)

    def abort(self) -> None:
        import contextlib

        with contextlib.suppress(Exception):
            self._writer.close()
            self._file.close()
        with contextlib.suppress(Exception):
            self._fs.rm(self._tmp)


def read_manifest(path: str) -> tuple[list[Item], dict[str, Any]]:
    """``(items, source meta)`` of a manifest written by :class:`ManifestWriter`."""
    import pyarrow.parquet as pq

    from matdata.storage import open_input

    try:
        with open_input(path) as f:
            table = pq.read_table(f)
    except FileNotFoundError:
        raise SourceError(
            f"manifest {path} does not exist", hint="run `matdata ingest` first"
        ) from None
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise SourceError(f"manifest {path} is not a readable Parquet file: {exc}") from exc
    md = table.schema.metadata or {}
    if b"matdata_manifest_version" not in md:
        raise SourceError(f"{path} is not a matdata manifest (no matdata_manifest_version)")
    meta = json.loads(md.get(b"matdata_source", b"{}"))
    return [Item.from_row(r) for r in table.to_pylist()], meta


def items_hash(items: Iterable[Item]) -> str:
    """The same content hash :class:`ManifestWriter` computes, for in-memory item lists."""
    h = hashlib.sha256()
    for it in items:
        h.update(json.dumps(it.to_row(), sort_keys=True).encode())
    return h.hexdigest()
