"""Build planning and the per-shard generator (no Dask here: see ``pipelines/build.py``).

A build turns foreground items (with alpha) and background items into composites:

1. :func:`prepare_build` resolves ``--fg`` / ``--bg`` to items, applies the filters and
   plans the samples: a deterministic list of *pairs* ``(fg, bg, k, seed)`` split into
   shards (:class:`ShardTask`).  The plan depends only on the items, the options and
   ``--seed``, never on the number of workers.
2. :func:`run_shard` (one call per shard, on any worker) loads the items through their
   :class:`~matdata.sources.base.Source`, estimates the foreground colours once per
   foreground (a shard holds whole foregrounds: all K pairs of each), composites,
   encodes each sample to a :class:`~matdata.schema.Record`, writes the shard atomically
   (:class:`~matdata.shards.ShardWriter`) and then its completion marker
   ``DIR/.parts/SPLIT-NNNNN.json``.

Pairing (per foreground ``f``, ``K = per_fg``):

* the background *pool* of ``f`` is the eligible backgrounds of ``f``'s split when the
  background source has any in that split, else every eligible background (recorded in
  each sample's ``meta.bg.pool`` = ``"split"`` | ``"all"``);
* ``K`` backgrounds are drawn from the pool with a generator seeded by
  ``sha256(seed, f.id)``: without replacement when ``K <= |pool|``, with replacement
  otherwise (a warning, and ``with_replacement`` in the summary);
* sample ``k`` of ``f`` gets its own seed ``sha256(seed, f.id, k)`` (63 bits), the only
  source of randomness of its composite, and the key ``{f.id}__{b.id}__{k:03d}``.

So the pairs of a foreground do not change when other foregrounds are added or removed.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from matdata.errors import ConfigError, MatdataError
from matdata.rejects import Reject
from matdata.schema import SCHEMA_VERSION, Record, conform_meta
from matdata.sources.base import Item, safe_id

#: Supervisely image tags excluded from foregrounds by default: in "not-marked-people"
#: images some people are not annotated, so the mask is incomplete (wrong supervision).
DEFAULT_EXCLUDE_TAGS = ("not-marked-people",)
DEFAULT_SHARD_SIZE = "256MB"
SPLIT_ORDER = ("train", "val", "test")
#: Pair tuple: (fg index, bg index, k, sample seed, bg pool "split"|"all").
Pair = tuple[int, int, int, int, str]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


# ------------------------------------------------------------------------------ options


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"512"`` -> (512, 512); ``"640x480"`` -> (640, 480) (W x H); ``"native"`` -> None."""
    if text is None:
        return None
    t = str(text).strip().lower()
    if t == "native":
        return None
    m = re.fullmatch(r"(\d+)(?:\s*[x×]\s*(\d+))?", t)
    if not m or int(m.group(1)) < 16 or (m.group(2) and int(m.group(2)) < 16):
        raise ConfigError(
            f"bad --size {text!r}", hint="use a side like 512, WxH like 640x480, or native"
        )
    w = int(m.group(1))
    h = int(m.group(2)) if m.group(2) else w
    return w, h


