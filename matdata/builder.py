"""Shard tasks and the per-shard generator of a build (no Dask here: see
``pipelines/build.py``; the options and their parsers are in :mod:`matdata.build_config`).

A build turns foreground items (with alpha) of one or more ``--fg`` sources and
background items of one or more ``--bg`` sources into composites:

1. :func:`prepare_build` resolves every ``--fg`` / ``--bg`` source, applies the filters
   and plans the samples compactly (:mod:`matdata.planning`: arrays of pairs, shard
   tasks materialised on demand).  The plan depends only on the items, the options and
   ``--seed``, never on the number of workers.
2. :func:`run_shard` (one call per shard, on any worker) loads the items through their
   :class:`~matdata.sources.base.Source`, estimates the foreground colours once per
   foreground (a shard holds whole foregrounds: all K pairs of each), composites,
   encodes each sample to a :class:`~matdata.schema.Record`, writes the shard atomically
   (:class:`~matdata.shards.ShardWriter`) and then its completion marker
   ``DIR/.parts/SPLIT-NNNNN.json``.

The pairing rules (pools, seeds keyed by source name and id, ``--bg-weights``) are in
:mod:`matdata.planning`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from matdata.build_config import BuildConfig
from matdata.errors import MatdataError
from matdata.rejects import Reject
from matdata.schema import SCHEMA_VERSION, Record, conform_meta
from matdata.sources.base import Item, safe_id

if TYPE_CHECKING:
    from matdata.compose import Composite

SPLIT_ORDER = ("train", "val", "test")
#: Pair tuple: (fg index, bg index, k, sample seed, bg pool "split"|"all").
Pair = tuple[int, int, int, int, str]


# ------------------------------------------------------------------------------- plan


def sample_key(fg_id: str, bg_id: str, k: int) -> str:
    """Deterministic record key ``{fg}__{bg}__{k:03d}`` in the ``[A-Za-z0-9_-]`` alphabet."""
    return f"{safe_id(fg_id)}__{safe_id(bg_id)}__{k:03d}"


def bytes_per_sample_px(cfg: BuildConfig, fg_px: float) -> int:
    """Rough encoded size of one sample (per format) used to turn ``--shard-size`` into a
    sample count: JPEG ~0.35 B/px at quality >= 90 (0.2 at >= 75, else 0.12), PNG masks
    ~0.06 B/px, plus 2 KB of meta and headers; ``fg_px`` (mean foreground pixels) is the
    size of a native-size sample.  Use ``--samples-per-shard`` to be exact."""
    px = cfg.size[0] * cfg.size[1] if cfg.size is not None else fg_px
    q = cfg.jpeg_quality
    jpeg = 0.35 if q >= 90 else 0.2 if q >= 75 else 0.12
    n_jpeg = 1 + (2 if cfg.keep_layers else 0)
    n_png = 1 + int(cfg.trimap) + 1  # alpha, trimap, (ignore, counted conservatively)
    return int(px * (jpeg * n_jpeg + 0.06 * n_png) + 2048)


#: Without --samples-per-shard, a split is cut into at least MIN_SHARDS shards (so that
#: small builds still run in parallel) unless shards would fall below MIN_SHARD_SAMPLES.
MIN_SHARDS = 8
MIN_SHARD_SAMPLES = 16


def shard_samples(n: int, by_size: int) -> int:
    """Samples per shard for a split of ``n`` samples: ``by_size`` (from ``--shard-size``),
    lowered to ``ceil(n / MIN_SHARDS)`` but not below ``MIN_SHARD_SAMPLES``.  Depends only
    on the plan, never on the number of workers (byte-identical output for any cluster)."""
    return max(1, min(by_size, max(MIN_SHARD_SAMPLES, math.ceil(n / MIN_SHARDS))))


@dataclass(frozen=True)
class SourceRef:
    """What a worker needs to rebuild a source object and to label provenance."""

    name: str
    kind: str
    root: str
    options: dict[str, Any]

    def make(self):  # -> Source
        from matdata.sources.base import make_source

        return make_source(self.kind, self.root, **self.options)


@dataclass
class ShardTask:
    """One shard: its place, its pairs and the items they use (self-contained, picklable)."""

    split: str
    index: int
    pairs: list[Pair]
    fg_items: dict[int, Item]
    bg_items: dict[int, Item]
    fg_names: dict[int, str]  # fg index -> source name
    bg_names: dict[int, str]  # bg index -> source name
    sources: dict[str, SourceRef]  # name -> source, for every source of the shard
    out: str
    formats: tuple[str, ...]
    compose: dict[str, Any]  # ComposeConfig.to_dict()
    build_seed: int
    with_ignore: bool
    digest: str = ""  # sha256 of what determines the shard's bytes

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:05d}"

    @property
    def samples(self) -> int:
        return len(self.pairs)


@dataclass
class BuildPlan:
    """Everything :func:`pipelines.build.run_build` needs, computed without any pixels."""

    config: BuildConfig
    tasks: list[ShardTask]
    sources: dict[str, Any]  # for dataset.json
    rejects: list[Reject]  # ingest rejects + filtered inputs (build failures come later)
    accounting: dict[str, dict[str, int]]  # per source name: found / ingest / filtered
    warnings: list[str]
    samples_per_shard: dict[str, int]  # per split
    with_replacement: int  # foregrounds whose K backgrounds were drawn with replacement
    bg_pool_all: int  # foregrounds whose pool was the whole bg set (no bg in their split)
    plan_sha256: str
    compact: Any = None  # matdata.planning.CompactPlan: the pairs as arrays

    @property
    def samples(self) -> int:
        if self.compact is not None:
            return int(self.compact.picks.size)
        return sum(t.samples for t in self.tasks)

    def shard_names(self) -> list[str]:
        """``SPLIT-NNNNN`` of every shard, without materialising the tasks."""
        if self.compact is not None:
            return [f"{split}-{index:05d}" for split, index, _ in self.compact._shards]
        return [t.name for t in self.tasks]

    def split_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        if self.compact is not None:
            for split, _, fgs in self.compact._shards:
                out[split] = out.get(split, 0) + len(fgs) * self.config.per_fg
            return out
        for t in self.tasks:
            out[t.split] = out.get(t.split, 0) + t.samples
        return out


def prepare_build(cfg: BuildConfig) -> BuildPlan:
    """Resolve the sources, filter, pair and shard (:func:`matdata.planning.plan_build`)."""
    from matdata.planning import plan_build

    return plan_build(cfg)


def task_digest(t: ShardTask) -> str:
    """sha256 of everything that determines a shard's bytes (not the output location)."""
    rows = [
        [
            t.fg_names[p[0]],
            t.bg_names[p[1]],
            t.fg_items[p[0]].id,
            t.fg_items[p[0]].sha256,
            t.bg_items[p[1]].id,
            t.bg_items[p[1]].sha256,
            p[2],
            p[3],
            p[4],
        ]
        for p in t.pairs
    ]
    kinds = sorted([n, s.kind] for n, s in t.sources.items())
    return shard_digest(t, kinds, rows)


