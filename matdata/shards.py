"""Built datasets on disk: shard writers and readers, ``dataset.json``, verification.

Layout of a dataset directory ``DIR`` (a local path or an fsspec URL), documented in
``docs/format.md``::

    DIR/dataset.json                      the index (written last, deterministic)
    DIR/parquet/SPLIT-00000.parquet       Parquet shards (HF Image struct columns)
    DIR/webdataset/SPLIT-000000.tar       WebDataset shards
    DIR/rejects.parquet                   every input that could not be used
    DIR/.parts/SPLIT-00000.json           per-shard completion markers (resume)

Every shard is written under a temporary hidden name (``.tmp-...``) and renamed into place
only when complete, so no reader ever sees a partial shard.  Shards contain no timestamps:
the same records give byte-identical files (tar members have mtime 0, uid/gid 0, empty
owner names; Parquet files are written with fixed options).

The tar writer is hand-written on top of :mod:`tarfile` (not ``webdataset.TarWriter``)
because byte-reproducibility needs control of every header field, and so that this core
module does not depend on ``webdataset``, which is only a test/reader dependency.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from matdata.errors import DatasetError
from matdata.paths import check_split
from matdata.schema import (
    FIELDS_BY_EXT,
    FIELDS_BY_NAME,
    IMAGE_FIELDS,
    SCHEMA_VERSION,
    Record,
    arrow_schema,
    from_parquet_row,
    from_wds_sample,
    to_parquet_row,
    to_wds_members,
    validate_record,
)
from matdata.storage import TMP_PREFIX, get_fs, join, open_input, tmp_name

INDEX_NAME = "dataset.json"
REJECTS_NAME = "rejects.parquet"
PARTS_DIR = ".parts"
FORMATS = ("parquet", "webdataset")
#: Preferred format when a caller does not choose one and both exist.
PREFERRED = ("parquet", "webdataset")
#: Rows per Parquet row group (readers stream a row group at a time).
ROW_GROUP_SIZE = 100
#: Marks ``dataset.json`` files written by matdata.
INDEX_FORMAT = "matdata-dataset"


@dataclass(frozen=True)
class ShardInfo:
    """One shard file of a dataset; ``path`` is relative to the dataset directory."""

    path: str
    split: str
    format: str  # "parquet" | "webdataset"
    index: int
    samples: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = INDEX_NAME) -> ShardInfo:
        """A shard entry read off disk; :class:`DatasetError` naming ``where`` if it is not
        well formed (types, split name, a path that stays inside the dataset)."""
        from matdata.index_schema import validate_shard

        validate_shard(d, where)
        return cls(
            path=str(d["path"]),
            split=str(d["split"]),
            format=str(d["format"]),
            index=int(d["index"]),
            samples=int(d["samples"]),
            bytes=int(d["bytes"]),
            sha256=str(d["sha256"]),
        )


def shard_name(split: str, index: int, fmt: str) -> str:
    """Relative path of shard ``index`` of ``split`` in format ``fmt``."""
    check_split(split, "shard name")
    if fmt == "parquet":
        return f"parquet/{split}-{index:05d}.parquet"
    if fmt == "webdataset":
        return f"webdataset/{split}-{index:06d}.tar"
    raise DatasetError(f"unknown shard format {fmt!r}", hint="use parquet or webdataset")


def part_name(split: str, index: int) -> str:
    """Relative path of the completion marker of shard ``index`` of ``split``."""
    check_split(split, "marker name")
    return f"{PARTS_DIR}/{split}-{index:05d}.json"


def write_marker(dataset_dir: str, split: str, index: int, marker: dict[str, Any]) -> None:
    """Write the completion marker of a shard (after its files are in place), atomically."""
    from matdata.storage import atomic_write_text

    text = json.dumps(marker, sort_keys=True, indent=1) + "\n"
    atomic_write_text(join(dataset_dir, part_name(split, index)), text)


def read_marker(
    dataset_dir: str, split: str, index: int, digest: str, formats: tuple[str, ...] | list[str]
) -> dict[str, Any] | None:
    """The completion marker of shard ``(split, index)`` if it records ``digest``, exactly
    ``formats``, shard entries naming this very shard (confined paths), and every file it
    lists is on disk with the recorded size and sha256; else None (the shard is redone)."""
    try:
        with open_input(join(dataset_dir, part_name(split, index)), "rb") as f:
            d = json.loads(f.read())
        if not isinstance(d, dict) or d.get("digest") != digest:
            return None
        entries = d["shards"]
        infos = [ShardInfo.from_dict(e, where=part_name(split, index)) for e in entries]
    except (FileNotFoundError, ValueError, KeyError, TypeError, DatasetError):
        return None
    if sorted(s.format for s in infos) != sorted(formats):
        return None
    for s in infos:
        if (s.split, s.index, s.path) != (split, index, shard_name(split, index, s.format)):
            return None
        if shard_ok(dataset_dir, s) is not None:
            return None
    return d


def check_formats(formats: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    """Normalise ``"both"`` / a single name / a list to a tuple in canonical order."""
    if isinstance(formats, str):
        formats = FORMATS if formats == "both" else (formats,)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise DatasetError(
            f"unknown format {', '.join(bad) or '(none)'}",
            hint="choose parquet, webdataset or both",
        )
    return tuple(f for f in FORMATS if f in formats)


# ---------------------------------------------------------------------------- writing


class _HashingFile(io.RawIOBase):
    """A write-only file wrapper that hashes and counts what passes through it."""

    def __init__(self, f: Any):
        super().__init__()
        self._f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        mv = memoryview(b).cast("B")
        self._f.write(mv)
        self.sha.update(mv)
        self.size += len(mv)
        return len(mv)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._f.flush()


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0
    ti.mode = 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.type = tarfile.REGTYPE
    return ti


def hf_features() -> dict[str, Any]:
    """Hugging Face ``datasets`` feature spec of the Parquet columns (image fields = Image)."""
    feats: dict[str, Any] = {"key": {"dtype": "string", "_type": "Value"}}
    for spec in IMAGE_FIELDS:
        feats[spec.name] = {"_type": "Image"}
    feats["meta"] = {"dtype": "string", "_type": "Value"}
    return feats


def parquet_schema():  # -> pyarrow.Schema
    """:func:`matdata.schema.arrow_schema` plus the ``huggingface`` key-value metadata, so
    ``datasets.load_dataset("parquet")`` decodes image columns as ``Image`` features.

    Image columns are declared nullable even when required (``validate_record`` enforces
    presence): HF ``datasets`` ignores its feature metadata for non-nullable structs.
    """
    import pyarrow as pa

    base = arrow_schema()
    schema = pa.schema(
        [f.with_nullable(True) if f.name in FIELDS_BY_NAME else f for f in base],
        metadata=base.metadata,
    )
    md = dict(schema.metadata or {})
    md[b"huggingface"] = json.dumps({"info": {"features": hf_features()}}).encode()
    return schema.with_metadata(md)


class _Part:
    """One format's output of a shard: a temporary file plus its streaming writer."""

    def __init__(self, dataset_dir: str, rel: str, fmt: str, row_group_size: int):
        self.rel = rel
        self.fmt = fmt
        self.fs, self.final = get_fs(join(dataset_dir, rel))
        parent = self.final.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        self.tmp = tmp_name(self.final)
        self.raw = self.fs.open(self.tmp, "wb")
        self.hf = _HashingFile(self.raw)
        self.samples = 0
        self.row_group_size = row_group_size
        self._rows: list[dict[str, Any]] = []
        if fmt == "webdataset":
            # closed in finish()/abort(), not a with-block: the tar spans many write() calls
            self.tar = tarfile.open(  # noqa: SIM115
                fileobj=self.hf, mode="w|", format=tarfile.GNU_FORMAT
            )
        else:
            import pyarrow.parquet as pq

            self.schema = parquet_schema()
            self.pq = pq.ParquetWriter(
                self.hf,
                self.schema,
                compression="none",  # JPEG/PNG bytes do not compress; keeps reads cheap
                write_statistics=["key"],
                use_dictionary=False,
            )

    def write(self, rec: Record, meta_text: str | None = None) -> None:
        self.samples += 1
        if self.fmt == "webdataset":
            for name, data in to_wds_members(rec, meta_text):
                self.tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
        else:
            self._rows.append(to_parquet_row(rec, meta_text))
            if len(self._rows) >= self.row_group_size:
                self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            table = pa.Table.from_pylist(self._rows, schema=self.schema)
            self.pq.write_table(table, row_group_size=self.row_group_size)
            self._rows = []

    def finish(self) -> None:
        """Close the writer and the temporary file (not yet renamed)."""
        if self.fmt == "webdataset":
            self.tar.close()
        else:
            self._flush()
            self.pq.close()
        self.raw.close()

    def commit(self, split: str, index: int) -> ShardInfo:
        self.fs.mv(self.tmp, self.final)
        return ShardInfo(
            self.rel, split, self.fmt, index, self.samples, self.hf.size, self.sha.hexdigest()
        )

    @property
    def sha(self) -> Any:
        return self.hf.sha

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self.fmt == "webdataset":
                self.tar.close()
            else:
                self.pq.close()
        with contextlib.suppress(Exception):
            self.raw.close()
        with contextlib.suppress(Exception):
            self.fs.rm(self.tmp)