def parse_bytes(text: str | int) -> int:
    """``"256MB"`` / ``"64 KiB"`` / ``"1e6"`` / ``1000`` -> bytes (decimal units, or KiB...)."""
    if isinstance(text, int):
        n = text
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(text).lower())
        if not m or m.group(2) not in _UNITS:
            raise ConfigError(
                f"bad --shard-size {text!r}", hint="use a size like 256MB, 1GB or 64MiB"
            )
        n = int(float(m.group(1)) * _UNITS[m.group(2)])
    if n < 1:
        raise ConfigError(f"--shard-size must be positive, got {text!r}")
    return n


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["n_fg=6", "size=\"64x80\""]`` -> dict; values parsed as JSON when they are JSON
    (numbers, lists, booleans), else kept as text (like ``matdata ingest --option``)."""
    out: dict[str, Any] = {}
    for p in pairs or []:
        k, sep, v = p.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"bad source option {p!r}", hint="use KEY=VALUE")
        try:
            out[k.strip()] = json.loads(v)
        except ValueError:
            out[k.strip()] = v
    return out


@dataclass
class BuildConfig:
    """Every option of a build; :meth:`to_dict` is stored in ``dataset.json``."""

    fg: str
    bg: str
    out: str
    per_fg: int = 10
    size: tuple[int, int] | None = (512, 512)
    augment: bool = True
    trimap: bool = False
    trimap_eps: float = 0.01
    trimap_rel_width: float = 0.01
    keep_layers: bool = False
    formats: tuple[str, ...] = ("parquet",)
    shard_size: int = 256 * 1000**2
    samples_per_shard: int | None = None
    seed: int = 0
    jpeg_quality: int = 95
    bg_crop: str = "random"
    bg_blur: float = 0.0
    noise: float = 0.0
    jpeg_match: float = 0.0
    color_jitter: float = 0.0
    fg_estimator: str = "blur_fusion"
    bg_categories: tuple[str, ...] = ()
    bg_io: str | None = None
    exclude_tags: tuple[str, ...] = DEFAULT_EXCLUDE_TAGS
    fg_options: dict[str, Any] = field(default_factory=dict)
    bg_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from matdata.shards import check_formats

        if self.per_fg < 1:
            raise ConfigError(f"--per-fg must be >= 1, got {self.per_fg}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"--jpeg-quality must be in 1..100, got {self.jpeg_quality}")
        if self.samples_per_shard is not None and self.samples_per_shard < 1:
            raise ConfigError(f"--samples-per-shard must be >= 1, got {self.samples_per_shard}")
        if self.bg_io not in (None, "indoor", "outdoor"):
            raise ConfigError(f"--bg-io must be indoor or outdoor, got {self.bg_io!r}")
        from matdata.foreground import METHODS

        if self.fg_estimator not in METHODS:
            raise ConfigError(
                f"unknown --fg-estimator {self.fg_estimator!r}", hint=f"one of {METHODS}"
            )
        try:
            self.formats = check_formats(self.formats)
        except MatdataError as exc:
            raise ConfigError(str(exc), hint=exc.hint) from None
        self.compose_config()  # validate early (one line for the user)

    def compose_config(self):  # -> matdata.compose.ComposeConfig
        from matdata.compose import ComposeConfig
        from matdata.trimap import TrimapParams

        try:
            tp = TrimapParams(eps=self.trimap_eps, rel_width=self.trimap_rel_width)
            return ComposeConfig(
                size=self.size,
                augment=self.augment,
                bg_crop=self.bg_crop,
                trimap=tp if self.trimap else None,
                keep_layers=self.keep_layers,
                jpeg_quality=self.jpeg_quality,
                bg_blur=self.bg_blur,
                noise=self.noise,
                jpeg_match=self.jpeg_match,
                color_jitter=self.color_jitter,
                fg_estimator=self.fg_estimator,
            )
        except ValueError as exc:
            raise ConfigError(f"bad compose option: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, deterministic; ``out`` is left out (a dataset can be moved)."""
        d = asdict(self)
        d.pop("out")
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        d["compose"] = self.compose_config().to_dict()
        return d


# ------------------------------------------------------------------------------- plan


def _h64(*parts: Any) -> int:
    """A stable 63-bit integer from ``parts`` (sha256; independent of Python's hash seed)."""
    text = "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def sample_key(fg_id: str, bg_id: str, k: int) -> str:
    """Deterministic record key ``{fg}__{bg}__{k:03d}`` in the ``[A-Za-z0-9_-]`` alphabet."""
    return f"{safe_id(fg_id)}__{safe_id(bg_id)}__{k:03d}"