def shard_digest(t: Any, kinds: list[list[str]], rows: Iterable[list[Any]]) -> str:
    """The digest of :func:`task_digest` from its parts: ``t`` gives split, index,
    formats, compose, build_seed and with_ignore; ``rows`` one list per pair (fg source,
    bg source, fg id, fg sha256, bg id, bg sha256, k, seed, pool)."""
    head = {
        "schema": SCHEMA_VERSION,
        "split": t.split,
        "index": t.index,
        "formats": list(t.formats),
        "compose": t.compose,
        "seed": t.build_seed,
        "ignore": t.with_ignore,
        "sources": kinds,
    }
    h = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    # one tab-separated line per pair (names and ids have no tabs or newlines), streamed
    batch: list[str] = []
    for r in rows:
        batch.append("\t".join(map(str, r)) + "\n")
        if len(batch) >= 4096:
            h.update("".join(batch).encode())
            batch = []
    h.update("".join(batch).encode())
    return h.hexdigest()


# -------------------------------------------------------------------------- generation


def _item_meta(item: Item, source: str) -> dict[str, Any]:
    return {
        "source": source,
        "kind": item.source,
        "id": item.id,
        "sha256": item.sha256,
        "split": item.split,
        "group": item.group,
        "size": [item.width, item.height],
    }