class ShardWriter:
    """Write one shard (in one or both formats) atomically.

    Records are validated, then streamed to temporary hidden files; :meth:`close` renames
    them into place and returns one :class:`ShardInfo` per format (with sha256 computed
    while writing).  :meth:`abort` (or leaving a ``with`` block by an exception) deletes
    the temporary files.  Records arrive already encoded (the JPEG quality is the
    builder's, recorded in ``dataset.json``'s config).
    """

    def __init__(
        self,
        dataset_dir: str,
        split: str,
        index: int,
        formats: tuple[str, ...] | list[str] | str = FORMATS,
        row_group_size: int = ROW_GROUP_SIZE,
    ):
        self.dataset_dir = dataset_dir
        self.split = split
        self.index = int(index)
        self.formats = check_formats(formats)
        self._keys: set[str] = set()
        self._parts: list[_Part] = []
        self._closed = False
        try:
            for fmt in self.formats:
                rel = shard_name(split, self.index, fmt)
                self._parts.append(_Part(dataset_dir, rel, fmt, row_group_size))
        except BaseException:
            self.abort()
            raise

    @property
    def samples(self) -> int:
        return len(self._keys)

    def write(self, rec: Record) -> None:
        meta_text = validate_record(rec)  # serialised once, shared by every format
        if rec.key in self._keys:
            raise DatasetError(f"duplicate key {rec.key!r} in shard {self.split}-{self.index}")
        self._keys.add(rec.key)
        for part in self._parts:
            part.write(rec, meta_text)

    def close(self) -> list[ShardInfo]:
        if self._closed:
            raise DatasetError("shard writer already closed")
        try:
            for part in self._parts:
                part.finish()
            infos = [part.commit(self.split, self.index) for part in self._parts]
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return infos

    def abort(self) -> None:
        self._closed = True
        for part in self._parts:
            part.abort()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None and not self._closed:
            self.abort()