def bytes_per_sample(cfg: BuildConfig, fg_items: list[Item]) -> int:
    """Rough encoded size of one sample (per format) used to turn ``--shard-size`` into a
    sample count: JPEG ~0.35 B/px at quality >= 90 (0.2 at >= 75, else 0.12), PNG masks
    ~0.06 B/px, plus 2 KB of meta and headers.  Use ``--samples-per-shard`` to be exact."""
    if cfg.size is not None:
        px = cfg.size[0] * cfg.size[1]
    elif fg_items:
        px = sum(it.width * it.height for it in fg_items) / len(fg_items)
    else:
        px = 512 * 512
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


def cut_shards(pairs: list[Pair], per_shard: int) -> list[list[Pair]]:
    """Cut a split's pairs into shards of whole foregrounds: a shard takes the next
    foreground's K pairs while it stays within ``per_shard`` samples (and always takes at
    least one foreground), so each foreground is loaded and estimated exactly once."""
    shards: list[list[Pair]] = []
    cur: list[Pair] = []
    i = 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        if cur and len(cur) + (j - i) > per_shard:
            shards.append(cur)
            cur = []
        cur.extend(pairs[i:j])
        i = j
    if cur:
        shards.append(cur)
    return shards


def _bg_wanted(item: Item, cats: tuple[str, ...], io: str | None) -> str | None:
    """Why a background is filtered out (None if kept)."""
    if cats:
        c = item.category or ""
        if not any(c == w or c.startswith(w + "/") for w in cats):
            return f"category {item.category!r} not in --bg-category"
    if io is not None:
        want = 1 if io == "indoor" else 2
        if item.io != want:
            got = {1: "indoor", 2: "outdoor"}.get(item.io or 0, "unknown")
            return f"{got} scene, --bg-io {io}"
    return None


def _norm_category(c: str) -> str:
    parts = [p for p in c.strip().split("/") if p]
    if len(parts) >= 2 and len(parts[0]) == 1:  # Places' /a/airfield form
        parts = parts[1:]
    return "/".join(parts)


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
    fg_source: SourceRef
    bg_source: SourceRef
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

    @property
    def samples(self) -> int:
        return sum(t.samples for t in self.tasks)

    def split_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tasks:
            out[t.split] = out.get(t.split, 0) + t.samples
        return out