def generate_records(
    task: ShardTask, sources: dict[str, Any] | None = None
) -> Iterator[Record | Reject]:
    """Yield a :class:`Record` per planned sample, or a :class:`Reject` for an input that
    failed to load (its samples are skipped).  Foreground colours are estimated once per
    run of pairs sharing a foreground; the last few backgrounds are cached.  ``sources``
    (name -> Source object) defaults to the task's sources, built once each."""
    from matdata.compose import ComposeConfig, compose_sample, rgba_layer
    from matdata.foreground import estimate_foreground

    cfg = ComposeConfig.from_dict(task.compose)
    made: dict[str, Any] = dict(sources or {})

    def _src(name: str) -> Any:
        if name not in made:
            made[name] = task.sources[name].make()
        return made[name]

    cur_fg: int | None = None
    fg_data: tuple[np.ndarray, np.ndarray, np.ndarray | None, bool, np.ndarray] | None = None
    bad_fg: set[int] = set()
    bad_bg: set[int] = set()
    bg_cache: OrderedDict[int, np.ndarray] = OrderedDict()
    for fi, bi, k, sseed, pool in task.pairs:
        fitem, bitem = task.fg_items[fi], task.bg_items[bi]
        fname, bname = task.fg_names[fi], task.bg_names[bi]
        if fi in bad_fg:
            continue
        if fi != cur_fg:
            cur_fg, fg_data = fi, None
            try:
                fgl = _src(fname).load_foreground(fitem)
            except INPUT_ERRORS as exc:  # one bad input is a reject, never a failed shard
                bad_fg.add(fi)
                yield _reject(fname, fitem, exc)
                continue
            colors = estimate_foreground(fgl.rgb, fgl.alpha, cfg.fg_estimator)
            rgba = rgba_layer(colors, fgl.alpha)  # colours + alpha resized in one pass
            fg_data = (colors, fgl.alpha, fgl.ignore, bool(fgl.coarse or fitem.coarse), rgba)
        if bi in bad_bg:
            continue
        bg = bg_cache.get(bi)
        if bg is None:
            try:
                bg = _src(bname).load_background(bitem)
            except INPUT_ERRORS as exc:
                bad_bg.add(bi)
                yield _reject(bname, bitem, exc)
                continue
            bg_cache[bi] = bg
            if len(bg_cache) > 8:
                bg_cache.popitem(last=False)
        else:
            bg_cache.move_to_end(bi)
        assert fg_data is not None
        colors, alpha, ignore, coarse, rgba = fg_data
        if task.with_ignore and ignore is None:
            ignore = np.zeros_like(alpha)
        rng = np.random.default_rng(sseed)
        comp = compose_sample(colors, alpha, bg, rng, cfg, ignore, fg_rgba=rgba)
        meta = _sample_meta(task, (fname, fitem), (bname, bitem), k, sseed, pool, coarse, comp)
        yield _encode_record(sample_key(fitem.id, bitem.id, k), comp, meta, cfg.jpeg_quality)


def _sample_meta(
    task: ShardTask,
    fg: tuple[str, Item],
    bg: tuple[str, Item],
    k: int,
    seed: int,
    pool: str,
    coarse: bool,
    comp: Composite,
) -> dict[str, Any]:
    """One record's provenance (schema 2: every key present, null when not applied)."""
    (fname, fitem), (bname, bitem) = fg, bg
    bmeta = _item_meta(bitem, bname)
    bmeta.update(category=bitem.category, io=bitem.io, pool=pool)
    if bitem.tags:  # e.g. the COCO categories present
        bmeta["tags"] = list(bitem.tags)
    fmeta = _item_meta(fitem, fname)
    fmeta.update(coarse=coarse, tags=list(fitem.tags))
    meta = {
        "schema_version": SCHEMA_VERSION,
        "split": task.split,
        "fg": fmeta,
        "bg": bmeta,
        "k": k,
        "seed": seed,
        "build_seed": task.build_seed,
        "coarse": coarse,
        "compose": task.compose,
        "params": comp.params,
    }
    return conform_meta(meta)


def _encode_record(key: str, comp: Composite, meta: dict[str, Any], quality: int) -> Record:
    """The composite's layers encoded: JPEG for colour, PNG for masks; absent layers None."""
    from matdata.imageio import encode_jpeg, encode_png

    def jpeg(a: np.ndarray | None) -> bytes | None:
        return None if a is None else encode_jpeg(a, quality)

    def png(a: np.ndarray | None) -> bytes | None:
        return None if a is None else encode_png(a)

    return Record(
        key=key,
        image=encode_jpeg(comp.image, quality),
        alpha=encode_png(comp.alpha),
        fg=jpeg(comp.fg),
        bg=jpeg(comp.bg),
        trimap=png(comp.trimap),
        ignore=png(comp.ignore),
        meta=meta,
    )