# ----------------------------------------------------------------------------- index


def _dump_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def build_index(
    shards: list[ShardInfo],
    *,
    config: dict[str, Any],
    sources: dict[str, Any],
    rejects: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``dataset.json`` object (see ``docs/format.md``); pure, deterministic."""
    ordered = sorted(shards, key=lambda s: (s.format, s.split, s.index))
    formats = [f for f in FORMATS if any(s.format == f for s in ordered)]
    splits: dict[str, dict[str, int]] = {}
    if formats:
        for s in ordered:
            if s.format != formats[0]:
                continue
            d = splits.setdefault(s.split, {"samples": 0, "shards": 0})
            d["samples"] += s.samples
            d["shards"] += 1
    index: dict[str, Any] = {
        "format": INDEX_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "formats": formats,
        "splits": dict(sorted(splits.items())),
        "samples": sum(d["samples"] for d in splits.values()),
        "shards": [s.to_dict() for s in ordered],
        "config": config,
        "sources": sources,
        "rejects": rejects,
    }
    for k, v in (extra or {}).items():
        if k in index:
            raise DatasetError(f"extra key {k!r} clashes with a dataset.json field")
        index[k] = v
    return index


def write_index(
    dataset_dir: str,
    shards: list[ShardInfo],
    *,
    config: dict[str, Any],
    sources: dict[str, Any],
    rejects: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``DIR/dataset.json`` atomically (sorted keys, no timestamps) and return it."""
    from matdata.storage import atomic_write_text

    index = build_index(shards, config=config, sources=sources, rejects=rejects, extra=extra)
    atomic_write_text(join(dataset_dir, INDEX_NAME), _dump_json(index))
    return index


def read_index(dataset_dir: str) -> dict[str, Any]:
    """The parsed ``dataset.json`` of a built dataset; :class:`DatasetError` if unusable."""
    path = join(dataset_dir, INDEX_NAME)
    try:
        with open_input(path, "rb") as f:
            index = json.loads(f.read())
    except FileNotFoundError:
        raise DatasetError(
            f"{dataset_dir} is not a built dataset (no {INDEX_NAME})",
            hint="run `matdata build` first, or finish it by re-running the same command",
        ) from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} is unreadable: {exc}") from exc
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise DatasetError(f"{path} is not a matdata dataset index")
    version = index.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise DatasetError(
            f"{path} has schema version {version}, this matdata reads <= {SCHEMA_VERSION}",
            hint="upgrade matdata",
        )
    from matdata.index_schema import validate_index

    validate_index(index, path)
    return index


