"""Compact build planning over several foreground and background sources.

What :func:`matdata.builder.prepare_build` does, without a Python object per pair or per
background, so that 34k foregrounds x K=10 over 1.8M backgrounds plans in bounded memory:

* each source is held as Arrow columns (:class:`SourceRows`): only the columns planning
  needs (``id``, ``split``, ``category``, ``io``, ``tags``...) are read from a manifest;
  the full rows of the inputs a build actually uses are fetched afterwards, one Parquet
  row group at a time;
* foregrounds are ordered by ``(source name, id)`` and backgrounds by ``(source name,
  id)``; the K backgrounds of every foreground are one row of a ``(n_fg, K)`` int64
  array of indices into the pooled backgrounds of all ``--bg`` sources;
* shard tasks (:class:`~matdata.builder.ShardTask`) are materialised on demand
  (:class:`TaskList`), one shard at a time.

Pairing of foreground ``f`` of source ``S`` (``K = per_fg``):

* the pool of ``f`` is the backgrounds, of every ``--bg`` source, in ``f``'s split; when
  no ``--bg`` source has any there, every background (``meta.bg.pool`` = ``split`` |
  ``all``);
* the generator is seeded by ``sha256("pairs", seed, S, f.id)`` - by source name and
  id, never by a position - so adding, removing or reordering other sources (of either
  role, as long as the background pool is the same) leaves ``f``'s pairs unchanged;
* without ``--bg-weights`` the K backgrounds are drawn uniformly from the pooled set
  (distinct when ``K <= |pool|``, else with replacement); with weights, the number of
  draws from each background source is multinomial with the weights (renormalised over
  the sources that have backgrounds in the pool), then uniform within each source;
* the same generator then draws the K samples' own seeds (63 bits each); sample ``k``
  has the key ``{f.id}__{b.id}__{k:03d}`` (foreground ids must be unique across
  ``--fg`` sources and background ids across ``--bg`` sources, so keys are unique).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from matdata.errors import ConfigError, SourceError
from matdata.rejects import Reject
from matdata.sources.base import Item

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from matdata.build_config import BuildConfig
    from matdata.builder import ShardTask

SPLIT_ORDER = ("train", "val", "test")
FG_COLUMNS = ("id", "role", "split", "tags", "coarse", "width", "height")
BG_COLUMNS = ("id", "role", "split", "category", "io", "tags")
DICT_COLUMNS = ("role", "split", "category")


def _codes(col: Any) -> tuple[np.ndarray, list[Any]]:
    """``(codes, values)`` of a string column (dictionary-encoded or not)."""
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], col.type)
    if not pa.types.is_dictionary(col.type):
        col = col.dictionary_encode()
    return col.indices.to_numpy(zero_copy_only=False), col.dictionary.to_pylist()


def _plain(col: Any) -> Any:
    """A dictionary-encoded column as plain values (for kernels without dictionary support)."""
    import pyarrow as pa

    if pa.types.is_dictionary(col.type):
        return col.cast(col.type.value_type)
    return col


# ------------------------------------------------------------------------ source rows


def _h64(*parts: Any) -> int:
    """A stable 63-bit integer from ``parts`` (sha256; independent of Python's hash seed)."""
    text = "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


@dataclass
class SourceRows:
    """One source of one role as Arrow columns.

    ``cols`` holds the planning columns of the source's items of ``role`` and ``rows``
    their row numbers in the manifest (or in ``table`` for on-the-fly scans);
    :meth:`fetch` returns full rows for any of them.
    """

    name: str
    kind: str
    root: str
    options: dict[str, Any]
    role: str
    manifest: str | None
    manifest_sha256: str
    rejects: list[Reject]
    rows: np.ndarray  # int64 row numbers of this role's items
    cols: pa.Table  # planning columns, aligned with ``rows``
    table: pa.Table | None = None  # every row, for on-the-fly sources

    def __len__(self) -> int:
        return len(self.rows)

    def _check_paths(self, got: pa.Table) -> None:
        """Refuse fetched rows whose image/matte path leaves the source root."""
        if self.table is not None:  # scanned now: the catalog confined the items already
            return
        from matdata.catalog import check_manifest_item

        names = [c for c in ("image", "alpha") if c in got.column_names]
        if not names or not {"id", "split"} <= set(got.column_names):
            return
        where = f"manifest {self.manifest or self.name}"
        cols = [got[c].to_pylist() for c in ("id", "split", *names)]
        for item_id, split, *paths in zip(*cols, strict=True):
            check_manifest_item(where, self.root, item_id, split, self.role, tuple(paths))

    def fetch(self, rows: np.ndarray, columns: Sequence[str] | None = None) -> pa.Table:
        """Full rows (or ``columns``) for manifest row numbers ``rows``, in that order.

        A manifest is read one row group at a time and only the groups holding a wanted
        row are read, so memory is proportional to the rows asked for."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from matdata.sources.base import manifest_schema
        from matdata.storage import open_input

        rows = np.asarray(rows, dtype=np.int64)
        schema = manifest_schema()
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns])
        if len(rows) == 0:
            return schema.empty_table()
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        if self.table is not None:
            got = self.table.select(schema.names).take(pa.array(srt))
        else:
            parts = []
            with open_input(self.manifest) as f:
                pf = pq.ParquetFile(f)
                start = 0
                for g in range(pf.metadata.num_row_groups):
                    n = pf.metadata.row_group(g).num_rows
                    lo, hi = np.searchsorted(srt, [start, start + n])
                    if hi > lo:
                        t = pf.read_row_group(g, columns=list(schema.names))
                        parts.append(t.take(pa.array(srt[lo:hi] - start)))
                    start += n
            got = pa.concat_tables(parts)
            if not got.schema.equals(schema, check_metadata=False):
                got = got.cast(schema)
        self._check_paths(got)
        if len(srt) < 2 or bool((np.diff(rows) >= 0).all()):
            return got  # asked in row order: no reordering copy
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return got.take(pa.array(inverse))


def _file_sha256(path: str) -> str:
    from matdata.storage import open_input

    h = hashlib.sha256()
    with open_input(path) as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _manifest_rows(
    name: str, manifest: str, role: str, columns: Sequence[str], rejects_file: str | None
) -> SourceRows:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from matdata.catalog import rejects_path_for
    from matdata.rejects import read_rejects
    from matdata.storage import exists, open_input

    # low-cardinality columns as dictionaries: 4 bytes a row instead of the text
    dict_cols = [c for c in DICT_COLUMNS if c in columns]
    try:
        with open_input(manifest) as f:
            pf = pq.ParquetFile(f, read_dictionary=dict_cols)
            md = pf.schema_arrow.metadata or {}
            cols = pf.read(columns=list(columns))
    except FileNotFoundError:
        raise SourceError(
            f"manifest {manifest} does not exist", hint="run `matdata ingest` first"
        ) from None
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise SourceError(f"manifest {manifest} is not a readable Parquet file: {exc}") from exc
    if b"matdata_manifest_version" not in md:
        raise SourceError(f"{manifest} is not a matdata manifest (no matdata_manifest_version)")
    meta = json.loads(md.get(b"matdata_source", b"{}"))
    mask = pc.equal(cols["role"], role).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(mask).astype(np.int64)
    roles = cols["role"]
    if len(rows) < len(mask):  # (no copy when every row has the role)
        cols = cols.filter(mask)
    rpath = rejects_file or rejects_path_for(manifest)
    rejects = read_rejects(rpath) if rpath and exists(rpath) else []
    src = SourceRows(
        name=name,
        kind=str(meta.get("kind", "")),
        root=str(meta.get("root", "")),
        options=dict(meta.get("options") or {}),
        role=role,
        manifest=manifest,
        manifest_sha256=_file_sha256(manifest),
        rejects=rejects,
        rows=rows,
        cols=cols,
    )
    _check_role(src, roles)
    _check_confined(src)
    return src


def _check_confined(src: SourceRows) -> None:
    """Refuse a manifest whose planning columns hold an invalid split, role or id (the
    values are checked once per distinct split/role, ids with one vectorised match); paths
    are checked in :meth:`SourceRows.fetch`, for the rows a build uses."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from matdata.catalog import check_manifest_item
    from matdata.sources.base import ID_RE

    where = f"manifest {src.manifest or src.name}"
    ids = src.cols["id"]
    bad = pc.invert(pc.fill_null(pc.match_substring_regex(ids, ID_RE.pattern), False))
    splits = src.cols["split"].cast(pa.string())
    ok_split = pc.fill_null(pc.match_substring_regex(splits, r"^[a-z0-9_-]{1,64}$"), False)
    bad = pc.or_(bad, pc.invert(ok_split))
    if pc.any(bad).as_py():
        i = int(np.flatnonzero(bad.to_numpy(zero_copy_only=False))[0])
        check_manifest_item(where, src.root, ids[i].as_py(), splits[i].as_py(), src.role, ())
        raise SourceError(f"{where}: malformed item {str(ids[i].as_py())[:60]!r}")


def _check_role(src: SourceRows, roles: Any) -> None:
    if len(src.rows):
        return
    have_roles = sorted(set(roles.unique().to_pylist())) if len(roles) else []
    have = (
        f"it has {len(roles)} items of role(s) {', '.join(have_roles)}"
        if len(roles)
        else "it has no usable items"
    )
    raise SourceError(
        f"source {src.name!r} has no {src.role} items ({have})",
        hint="check the source's role options or its rejects (`matdata ingest` summary)",
    )


def open_source(spec: str, role: str, options: dict[str, Any] | None = None) -> SourceRows:
    """Resolve ``spec`` like :func:`matdata.catalog.resolve_source`, as columns."""
    import pyarrow as pa

    from matdata import catalog
    from matdata.sources.base import manifest_schema

    columns = FG_COLUMNS if role == "fg" else BG_COLUMNS
    entry = catalog.lookup(spec) if spec else None
    if entry is not None:
        manifest = entry.get("manifest")
        if not manifest:
            raise SourceError(
                f"catalog entry {spec!r} has no manifest", hint="re-run `matdata ingest`"
            )
        src = _manifest_rows(spec, manifest, role, columns, entry.get("rejects"))
        src.kind = entry.get("kind", src.kind)
        src.root = entry.get("root", src.root)
        src.options = dict(entry.get("options") or src.options)
        return src
    if spec.endswith(".parquet") and catalog._split_kind(spec) is None:
        return _manifest_rows(spec, spec, role, columns, None)
    # demo, KIND:PATH (small, scanned now) - or an unknown spec (raises with its hint)
    res = catalog.resolve_source(spec, role, options)
    table = pa.Table.from_pylist([it.to_row() for it in res.items], schema=manifest_schema())
    return SourceRows(
        name=res.name,
        kind=res.kind,
        root=res.root,
        options=res.options,
        role=role,
        manifest=None,
        manifest_sha256=res.manifest_sha256,
        rejects=res.rejects,
        rows=np.arange(len(table), dtype=np.int64),
        cols=table.select(list(columns)),
        table=table,
    )


# ---------------------------------------------------------------------------- filters


def _norm_category(c: str) -> str:
    parts = [p for p in c.strip().split("/") if p]
    if len(parts) >= 2 and len(parts[0]) == 1:  # Places' /a/airfield form
        parts = parts[1:]
    return "/".join(parts)


def _tag_hits(tags: Any, wanted: Sequence[str]) -> np.ndarray:
    """Boolean per row: the row's ``tags`` list holds one of ``wanted``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = np.zeros(len(tags), dtype=bool)
    if not wanted or len(tags) == 0:
        return out
    tags = tags.combine_chunks() if hasattr(tags, "combine_chunks") else tags
    flat = pc.list_flatten(tags)
    if pa.types.is_null(flat.type):  # a source whose rows carry no tags at all
        return out
    parents = pc.list_parent_indices(tags).to_numpy(zero_copy_only=False)
    hit = pc.is_in(flat, value_set=pa.array(list(wanted), pa.string()))
    out[parents[hit.to_numpy(zero_copy_only=False)]] = True
    return out


def fg_filter(src: SourceRows, exclude_tags: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """``(keep mask, detail per dropped row)`` for ``--exclude-tag``."""
    bad = _tag_hits(src.cols["tags"], list(exclude_tags))
    excl = set(exclude_tags)
    details = []
    if bad.any():
        for tags in src.cols["tags"].take(np.flatnonzero(bad)).to_pylist():
            details.append(f"fg tag {', '.join(sorted(excl.intersection(tags or [])))}")
    return ~bad, details


def bg_filter(
    src: SourceRows, categories: Sequence[str], io: str | None
) -> tuple[np.ndarray, list[str]]:
    """``(keep mask, detail per dropped row)`` for ``--bg-category`` and ``--bg-io``.

    A background matches a category when its ``category`` is it or below it (Places), or
    when one of its ``tags`` is it (COCO records the categories present as tags)."""
    import pyarrow.compute as pc

    n = len(src)
    keep = np.ones(n, dtype=bool)
    cat_ok = np.ones(n, dtype=bool)
    cats = [_norm_category(c) for c in categories]
    if cats:
        col = pc.fill_null(_plain(src.cols["category"]), "")
        cat_ok = _tag_hits(src.cols["tags"], cats)
        for w in cats:
            cat_ok |= pc.equal(col, w).to_numpy(zero_copy_only=False)
            cat_ok |= pc.starts_with(col, w + "/").to_numpy(zero_copy_only=False)
        keep &= cat_ok
    io_ok = np.ones(n, dtype=bool)
    if io is not None:
        want = 1 if io == "indoor" else 2
        io_ok = pc.fill_null(pc.equal(src.cols["io"], want), False).to_numpy(zero_copy_only=False)
        keep &= io_ok
    details = []
    drop = np.flatnonzero(~keep)
    if len(drop):
        got_cat = src.cols["category"].take(drop).to_pylist()
        got_io = src.cols["io"].take(drop).to_pylist()
        for i, c, v in zip(drop.tolist(), got_cat, got_io, strict=True):
            if not cat_ok[i]:
                details.append(f"category {c!r} not in --bg-category")
            else:
                got = {1: "indoor", 2: "outdoor"}.get(v or 0, "unknown")
                details.append(f"{got} scene, --bg-io {io}")
    return keep, details


# ------------------------------------------------------------------------------ plan


def parse_weights(text: str | dict[str, float] | None) -> dict[str, float] | None:
    """``"places365=0.7,coco=0.3"`` -> ``{"places365": 0.7, "coco": 0.3}``."""
    if text is None or text == "" or text == {}:
        return None
    if isinstance(text, dict):
        items = list(text.items())
    else:
        items = []
        for part in str(text).split(","):
            k, sep, v = part.partition("=")
            if not sep or not k.strip():
                raise ConfigError(
                    f"bad --bg-weights {text!r}", hint="use NAME=WEIGHT,... e.g. places365=0.7"
                )
            items.append((k.strip(), v))
    out: dict[str, float] = {}
    for k, v in items:
        try:
            w = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"--bg-weights: {k}={v!r} is not a number") from None
        if not math.isfinite(w) or w < 0:
            raise ConfigError(f"--bg-weights: {k}={v!r} must be a number >= 0")
        out[k] = w
    if sum(out.values()) <= 0:
        raise ConfigError("--bg-weights are all zero", hint="give at least one weight > 0")
    return dict(sorted(out.items()))


def split_warnings(name: str, by_split: dict[str, int], fix: str, what: str = "items") -> list[str]:
    """A warning when ``val`` is empty or too small to validate (< 2 items, or < 1% of at
    least 200), naming the option that fixes it."""
    total = sum(by_split.values())
    val = by_split.get("val", 0)
    if total == 0:
        return []
    if val == 0:
        where = ", ".join(f"{n} {s}" for s, n in sorted(by_split.items()))
        return [f"{name}: no val {what} ({where}), so nothing can validate; fix: {fix}"]
    if val < max(2, total // 100):
        return [f"{name}: only {val} of {total} {what} in val, too few to validate; fix: {fix}"]
    return []


def split_fix_hint(kind: str) -> str:
    """The option that moves more of a source into ``val``."""
    from matdata.sources.base import source_class

    try:
        return getattr(source_class(kind), "split_hint", "")
    except SourceError:
        return ""
    except ImportError:  # pragma: no cover
        return ""


@dataclass
class Pools:
    """The pooled backgrounds per foreground split (global background indices)."""

    by_split: dict[str, list[tuple[int, np.ndarray]]]  # split -> [(bg source no, indices)]
    every: list[tuple[int, np.ndarray]]


def _sample(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, bool]:
    """``(k indices in [0, n), with replacement?)``: uniform, distinct when ``k <= n``."""
    if k > n:
        return rng.integers(0, n, size=k), True
    if 4 * k > n:
        return rng.permutation(n)[:k], False
    out = rng.integers(0, n, size=k)
    while len(set(out.tolist())) < k:  # rare for k << n: redraw the repeats
        seen: set[int] = set()
        for i, v in enumerate(out.tolist()):
            if v in seen:
                out[i] = rng.integers(0, n)
            seen.add(int(out[i]))
    return out, False


def draw_backgrounds(
    fg_keys: Sequence[tuple[str, str]],
    fg_splits: Sequence[str],
    pools: Pools,
    weights: Sequence[float] | None,
    per_fg: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(picks (n, K) int64, seeds (n, K) int64, pool_all (n,) bool, replaced (n,)
    bool)`` for foregrounds given by ``(source name, id)`` (rules: module docstring)."""
    n = len(fg_keys)
    picks = np.empty((n, per_fg), dtype=np.int64)
    seeds = np.empty((n, per_fg), dtype=np.int64)
    pool_all = np.zeros(n, dtype=bool)
    replaced = np.zeros(n, dtype=bool)
    cache: dict[str, tuple[list[tuple[int, np.ndarray]], np.ndarray, np.ndarray | None, bool]] = {}
    for i, ((src, fid), split) in enumerate(zip(fg_keys, fg_splits, strict=True)):
        got = cache.get(split)
        if got is None:
            parts = [(j, a) for j, a in pools.by_split.get(split, []) if len(a)]
            is_all = not parts
            if is_all:
                parts = [(j, a) for j, a in pools.every if len(a)]
            flat = np.concatenate([a for _, a in parts])
            p = None
            if weights is not None:
                w = np.array([weights[j] for j, _ in parts], dtype=np.float64)
                if w.sum() <= 0:
                    raise ConfigError(
                        f"--bg-weights give weight 0 to every background source that has "
                        f"backgrounds for split {split!r}",
                        hint="give one of them a weight > 0",
                    )
                p = w / w.sum()
            got = cache[split] = (parts, flat, p, is_all)
        parts, flat, p, is_all = got
        pool_all[i] = is_all
        rng = np.random.default_rng(_h64("pairs", seed, src, fid))
        if p is None or len(parts) == 1:
            idx, replace = _sample(rng, len(flat), per_fg)
            picks[i] = flat[idx]
        else:
            counts = rng.multinomial(per_fg, p)
            out, replace = [], False
            for (_, a), c in zip(parts, counts.tolist(), strict=True):
                if c:
                    idx, r = _sample(rng, len(a), c)
                    replace |= r
                    out.append(a[idx])
            picks[i] = np.concatenate(out)
        seeds[i] = rng.integers(0, 2**63, size=per_fg, dtype=np.int64)
        replaced[i] = replace
    return picks, seeds, pool_all, replaced


def _split_key(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def _check_unique_ids(srcs: list[SourceRows], keeps: list[np.ndarray], role: str) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(srcs) < 2:
        return
    parts = [_plain(s.cols["id"]).filter(pa.array(k)) for s, k in zip(srcs, keeps, strict=True)]
    # chunk by chunk with the type given: an emptied source must not set the type to null
    chunks = [c for p in parts for c in getattr(p, "chunks", [p])]
    ids = pa.chunked_array(chunks, type=parts[0].type)
    counts = pc.value_counts(ids)
    dup = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(dup):
        the_id = dup.field("values")[0].as_py()
        having = [s.name for s in srcs if the_id in set(s.cols["id"].to_pylist())]
        raise ConfigError(
            f"{role} id {the_id!r} is in sources {' and '.join(having)} "
            f"({len(dup)} shared id(s)): sample keys would collide",
            hint=f"use one of these --{role} sources per build, or give their files distinct names",
        )


class TaskList(Sequence):
    """The shard tasks of a plan, materialised one at a time on access."""

    def __init__(self, plan: Any):
        self._plan = plan

    def __len__(self) -> int:
        return len(self._plan._shards)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self._plan._task(j) for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._plan._task(i)

    def __iter__(self) -> Iterator[ShardTask]:
        for i in range(len(self)):
            yield self._plan._task(i)

    def info(self, i: int) -> tuple[str, int]:
        """``(name, samples)`` of task ``i`` without materialising it (for the runner,
        which submits tasks by index and lets the workers materialise them)."""
        split, index, fgs = self._plan._shards[i]
        k = int(self._plan.picks.shape[1]) if self._plan.picks.ndim == 2 else 0
        return f"{split}-{index:05d}", len(fgs) * k

    @property
    def total_samples(self) -> int:
        """Sum of every task's ``samples`` (K per foreground of each shard), without
        materialising the tasks."""
        k = int(self._plan.picks.shape[1]) if self._plan.picks.ndim == 2 else 0
        return sum(len(fgs) for _, _, fgs in self._plan._shards) * k

    def to_file(self, path: str) -> Any:  # -> matdata.taskfile.TaskFile
        """Write the tasks to ``path``, shard by shard, and return the small sequence that
        reads them back one shard at a time (what the runner ships to the workers)."""
        from matdata.taskfile import write_task_file

        return write_task_file(self._plan, path)


class CompactPlan:
    """The pairs of a build as arrays, and how to turn them into shard tasks."""

    def __init__(
        self,
        cfg: BuildConfig,
        fg_names: list[str],
        fg_src: np.ndarray,  # (n_fg,) int: index into fg_names
        fg_table: pa.Table,  # full rows of the foregrounds, global order
        picks: np.ndarray,  # (n_fg, K) global background indices
        seeds: np.ndarray,  # (n_fg, K) sample seeds
        pool_all: np.ndarray,
        bg_names: list[str],
        bg_src: np.ndarray,  # (n_bg,) int: index into bg_names
        bg_used: np.ndarray,  # sorted global indices of the backgrounds used
        bg_rowpos: np.ndarray,  # row in bg_table of each of bg_used
        bg_table: pa.Table,  # full rows of bg_used
        shards: list[tuple[str, int, np.ndarray]],  # (split, index, global fg indices)
        refs: dict[str, Any],  # source name -> SourceRef
        with_ignore: bool,
    ):
        self.cfg = cfg
        self.fg_names, self.fg_src, self.fg_table = fg_names, fg_src, fg_table
        self.picks, self.seeds, self.pool_all = picks, seeds, pool_all
        self.bg_rowpos = bg_rowpos
        self.bg_names, self.bg_src, self.bg_used, self.bg_table = (
            bg_names,
            bg_src,
            bg_used,
            bg_table,
        )
        self._shards = shards
        self.refs = refs
        self.with_ignore = with_ignore
        self.compose = cfg.compose_config().to_dict()
        self.digests: list[str] = []

    def _used(self, fgs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(used bgs, their rows in bg_table)`` of the foregrounds ``fgs``."""
        used = np.unique(self.picks[fgs])
        return used, self.bg_rowpos[np.searchsorted(self.bg_used, used)]

    def _pairs(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple]]:
        """``(fgs, used bgs, their rows in bg_table, pairs)`` of shard ``i``."""
        split, index, fgs = self._shards[i]
        picks = self.picks[fgs]
        used, pos = self._used(fgs)
        pairs = []
        for g, row, srow in zip(
            fgs.tolist(), picks.tolist(), self.seeds[fgs].tolist(), strict=True
        ):
            pool = "all" if self.pool_all[g] else "split"
            for k, (b, sd) in enumerate(zip(row, srow, strict=True)):
                pairs.append((g, b, k, sd, pool))
        return fgs, used, pos, pairs

    def _names(self, fgs: np.ndarray, used: np.ndarray) -> tuple[dict, dict]:
        fg_names = {int(g): self.fg_names[self.fg_src[g]] for g in fgs.tolist()}
        bg_names = {int(b): self.bg_names[self.bg_src[b]] for b in used.tolist()}
        return fg_names, bg_names

    def _digest(self, i: int) -> str:
        """The shard's :func:`~matdata.builder.task_digest`, from columns (no Items)."""
        from types import SimpleNamespace

        from matdata.builder import shard_digest

        split, index, fgs = self._shards[i]
        used, pos = self._used(fgs)
        fg_names, bg_names = self._names(fgs, used)

        def _col(table: Any, name: str, keys: np.ndarray, at: np.ndarray) -> dict:
            return dict(zip(keys.tolist(), table.column(name).take(at).to_pylist(), strict=True))

        f_id = _col(self.fg_table, "id", fgs, fgs)
        f_sha = _col(self.fg_table, "sha256", fgs, fgs)
        b_id = _col(self.bg_table, "id", used, pos)
        b_sha = _col(self.bg_table, "sha256", used, pos)

        def rows() -> Iterator[list[Any]]:  # streamed: one foreground's K rows at a time
            for g in fgs.tolist():
                pool = "all" if self.pool_all[g] else "split"
                head = (fg_names[g], f_id[g], f_sha[g])
                row, srow = self.picks[g].tolist(), self.seeds[g].tolist()
                for k, (b, sd) in enumerate(zip(row, srow, strict=True)):
                    yield [head[0], bg_names[b], head[1], head[2], b_id[b], b_sha[b], k, sd, pool]

        names = sorted({*fg_names.values(), *bg_names.values()})
        kinds = [[n, self.refs[n].kind] for n in names]
        head = SimpleNamespace(
            split=split,
            index=index,
            formats=self.cfg.formats,
            compose=self.compose,
            build_seed=self.cfg.seed,
            with_ignore=self.with_ignore,
        )
        return shard_digest(head, kinds, rows())

    def digest_all(self) -> str:
        """Compute every shard's digest (kept in ``digests``); the plan's sha256 over them."""
        plan_hash = hashlib.sha256()
        for i in range(len(self._shards)):
            d = self._digest(i)
            self.digests.append(d)
            plan_hash.update(d.encode())
        return plan_hash.hexdigest()

    def _task(self, i: int) -> ShardTask:
        from matdata.builder import ShardTask, task_digest

        split, index, _ = self._shards[i]
        cfg = self.cfg
        fgs, used, pos, pairs = self._pairs(i)
        fg_names, bg_names = self._names(fgs, used)
        fg_items = dict(zip(fgs.tolist(), table_items(self.fg_table, fgs), strict=True))
        bg_items = dict(zip(used.tolist(), table_items(self.bg_table, pos), strict=True))
        t = ShardTask(
            split=split,
            index=index,
            pairs=pairs,
            fg_items=fg_items,
            bg_items=bg_items,
            fg_names=fg_names,
            bg_names=bg_names,
            sources={n: self.refs[n] for n in sorted({*fg_names.values(), *bg_names.values()})},
            out=cfg.out,
            formats=cfg.formats,
            compose=self.compose,
            build_seed=cfg.seed,
            with_ignore=self.with_ignore,
        )
        t.digest = self.digests[i] if i < len(self.digests) else task_digest(t)
        return t


def table_items(table: pa.Table, rows: np.ndarray) -> list[Item]:
    """:class:`Item` objects of manifest ``rows`` of ``table`` (column by column)."""
    import pyarrow as pa

    from matdata.sources.base import manifest_schema

    names = manifest_schema().names
    part = table.take(pa.array(rows))
    cols = [part.column(n).to_pylist() for n in names]
    i_tags = names.index("tags")
    out = []
    for vals in zip(*cols, strict=True):
        kw = dict(zip(names, vals, strict=True))
        kw["tags"] = tuple(vals[i_tags] or ())
        out.append(Item(**kw))
    return out


def plan_build(cfg: BuildConfig) -> Any:  # -> matdata.builder.BuildPlan
    """Resolve the sources, filter, pair and shard (see the module docstring)."""
    from matdata.builder import BuildPlan

    fgs, bgs = _open_sources(cfg)
    weights = _bg_weight_list(cfg.bg_weights, bgs)
    acct, rejects = _ingest_accounting(fgs, bgs)
    fg_keep = [
        _record_filtered(src, *fg_filter(src, cfg.exclude_tags), acct, rejects) for src in fgs
    ]
    bg_keep = [
        _record_filtered(src, *bg_filter(src, cfg.bg_categories, cfg.bg_io), acct, rejects)
        for src in bgs
    ]
    _check_some_left(cfg, fgs, bgs, fg_keep, bg_keep, acct)
    _check_unique_ids(fgs, fg_keep, "fg")
    _check_unique_ids(bgs, bg_keep, "bg")

    bg = _order_backgrounds(bgs, bg_keep)
    fg = _order_foregrounds(fgs, fg_keep)
    picks, seeds, pool_all, replaced = draw_backgrounds(
        fg.keys, fg.splits, bg.pools, weights, cfg.per_fg, cfg.seed
    )
    n_repl, n_all = int(replaced.sum()), int(pool_all.sum())
    warnings = fg.warnings + _draw_warnings(cfg.per_fg, n_repl, n_all)
    fg_table = _fetch_foregrounds(fgs, fg.pos)
    bg_used, bg_rowpos, bg_table = _fetch_used_backgrounds(bgs, bg.pos, picks)
    shards, per_shard = _shard_foregrounds(cfg, fg.splits, fg.mean_px)

    compact = CompactPlan(
        cfg,
        [s.name for s in fgs],
        fg.src,
        fg_table,
        picks,
        seeds,
        pool_all,
        [s.name for s in bgs],
        bg.src,
        bg_used,
        bg_rowpos,
        bg_table,
        shards,
        _source_refs(fgs, bgs),
        _any_coarse(fgs, fg_keep),
    )
    plan_sha256 = compact.digest_all()
    sources = {
        "fg": [_source_info(s, "fg") for s in fgs],
        "bg": [_source_info(s, "bg") for s in bgs],
    }
    return BuildPlan(
        config=cfg,
        tasks=TaskList(compact),
        sources=sources,
        rejects=rejects,
        accounting=acct,
        warnings=warnings,
        samples_per_shard=per_shard,
        with_replacement=n_repl,
        bg_pool_all=n_all,
        plan_sha256=plan_sha256,
        compact=compact,
    )


def _open_sources(cfg: BuildConfig) -> tuple[list[SourceRows], list[SourceRows]]:
    """The ``--fg`` and ``--bg`` sources, each role ordered by name; a name given twice
    in one role is refused."""
    fgs = sorted((open_source(s, "fg", cfg.fg_options) for s in cfg.fg), key=lambda s: s.name)
    bgs = sorted((open_source(s, "bg", cfg.bg_options) for s in cfg.bg), key=lambda s: s.name)
    for role, srcs in (("fg", fgs), ("bg", bgs)):
        names = [s.name for s in srcs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"--{role} {dup[0]} is given twice", hint="give each source once")
    return fgs, bgs


def _bg_weight_list(
    bg_weights: dict[str, float] | None, bgs: list[SourceRows]
) -> list[float] | None:
    """``--bg-weights`` as one weight per background source (in ``bgs`` order), or None;
    a weight for an unknown source or a source without a weight is refused."""
    if not bg_weights:
        return None
    known = {s.name for s in bgs}
    unknown = sorted(set(bg_weights) - known)
    if unknown:
        raise ConfigError(
            f"--bg-weights names {', '.join(unknown)}, not a --bg source",
            hint=f"weights are per --bg source: {', '.join(sorted(known))}",
        )
    missing = sorted(known - set(bg_weights))
    if missing:
        raise ConfigError(
            f"--bg-weights has no weight for {', '.join(missing)}",
            hint="give every --bg source a weight (0 leaves one out)",
        )
    return [bg_weights[s.name] for s in bgs]


def _ingest_accounting(
    fgs: list[SourceRows], bgs: list[SourceRows]
) -> tuple[dict[str, dict[str, int]], list[Reject]]:
    """``(accounting per source name, the ingest rejects)``: ``found`` counts the items of
    every role a source is used in, plus its ingest rejects, which count once per name."""
    acct: dict[str, dict[str, int]] = {}
    rejects: list[Reject] = []
    for src in (*fgs, *bgs):
        a = acct.setdefault(src.name, {"found": 0, "ingest_rejected": 0, "filtered": 0})
        a["found"] += len(src)
    seen: set[str] = set()
    for src in (*fgs, *bgs):
        if src.name in seen:
            continue
        seen.add(src.name)
        acct[src.name]["found"] += len(src.rejects)
        acct[src.name]["ingest_rejected"] += len(src.rejects)
        rejects += src.rejects
    return acct, rejects


def _record_filtered(
    src: SourceRows,
    keep: np.ndarray,
    details: list[str],
    acct: dict[str, dict[str, int]],
    rejects: list[Reject],
) -> np.ndarray:
    """Record the rows a filter drops as ``filtered`` rejects and in ``acct``; ``keep``."""
    drop = np.flatnonzero(~keep)
    if len(drop):
        paths = src.fetch(src.rows[drop], ["image"])["image"].to_pylist()
        for p, d in zip(paths, details, strict=True):
            rejects.append(Reject(src.name, p, "filtered", d, "build"))
        acct[src.name]["filtered"] += len(drop)
    return keep


def _check_some_left(
    cfg: BuildConfig,
    fgs: list[SourceRows],
    bgs: list[SourceRows],
    fg_keep: list[np.ndarray],
    bg_keep: list[np.ndarray],
    acct: dict[str, dict[str, int]],
) -> None:
    """Refuse a build that the filters left without foregrounds or backgrounds."""
    if not sum(int(k.sum()) for k in fg_keep):
        total = sum(len(s) for s in fgs)
        filt = sum(acct[s.name]["filtered"] for s in fgs)
        raise ConfigError(
            f"no usable foregrounds in {', '.join(cfg.fg)!r} ({total} items, {filt} filtered)",
            hint="check --fg and --exclude-tag",
        )
    if not sum(int(k.sum()) for k in bg_keep):
        total = sum(len(s) for s in bgs)
        raise ConfigError(
            f"no background left in {', '.join(cfg.bg)!r} after filters ({total} items)",
            hint="relax --bg-category / --bg-io",
        )


def _global_order(src: SourceRows, keep: np.ndarray) -> np.ndarray:
    """The kept local positions of ``src`` in id order (the plan's global order is
    ``(source name, id)``; positions are local to this plan only)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if keep.all():  # (no copy of the ids)
        return pc.sort_indices(src.cols["id"]).to_numpy().astype(np.int64)
    idx = np.flatnonzero(keep)
    ids = src.cols["id"].take(pa.array(idx))
    return idx[pc.sort_indices(ids).to_numpy()]


@dataclass
class _Backgrounds:
    """The kept backgrounds in global order."""

    pos: list[np.ndarray]  # per bg source: local positions in global order
    src: np.ndarray  # (n_bg,) int32: source number of each global background
    pools: Pools


def _order_backgrounds(bgs: list[SourceRows], bg_keep: list[np.ndarray]) -> _Backgrounds:
    """Number the kept backgrounds globally and pool them by split."""
    bg_pos: list[np.ndarray] = []
    bg_src_l: list[np.ndarray] = []
    pools_by_split: dict[str, list[tuple[int, np.ndarray]]] = {}
    every: list[tuple[int, np.ndarray]] = []
    base = 0
    for j, (src, keep) in enumerate(zip(bgs, bg_keep, strict=True)):
        order = _global_order(src, keep)
        bg_pos.append(order)
        bg_src_l.append(np.full(len(order), j, dtype=np.int32))
        glob = np.arange(base, base + len(order), dtype=np.int64)
        codes, values = _codes(src.cols["split"])
        codes = codes[order]
        for c, sp in sorted(enumerate(values), key=lambda cv: _split_key(cv[1])):
            members = glob[codes == c]
            if len(members):
                pools_by_split.setdefault(sp, []).append((j, members))
        every.append((j, glob))
        base += len(order)
    return _Backgrounds(bg_pos, np.concatenate(bg_src_l), Pools(pools_by_split, every))


@dataclass
class _Foregrounds:
    """The kept foregrounds in global order."""

    pos: list[np.ndarray]  # per fg source: local positions in global order
    src: np.ndarray  # (n_fg,) int32: source number of each global foreground
    keys: list[tuple[str, str]]  # (source name, id)
    splits: list[str]
    mean_px: float  # mean width x height (sizes the shards)
    warnings: list[str]  # per source: empty or tiny val split


def _order_foregrounds(fgs: list[SourceRows], fg_keep: list[np.ndarray]) -> _Foregrounds:
    """Number the kept foregrounds globally, with their keys, splits and mean size."""
    import pyarrow as pa

    fg_pos, fg_src_l, keys, fsplits, warnings = [], [], [], [], []
    px_sum, n_px = 0.0, 0
    for i, (src, keep) in enumerate(zip(fgs, fg_keep, strict=True)):
        order = _global_order(src, keep)
        fg_pos.append(order)
        fg_src_l.append(np.full(len(order), i, dtype=np.int32))
        at = pa.array(order)
        ids = src.cols["id"].take(at).to_pylist()
        keys.extend((src.name, fid) for fid in ids)
        splits = src.cols["split"].take(at).to_pylist()
        fsplits.extend(splits)
        w = src.cols["width"].take(at).to_numpy().astype(np.float64)
        h = src.cols["height"].take(at).to_numpy().astype(np.float64)
        px_sum += float((w * h).sum())
        n_px += len(order)
        hint = split_fix_hint(src.kind) or "re-ingest it with more groups in val"
        warnings += split_warnings(f"--fg {src.name}", Counter(splits), hint, "foregrounds")
    return _Foregrounds(
        pos=fg_pos,
        src=np.concatenate(fg_src_l),
        keys=keys,
        splits=fsplits,
        mean_px=px_sum / n_px if n_px else 512 * 512,
        warnings=warnings,
    )


def _draw_warnings(per_fg: int, n_repl: int, n_all: int) -> list[str]:
    """Warnings on foregrounds whose split has too few backgrounds, or none."""
    warnings = []
    if n_repl:
        warnings.append(
            f"--per-fg {per_fg} is more than the backgrounds available to {n_repl} "
            "foreground(s) in their split: their backgrounds are drawn with replacement"
        )
    if n_all:
        warnings.append(
            f"{n_all} foreground(s) have no background in their split: drawn from all splits"
        )
    return warnings


def _fetch_foregrounds(fgs: list[SourceRows], fg_pos: list[np.ndarray]) -> pa.Table:
    """Full rows of every kept foreground, in global order."""
    import pyarrow as pa

    fg_parts = [
        src.fetch(src.rows[order]) for src, order in zip(fgs, fg_pos, strict=True) if len(order)
    ]
    return pa.concat_tables(fg_parts)


def _fetch_used_backgrounds(
    bgs: list[SourceRows], bg_pos: list[np.ndarray], picks: np.ndarray
) -> tuple[np.ndarray, np.ndarray, pa.Table]:
    """``(used, rowpos, table)``: the sorted global indices of the backgrounds drawn, the
    row of each in ``table``, and their full rows (read in manifest order per source)."""
    import pyarrow as pa

    bg_used = np.unique(picks)
    offsets = np.cumsum([0] + [len(o) for o in bg_pos])
    bg_parts = []
    bg_rowpos = np.empty(len(bg_used), dtype=np.int64)  # used bg -> its row in bg_table
    n_rows = 0
    for j, (src, order) in enumerate(zip(bgs, bg_pos, strict=True)):
        lo, hi = np.searchsorted(bg_used, [offsets[j], offsets[j + 1]])
        if hi > lo:
            rows = src.rows[order[bg_used[lo:hi] - offsets[j]]]
            by_row = np.argsort(rows, kind="stable")  # fetched in manifest order (no copy)
            rank = np.empty_like(by_row)
            rank[by_row] = np.arange(len(by_row))
            bg_rowpos[lo:hi] = n_rows + rank
            bg_parts.append(src.fetch(rows[by_row]))
            n_rows += hi - lo
    return bg_used, bg_rowpos, pa.concat_tables(bg_parts)


def _any_coarse(fgs: list[SourceRows], fg_keep: list[np.ndarray]) -> bool:
    """Whether a kept foreground is coarse (then every record gets an ignore mask)."""
    return bool(
        any(
            bool(np.asarray(s.cols["coarse"].to_numpy(zero_copy_only=False))[k].any())
            for s, k in zip(fgs, fg_keep, strict=True)
        )
    )


def _shard_foregrounds(
    cfg: BuildConfig, fsplits: list[str], mean_px: float
) -> tuple[list[tuple[str, int, np.ndarray]], dict[str, int]]:
    """``(shards, samples per shard by split)``: whole foregrounds per shard, splits in
    order, global (source, id) order within a split."""
    from matdata.builder import bytes_per_sample_px, shard_samples

    by_size = max(1, math.floor(cfg.shard_size / bytes_per_sample_px(cfg, mean_px)))
    split_of = np.array(fsplits, dtype=object)
    shards: list[tuple[str, int, np.ndarray]] = []
    per_shard: dict[str, int] = {}
    for sp in sorted(set(fsplits), key=_split_key):
        members = np.flatnonzero(split_of == sp)
        n_samples = len(members) * cfg.per_fg
        per_shard[sp] = cfg.samples_per_shard or shard_samples(n_samples, by_size)
        m = max(1, per_shard[sp] // cfg.per_fg)
        for n, lo in enumerate(range(0, len(members), m)):
            shards.append((sp, n, members[lo : lo + m]))
    return shards, per_shard


def _source_refs(fgs: list[SourceRows], bgs: list[SourceRows]) -> dict[str, Any]:
    """Source name -> :class:`~matdata.builder.SourceRef` (what a shard task reopens)."""
    from matdata.builder import SourceRef

    return {s.name: SourceRef(s.name, s.kind, s.root, dict(s.options)) for s in (*fgs, *bgs)}


def _source_info(src: SourceRows, role: str) -> dict[str, Any]:
    return {
        "role": role,
        "name": src.name,
        "kind": src.kind,
        "root": src.root,
        "options": src.options,
        "manifest": src.manifest,
        "manifest_sha256": src.manifest_sha256,
        "items": len(src),
        "ingest_rejects": len(src.rejects),
    }