def _split_key(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def plan_pairs(
    fg_items: list[Item], bg_items: list[Item], per_fg: int, seed: int
) -> tuple[dict[str, list[Pair]], int, int]:
    """``({split: pairs}, n_with_replacement, n_pool_all)`` for sorted item lists.

    Pairs of one foreground are contiguous; foregrounds in list order within their split.
    """
    by_split: dict[str, list[int]] = {}
    for j, b in enumerate(bg_items):
        by_split.setdefault(b.split, []).append(j)
    every = list(range(len(bg_items)))
    out: dict[str, list[Pair]] = {}
    n_repl = n_all = 0
    for i, f in enumerate(fg_items):
        pool, pool_name = by_split.get(f.split), "split"
        if not pool:
            pool, pool_name = every, "all"
            n_all += 1
        rng = np.random.default_rng(_h64("pairs", seed, f.id))
        replace = per_fg > len(pool)
        n_repl += int(replace)
        picks = rng.choice(len(pool), size=per_fg, replace=replace)
        dest = out.setdefault(f.split, [])
        for k, p in enumerate(picks.tolist()):
            dest.append((i, pool[p], k, _h64("sample", seed, f.id, k), pool_name))
    return dict(sorted(out.items(), key=lambda kv: _split_key(kv[0]))), n_repl, n_all


def _source_info(res: Any, role: str) -> dict[str, Any]:
    return {
        "role": role,
        "name": res.name,
        "kind": res.kind,
        "root": res.root,
        "options": res.options,
        "manifest": res.manifest,
        "manifest_sha256": res.manifest_sha256,
        "items": len(res.items),
        "ingest_rejects": len(res.rejects),
    }


def prepare_build(cfg: BuildConfig) -> BuildPlan:
    """Resolve the sources, filter, pair and shard (see the module docstring)."""
    from matdata.catalog import resolve_source

    fg_res = resolve_source(cfg.fg, "fg", cfg.fg_options)
    bg_res = resolve_source(cfg.bg, "bg", cfg.bg_options)
    warnings: list[str] = []
    rejects: list[Reject] = []

    # accounting per source name (a source may serve both roles, e.g. demo)
    acct: dict[str, dict[str, int]] = {}
    for res in (fg_res, bg_res):
        a = acct.setdefault(res.name, {"found": 0, "ingest_rejected": 0, "filtered": 0})
        a["found"] += len(res.items)
    seen_ingest: set[str] = set()
    for res in (fg_res, bg_res):
        if res.name in seen_ingest:
            continue
        seen_ingest.add(res.name)
        acct[res.name]["found"] += len(res.rejects)
        acct[res.name]["ingest_rejected"] += len(res.rejects)
        rejects += res.rejects

    excl = set(cfg.exclude_tags)
    fgs: list[Item] = []
    for it in sorted(fg_res.items, key=lambda x: x.id):
        bad = sorted(excl.intersection(it.tags))
        if bad:
            rejects.append(
                Reject(fg_res.name, it.image, "filtered", f"fg tag {', '.join(bad)}", "build")
            )
            acct[fg_res.name]["filtered"] += 1
        else:
            fgs.append(it)
    cats = tuple(_norm_category(c) for c in cfg.bg_categories)
    bgs: list[Item] = []
    for it in sorted(bg_res.items, key=lambda x: x.id):
        why = _bg_wanted(it, cats, cfg.bg_io)
        if why:
            rejects.append(Reject(bg_res.name, it.image, "filtered", why, "build"))
            acct[bg_res.name]["filtered"] += 1
        else:
            bgs.append(it)
    if not fgs:
        raise ConfigError(
            f"no usable foregrounds in {cfg.fg!r} ({len(fg_res.items)} items, "
            f"{acct[fg_res.name]['filtered']} filtered)",
            hint="check --fg and --exclude-tag",
        )
    if not bgs:
        raise ConfigError(
            f"no background left in {cfg.bg!r} after filters ({len(bg_res.items)} items)",
            hint="relax --bg-category / --bg-io",
        )

    pairs, n_repl, n_all = plan_pairs(fgs, bgs, cfg.per_fg, cfg.seed)
    if n_repl:
        warnings.append(
            f"--per-fg {cfg.per_fg} is more than the backgrounds available to {n_repl} "
            "foreground(s) in their split: their backgrounds are drawn with replacement"
        )
    if n_all:
        warnings.append(
            f"{n_all} foreground(s) have no background in their split: drawn from all splits"
        )

    by_size = max(1, math.floor(cfg.shard_size / bytes_per_sample(cfg, fgs)))
    per_shard = {
        split: cfg.samples_per_shard or shard_samples(len(plist), by_size)
        for split, plist in pairs.items()
    }
    fg_ref = SourceRef(fg_res.name, fg_res.kind, fg_res.root, dict(fg_res.options))
    bg_ref = SourceRef(bg_res.name, bg_res.kind, bg_res.root, dict(bg_res.options))
    compose = cfg.compose_config().to_dict()
    with_ignore = any(it.coarse for it in fgs)
    tasks: list[ShardTask] = []
    plan_hash = hashlib.sha256()
    for split, plist in pairs.items():
        for n, chunk in enumerate(cut_shards(plist, per_shard[split])):
            t = ShardTask(
                split=split,
                index=n,
                pairs=chunk,
                fg_items={p[0]: fgs[p[0]] for p in chunk},
                bg_items={p[1]: bgs[p[1]] for p in chunk},
                fg_source=fg_ref,
                bg_source=bg_ref,
                out=cfg.out,
                formats=cfg.formats,
                compose=compose,
                build_seed=cfg.seed,
                with_ignore=with_ignore,
            )
            t.digest = task_digest(t)
            plan_hash.update(t.digest.encode())
            tasks.append(t)
    sources = {"fg": _source_info(fg_res, "fg"), "bg": _source_info(bg_res, "bg")}
    return BuildPlan(
        config=cfg,
        tasks=tasks,
        sources=sources,
        rejects=rejects,
        accounting=acct,
        warnings=warnings,
        samples_per_shard=per_shard,
        with_replacement=n_repl,
        bg_pool_all=n_all,
        plan_sha256=plan_hash.hexdigest(),
    )


def task_digest(t: ShardTask) -> str:
    """sha256 of everything that determines a shard's bytes (not the output location)."""
    body = {
        "schema": SCHEMA_VERSION,
        "split": t.split,
        "index": t.index,
        "formats": list(t.formats),
        "compose": t.compose,
        "seed": t.build_seed,
        "ignore": t.with_ignore,
        "fg_source": [t.fg_source.name, t.fg_source.kind],
        "bg_source": [t.bg_source.name, t.bg_source.kind],
        "pairs": [
            [
                t.fg_items[p[0]].id,
                t.fg_items[p[0]].sha256,
                t.bg_items[p[1]].id,
                t.bg_items[p[1]].sha256,
                p[2],
                p[3],
                p[4],
            ]
            for p in t.pairs
        ],
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# -------------------------------------------------------------------------- generation


def _item_meta(item: Item, source: SourceRef) -> dict[str, Any]:
    return {
        "source": source.name,
        "kind": item.source,
        "id": item.id,
        "sha256": item.sha256,
        "split": item.split,
        "group": item.group,
        "size": [item.width, item.height],
    }


def generate_records(
    task: ShardTask, fg_source: Any = None, bg_source: Any = None
) -> Iterator[Record | Reject]:
    """Yield a :class:`Record` per planned sample, or a :class:`Reject` for an input that
    failed to load (its samples are skipped).  Foreground colours are estimated once per
    run of pairs sharing a foreground; the last few backgrounds are cached."""
    from matdata.compose import ComposeConfig, compose_sample
    from matdata.foreground import estimate_foreground
    from matdata.imageio import encode_jpeg, encode_png

    cfg = ComposeConfig.from_dict(task.compose)
    fg_src = fg_source or task.fg_source.make()
    bg_src = bg_source or task.bg_source.make()
    q = cfg.jpeg_quality
    cur_fg: int | None = None
    fg_data: tuple[np.ndarray, np.ndarray, np.ndarray | None, bool] | None = None
    bad_fg: set[int] = set()
    bad_bg: set[int] = set()
    bg_cache: OrderedDict[int, np.ndarray] = OrderedDict()
    for fi, bi, k, sseed, pool in task.pairs:
        fitem, bitem = task.fg_items[fi], task.bg_items[bi]
        if fi in bad_fg:
            continue
        if fi != cur_fg:
            cur_fg, fg_data = fi, None
            try:
                fgl = fg_src.load_foreground(fitem)
                colors = estimate_foreground(fgl.rgb, fgl.alpha, cfg.fg_estimator)
                fg_data = (colors, fgl.alpha, fgl.ignore, bool(fgl.coarse or fitem.coarse))
            except (MatdataError, ValueError, OSError) as exc:
                bad_fg.add(fi)
                yield _reject(task.fg_source.name, fitem, exc)
                continue
        if bi in bad_bg:
            continue
        bg = bg_cache.get(bi)
        if bg is None:
            try:
                bg = bg_src.load_background(bitem)
            except (MatdataError, ValueError, OSError) as exc:
                bad_bg.add(bi)
                yield _reject(task.bg_source.name, bitem, exc)
                continue
            bg_cache[bi] = bg
            if len(bg_cache) > 8:
                bg_cache.popitem(last=False)
        else:
            bg_cache.move_to_end(bi)
        assert fg_data is not None
        colors, alpha, ignore, coarse = fg_data
        if task.with_ignore and ignore is None:
            ignore = np.zeros_like(alpha)
        comp = compose_sample(colors, alpha, bg, np.random.default_rng(sseed), cfg, ignore)
        bmeta = _item_meta(bitem, task.bg_source)
        bmeta.update(category=bitem.category, io=bitem.io, pool=pool)
        fmeta = _item_meta(fitem, task.fg_source)
        fmeta.update(coarse=coarse, tags=list(fitem.tags))
        meta = {
            "schema_version": SCHEMA_VERSION,
            "split": task.split,
            "fg": fmeta,
            "bg": bmeta,
            "k": k,
            "seed": sseed,
            "build_seed": task.build_seed,
            "coarse": coarse,
            "compose": task.compose,
            "params": comp.params,
        }
        meta = conform_meta(meta)
        yield Record(
            key=sample_key(fitem.id, bitem.id, k),
            image=encode_jpeg(comp.image, q),
            alpha=encode_png(comp.alpha),
            fg=encode_jpeg(comp.fg, q) if comp.fg is not None else None,
            bg=encode_jpeg(comp.bg, q) if comp.bg is not None else None,
            trimap=encode_png(comp.trimap) if comp.trimap is not None else None,
            ignore=encode_png(comp.ignore) if comp.ignore is not None else None,
            meta=meta,
        )


def _reject(source: str, item: Item, exc: Exception) -> Reject:
    if isinstance(exc, MatdataError):
        return Reject(
            source, item.image, exc.reason, getattr(exc, "detail", "") or str(exc), "build"
        )
    return Reject(source, item.image, "load_failed", f"{type(exc).__name__}: {exc}", "build")


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "index": self.index,
            "digest": self.digest,
            "shards": [s.to_dict() for s in self.shards],
            "rejects": [r.to_dict() for r in self.rejects],
            "samples": self.samples,
            "seconds": self.seconds,
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
        )


def run_shard(task: ShardTask, progress: Callable[[int], None] | None = None) -> ShardResult:
    """Generate, write (atomically) and mark one shard; returns its :class:`ShardResult`.

    The marker ``DIR/.parts/SPLIT-NNNNN.json`` is written after the shard files are renamed
    into place, so a marker always describes complete files.  ``progress(n)`` is called
    after every written sample.
    """
    import cv2

    from matdata.shards import ShardWriter, part_name
    from matdata.storage import atomic_write_text, join

    # parallelism comes from worker processes (one core each); OpenCV's own thread pool
    # would oversubscribe the cores. Results do not depend on it.
    cv2.setNumThreads(1)
    _warm_imports()
    t0 = time.perf_counter()
    rejects: list[Reject] = []
    with ShardWriter(task.out, task.split, task.index, task.formats) as w:
        for x in generate_records(task):
            if isinstance(x, Reject):
                rejects.append(x)
            else:
                w.write(x)
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
    )
    marker = res.to_dict()
    marker["seconds"] = 0.0  # markers are deterministic too
    atomic_write_text(
        join(task.out, part_name(task.split, task.index)),
        json.dumps(marker, sort_keys=True, indent=1) + "\n",
    )
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


def completed_shard(task: ShardTask, *, hash_check: bool = True) -> ShardResult | None:
    """The result recorded by a previous run if its marker matches ``task`` and every file
    it lists is on disk with the recorded size and sha256; else None."""
    from matdata.shards import part_name, shard_ok
    from matdata.storage import join, open_input

    try:
        with open_input(join(task.out, part_name(task.split, task.index)), "rb") as f:
            d = json.loads(f.read())
        res = ShardResult.from_dict(d, skipped=True)
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    if res.digest != task.digest or sorted(s.format for s in res.shards) != sorted(task.formats):
        return None
    for s in res.shards:
        if shard_ok(task.out, s, hash_check=hash_check) is not None:
            return None
    return res