def list_shards(
    dataset_dir: str, split: str | None = None, fmt: str | None = None
) -> list[ShardInfo]:
    """Shards of ``split`` (default all) in ``fmt`` (default: the preferred one present)."""
    index = read_index(dataset_dir)
    # read_index validated every entry against the shard schema and confined its path:
    # build them directly (validating again doubled the cost at 1,400 shards).
    fields = ("path", "split", "format", "index", "samples", "bytes", "sha256")
    shards = [ShardInfo(**{k: d[k] for k in fields}) for d in index.get("shards", [])]
    present = [f for f in PREFERRED if any(s.format == f for s in shards)]
    if fmt is None:
        if not present:
            return []
        fmt = present[0]
    elif fmt not in present:
        raise DatasetError(
            f"{dataset_dir} has no {fmt} shards",
            hint=f"available: {', '.join(present) or 'none'}",
        )
    out = [s for s in shards if s.format == fmt and (split is None or s.split == split)]
    if split is not None and not out:
        splits = sorted({s.split for s in shards})
        raise DatasetError(
            f"{dataset_dir} has no split {split!r}", hint=f"available: {', '.join(splits)}"
        )
    return sorted(out, key=lambda s: (s.split, s.index))


# ----------------------------------------------------------------------------- reading


def _iter_parquet(f: Any) -> Iterator[Record]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(f)
    for i in range(pf.num_row_groups):
        for row in pf.read_row_group(i).to_pylist():
            yield from_parquet_row(row)


def _split_member(name: str) -> tuple[str, str]:
    base = name.rsplit("/", 1)[-1]
    key, _, ext = base.partition(".")
    return key, ext


def _iter_tar(f: Any) -> Iterator[Record]:
    with tarfile.open(fileobj=f, mode="r|") as tar:
        current: dict[str, Any] | None = None
        for member in tar:
            if not member.isfile():
                continue
            key, ext = _split_member(member.name)
            if current is not None and current["__key__"] != key:
                yield from_wds_sample(current)
                current = None
            if current is None:
                current = {"__key__": key}
            fobj = tar.extractfile(member)
            data = fobj.read() if fobj is not None else b""
            if ext not in FIELDS_BY_EXT and ext != "json":
                continue  # unknown member: ignored, like webdataset readers do
            current[ext] = data
        if current is not None:
            yield from_wds_sample(current)


def _read_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa

    # what a damaged file raises while parsing: tar/Arrow errors, bad meta JSON (ValueError),
    # rows without the expected columns (KeyError/TypeError/AttributeError)
    return (tarfile.TarError, OSError, pa.ArrowException, ValueError, KeyError, TypeError,
            AttributeError, EOFError)  # fmt: skip


