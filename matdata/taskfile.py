"""A build plan's shard tasks as one file that workers read one shard at a time.

A :class:`~matdata.planning.CompactPlan` at dataset scale is large (340k samples over
1,400 shards pickle to about 113 MB): shipped to every worker whole, each worker's memory
grows with the number of shards.  :func:`write_task_file` writes the plan once, shard by
shard, into a file in the output's work folder; the :class:`TaskFile` it returns is a
small sequence (per shard: where its record lies, its length and its sha256; plus the
plan-wide settings) that the runner ships to the workers instead.  A worker reads only
the record of the shard it runs, checks its sha256 before parsing it, and turns it into
the same :class:`~matdata.builder.ShardTask` the plan would have made.

A record is three Arrow IPC streams, back to back: the shard's foreground rows, its
background rows (manifest columns plus the plan's global index ``_key`` and the source
number ``_src`` of each row) and its pairs (``g``, ``b``, ``k``, ``seed``, ``all``; the
schema's metadata holds the shard's split, index and digest).  Arrow, not pickle: the
file is read back as data, never as code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from matdata.errors import DatasetError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from matdata.builder import ShardTask
    from matdata.planning import CompactPlan

#: Columns added to a record's foreground and background rows.
KEY, SRC = "_key", "_src"


def _stream(table: pa.Table) -> bytes:
    """``table`` as one Arrow IPC stream (uncompressed: records are small)."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _rows(table: pa.Table, at: np.ndarray, keys: np.ndarray, src: np.ndarray) -> pa.Table:
    """Manifest rows ``at`` of ``table`` with their plan keys and source numbers."""
    import pyarrow as pa

    from matdata.sources.base import manifest_schema

    part = table.select(manifest_schema().names).take(pa.array(at, pa.int64()))
    part = part.append_column(KEY, pa.array(keys, pa.int64()))
    return part.append_column(SRC, pa.array(src, pa.int32()))


def shard_record(plan: CompactPlan, i: int) -> tuple[bytes, bytes, bytes]:
    """The three streams of shard ``i`` of ``plan`` (see the module docstring)."""
    import pyarrow as pa

    split, index, fgs = plan._shards[i]
    used, pos = plan._used(fgs)
    fg = _rows(plan.fg_table, fgs, fgs, plan.fg_src[fgs])
    bg = _rows(plan.bg_table, pos, used, plan.bg_src[used])
    k = plan.picks.shape[1] if plan.picks.ndim == 2 else 0
    digest = plan.digests[i] if i < len(plan.digests) else plan._digest(i)
    meta = {"split": split, "index": str(index), "digest": digest}
    pairs = pa.table(
        {
            "g": pa.array(np.repeat(fgs, k), pa.int64()),
            "b": pa.array(plan.picks[fgs].reshape(-1), pa.int64()),
            "k": pa.array(np.tile(np.arange(k), len(fgs)), pa.int32()),
            "seed": pa.array(plan.seeds[fgs].reshape(-1), pa.int64()),
            "all": pa.array(np.repeat(plan.pool_all[fgs], k), pa.bool_()),
        }
    ).replace_schema_metadata(meta)
    return _stream(fg), _stream(bg), _stream(pairs)