#: What a bad input raises: the typed errors of the I/O edge (``imageio`` turns every decoder
#: failure into :class:`~matdata.errors.ImageDecodeError`; sources raise ``ItemError`` /
#: ``SourceError`` for what they validate).  Only these become rejects; anything else
#: raised while loading is a coding error and fails the shard (and the build) loudly.
INPUT_ERRORS = (MatdataError,)


def _reject(source: str, item: Item, exc: MatdataError) -> Reject:
    return Reject(source, item.image, exc.reason, getattr(exc, "detail", "") or str(exc), "build")


@dataclass
class ShardResult:
    """What a shard task returns to the driver (small: no pixels)."""

    split: str
    index: int
    digest: str
    shards: list[Any]  # list[ShardInfo]
    rejects: list[Reject]
    samples: int
    seconds: float
    skipped: bool = False  # True when found complete on disk (resume)
    peak_rss_mb: float = 0.0  # peak resident memory of the worker process so far (not stored)
    by_source: dict[str, int] = field(default_factory=dict)  # "fg/NAME" | "bg/NAME" -> samples

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "index": self.index,
            "digest": self.digest,
            "shards": [s.to_dict() for s in self.shards],
            "rejects": [r.to_dict() for r in self.rejects],
            "samples": self.samples,
            "seconds": self.seconds,
            "by_source": dict(sorted(self.by_source.items())),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], skipped: bool = False) -> ShardResult:
        from matdata.shards import ShardInfo

        return cls(
            split=d["split"],
            index=int(d["index"]),
            digest=d["digest"],
            shards=[ShardInfo.from_dict(s) for s in d["shards"]],
            rejects=[Reject(**r) for r in d["rejects"]],
            samples=int(d["samples"]),
            seconds=float(d.get("seconds", 0.0)),
            skipped=skipped,
            by_source={str(k): int(v) for k, v in (d.get("by_source") or {}).items()},
        )


def run_shard(task: ShardTask, progress: Callable[[int], None] | None = None) -> ShardResult:
    """Generate, write (atomically) and mark one shard; returns its :class:`ShardResult`.

    The marker ``DIR/.parts/SPLIT-NNNNN.json`` is written after the shard files are renamed
    into place, so a marker always describes complete files.  ``progress(n)`` is called
    after every written sample.
    """
    import cv2

    from matdata.shards import ShardWriter, write_marker

    # parallelism comes from worker processes (one core each); OpenCV's own thread pool
    # would oversubscribe the cores. Results do not depend on it.
    cv2.setNumThreads(1)
    _warm_imports()
    t0 = time.perf_counter()
    rejects: list[Reject] = []
    by_source: dict[str, int] = {}
    with ShardWriter(task.out, task.split, task.index, task.formats) as w:
        for x in generate_records(task):
            if isinstance(x, Reject):
                rejects.append(x)
            else:
                w.write(x)
                for role in ("fg", "bg"):
                    key = f"{role}/{x.meta[role]['source']}"
                    by_source[key] = by_source.get(key, 0) + 1
                if progress is not None:
                    progress(1)
        infos = w.close()
    res = ShardResult(
        task.split,
        task.index,
        task.digest,
        infos,
        rejects,
        w.samples,
        time.perf_counter() - t0,
        peak_rss_mb=_peak_rss_mb(),
        by_source=by_source,
    )
    marker = res.to_dict()
    marker["seconds"] = 0.0  # markers are deterministic too
    write_marker(task.out, task.split, task.index, marker)
    return res


def _warm_imports() -> None:
    """Import what a shard task uses (once per worker process, a no-op afterwards), so that
    a fresh worker's first task time measures generation, not module loading."""
    import pyarrow.parquet  # noqa: F401
    from PIL import JpegImagePlugin, PngImagePlugin  # noqa: F401

    import matdata.compose  # noqa: F401
    import matdata.foreground  # noqa: F401
    import matdata.imageio  # noqa: F401


def _peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (0 where unsupported)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return 0.0
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0  # Linux reports KiB


def completed_shard(task: ShardTask) -> ShardResult | None:
    """The result recorded by a previous run if its marker matches ``task`` and every file
    it lists is on disk with the recorded size and sha256 (:func:`matdata.shards.read_marker`);
    else None."""
    from matdata.shards import read_marker

    d = read_marker(task.out, task.split, task.index, task.digest, task.formats)
    if d is None:
        return None
    try:
        return ShardResult.from_dict(d, skipped=True)
    except (ValueError, KeyError, TypeError, MatdataError):
        return None