class ShardReader:
    """Stream the records of one shard, hashing its bytes as they are read.

    Iterating yields records one row group / one sample at a time.  When iteration ends
    (or :meth:`finish` is called after leaving early, which hashes the unread rest without
    decoding it) the sha256 of the bytes read is in :attr:`sha256`; with ``verify`` a
    mismatch with ``dataset.json`` raises one :class:`DatasetError` naming the shard.
    A file that cannot be parsed raises :class:`DatasetError` naming the shard, too.
    """

    def __init__(self, dataset_dir: str, shard: ShardInfo, *, verify: bool = False):
        from matdata.paths import confine

        self.shard = shard
        self.verify = verify
        self.path = confine(dataset_dir, shard.path, INDEX_NAME)
        self.sha256: str | None = None
        self.bytes: int | None = None
        self._file: Any = None
        self._hasher: Any = None

    def _open(self) -> Any:
        from matdata.storage import HashingReader

        try:
            fs, p = get_fs(self.path)
            self._file = fs.open(p, "rb")
        except FileNotFoundError:
            raise DatasetError(
                f"shard {self.shard.path} listed in {INDEX_NAME} is missing",
                hint="re-run the build command to finish or repair it",
            ) from None
        self._hasher = HashingReader(self._file)
        return self._hasher

    def __iter__(self) -> Iterator[Record]:
        f = self._open()
        try:
            try:
                if self.shard.format == "parquet":
                    yield from _iter_parquet(f)
                else:
                    yield from _iter_tar(f)
            except DatasetError as exc:
                raise DatasetError(f"shard {self.shard.path}: {exc}") from exc
            except _read_errors() as exc:
                self.finish()  # a flipped byte is better reported as such than as garbage
                raise DatasetError(f"shard {self.shard.path} is corrupt: {exc}") from exc
            self.finish()
        finally:
            self.close()

    def finish(self) -> str:
        """Hash what was not read yet; check it when verifying; return the sha256."""
        if self.sha256 is None:
            if self._hasher is None:
                self._open()
            try:
                self.sha256, self.bytes = self._hasher.finish()
            except OSError as exc:
                raise DatasetError(f"shard {self.shard.path} is unreadable: {exc}") from exc
            finally:
                self.close()
        if self.verify and (self.sha256 != self.shard.sha256 or self.bytes != self.shard.bytes):
            raise DatasetError(
                f"shard {self.shard.path} does not match {INDEX_NAME} "
                f"(sha256 {self.sha256[:12]}... of {self.bytes} bytes read, "
                f"{self.shard.sha256[:12]}... of {self.shard.bytes} recorded)",
                hint="the file changed after it was written: rebuild it, "
                "or pass --no-verify to use it anyway",
            )
        return self.sha256

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()


def iter_shard(dataset_dir: str, shard: ShardInfo, *, verify: bool = False) -> Iterator[Record]:
    """Stream the records of one shard (see :class:`ShardReader`)."""
    return iter(ShardReader(dataset_dir, shard, verify=verify))


def iter_records(
    dataset_dir: str, split: str | None = None, fmt: str | None = None
) -> Iterator[Record]:
    """Stream every record of ``split`` (default all splits), shard by shard."""
    for shard in list_shards(dataset_dir, split, fmt):
        yield from iter_shard(dataset_dir, shard)


# ------------------------------------------------------------------------------ verify


def shard_ok(dataset_dir: str, shard: ShardInfo, *, hash_check: bool = True) -> str | None:
    """``None`` if the shard file exists with the recorded size (and sha256), else why not."""
    from matdata.paths import confine
    from matdata.storage import sha256_file

    path = confine(dataset_dir, shard.path, INDEX_NAME)
    fs, p = get_fs(path)
    try:
        size = fs.size(p)
    except FileNotFoundError:
        return f"{shard.path}: missing"
    if size != shard.bytes:
        return f"{shard.path}: {size} bytes, expected {shard.bytes}"
    if hash_check:
        digest, _ = sha256_file(path)
        if digest != shard.sha256:
            return f"{shard.path}: sha256 mismatch"
    return None


def verify(dataset_dir: str) -> list[str]:
    """Re-hash every shard against ``dataset.json``; return the problems (empty = OK)."""
    index = read_index(dataset_dir)
    problems = []
    for d in index.get("shards", []):
        shard = ShardInfo.from_dict(d)
        problem = shard_ok(dataset_dir, shard)
        if problem:
            problems.append(problem)
        elif shard.format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                with open_input(join(dataset_dir, shard.path)) as f:
                    rows = pq.ParquetFile(f).metadata.num_rows
            except (pa.ArrowException, OSError) as exc:
                problems.append(f"{shard.path}: not a readable Parquet file ({exc})")
                continue
            if rows != shard.samples:
                problems.append(f"{shard.path}: {rows} rows, expected {shard.samples}")
    return problems


def list_temporaries(dataset_dir: str) -> list[str]:
    """Leftover in-progress files (``.tmp-*``) under the shard folders of a dataset."""
    out = []
    for sub in (*FORMATS, PARTS_DIR, ""):
        fs, p = get_fs(join(dataset_dir, sub) if sub else dataset_dir)
        try:
            names = fs.ls(p, detail=False)
        except FileNotFoundError:
            continue
        out += [n for n in names if n.rsplit("/", 1)[-1].startswith(TMP_PREFIX)]
    return sorted(out)