@dataclass(eq=False)
class TaskFile(Sequence):
    """The shard tasks of a plan written by :func:`write_task_file`: small and picklable,
    ``tasks[i]`` reads, checks and parses only shard ``i``'s record."""

    path: str
    starts: np.ndarray  # (n,) int64: where each record begins
    ends: np.ndarray  # (n, 3) int64: where each of its three streams ends
    sha256: np.ndarray  # (n, 32) uint8: sha256 of each record
    splits: list[str]  # the split names the shards use
    split_of: np.ndarray  # (n,) int32: index into ``splits``
    numbers: np.ndarray  # (n,) int32: shard index within its split
    samples: np.ndarray  # (n,) int64
    fg_names: list[str]
    bg_names: list[str]
    refs: dict[str, Any]  # source name -> SourceRef
    out: str
    formats: tuple[str, ...]
    compose: dict[str, Any]
    build_seed: int
    with_ignore: bool

    def __len__(self) -> int:
        return len(self.starts)

    def info(self, i: int) -> tuple[str, int]:
        """``(name, samples)`` of task ``i`` without reading it."""
        return f"{self.splits[self.split_of[i]]}-{int(self.numbers[i]):05d}", int(self.samples[i])

    @property
    def total_samples(self) -> int:
        return int(self.samples.sum())

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._task(i, self._read(i))

    def __iter__(self) -> Iterator[ShardTask]:
        for i in range(len(self)):
            yield self[i]

    def _read(self, i: int) -> list[pa.Table]:
        """The three tables of record ``i``, after checking its length and sha256."""
        import pyarrow as pa

        from matdata.storage import open_input

        start, ends = int(self.starts[i]), [int(e) for e in self.ends[i]]
        size = ends[-1] - start
        name = self.info(i)[0]
        try:
            with open_input(self.path) as f:
                f.seek(start)
                data = f.read(size)  # bounded by the size recorded when it was written
        except FileNotFoundError:
            data = b""
        if len(data) != size or hashlib.sha256(data).digest() != self.sha256[i].tobytes():
            raise DatasetError(
                f"the build's task file {self.path} changed while it ran (shard {name})",
                hint="run only one build per --out and re-run the same command",
            )
        buf = pa.py_buffer(data)
        cuts = [0, *(e - start for e in ends)]
        return [
            pa.ipc.open_stream(buf.slice(a, b - a)).read_all()
            for a, b in zip(cuts[:-1], cuts[1:], strict=True)
        ]

    def _task(self, i: int, tables: list[pa.Table]) -> ShardTask:
        from matdata.builder import ShardTask
        from matdata.planning import table_items

        fg, bg, pairs = tables
        meta = {k.decode(): v.decode() for k, v in (pairs.schema.metadata or {}).items()}
        fgs = fg.column(KEY).to_pylist()
        used = bg.column(KEY).to_pylist()
        fg_names = {
            g: self.fg_names[s] for g, s in zip(fgs, fg.column(SRC).to_pylist(), strict=True)
        }
        bg_names = {
            b: self.bg_names[s] for b, s in zip(used, bg.column(SRC).to_pylist(), strict=True)
        }
        cols = [pairs.column(c).to_pylist() for c in ("g", "b", "k", "seed", "all")]
        t = ShardTask(
            split=meta["split"],
            index=int(meta["index"]),
            pairs=[
                (g, b, k, sd, "all" if a else "split") for g, b, k, sd, a in zip(*cols, strict=True)
            ],
            fg_items=dict(zip(fgs, table_items(fg, np.arange(len(fgs))), strict=True)),
            bg_items=dict(zip(used, table_items(bg, np.arange(len(used))), strict=True)),
            fg_names=fg_names,
            bg_names=bg_names,
            sources={n: self.refs[n] for n in sorted({*fg_names.values(), *bg_names.values()})},
            out=self.out,
            formats=self.formats,
            compose=self.compose,
            build_seed=self.build_seed,
            with_ignore=self.with_ignore,
        )
        t.digest = meta["digest"]
        return t


def write_task_file(plan: CompactPlan, path: str) -> TaskFile:
    """Write every shard's record of ``plan`` to ``path`` (atomically, one shard at a
    time: memory stays at one record) and return the :class:`TaskFile` that reads it."""
    from matdata.storage import atomic_open

    n = len(plan._shards)
    starts = np.zeros(n, dtype=np.int64)
    ends = np.zeros((n, 3), dtype=np.int64)
    sha = np.zeros((n, 32), dtype=np.uint8)
    splits: list[str] = []
    split_of = np.zeros(n, dtype=np.int32)
    numbers = np.zeros(n, dtype=np.int32)
    samples = np.zeros(n, dtype=np.int64)
    k = int(plan.picks.shape[1]) if plan.picks.ndim == 2 else 0
    pos = 0
    with atomic_open(path, "wb") as f:
        for i, (split, idx, fgs) in enumerate(plan._shards):
            parts = shard_record(plan, i)
            h = hashlib.sha256()
            starts[i] = pos
            for j, part in enumerate(parts):
                f.write(part)
                h.update(part)
                pos += len(part)
                ends[i, j] = pos
            sha[i] = np.frombuffer(h.digest(), dtype=np.uint8)
            if split not in splits:
                splits.append(split)
            split_of[i], numbers[i], samples[i] = splits.index(split), idx, len(fgs) * k
    cfg = plan.cfg
    return TaskFile(
        path=path,
        starts=starts,
        ends=ends,
        sha256=sha,
        splits=splits,
        split_of=split_of,
        numbers=numbers,
        samples=samples,
        fg_names=list(plan.fg_names),
        bg_names=list(plan.bg_names),
        refs=dict(plan.refs),
        out=cfg.out,
        formats=cfg.formats,
        compose=plan.compose,
        build_seed=cfg.seed,
        with_ignore=plan.with_ignore,
    )
