"""Scanning one shard for QA: the unit of work a runner task runs (I/O at this edge only).

:func:`scan_shard` checks the shard file against ``dataset.json`` (size + sha256), streams
its records once, decodes every field as far as a check uses it, and returns per-record
statistics, flags and perceptual hashes plus small contact-sheet strips for a bounded set
of records (the planned random sample and the first locally flagged ones).  Memory is
bounded by one record plus the returned rows (a few hundred bytes per record) and strips.

Decoding: the composite in colour (BGR, never converted to RGB: the halo score and the
harmonization checks compare colours; its luma for the hashes is converted from it), or
its luma plane only (``IMREAD_GRAYSCALE``: libjpeg skips the chroma IDCT, upsampling and
colour conversion, a quarter of a colour decode) when the halo score is off and the
record has no ``image_raw``; ``bg`` in colour for the halo score, ``fg`` as luma (only its
size and decodability are checked); masks in full.  Every field is still decoded through
its entropy-coded data, so ``undecodable`` means what it meant.  Strips decode the
composite again, at the reduced scale (libjpeg's scaled IDCT) that still gives a 96-pixel
panel; edge views (:mod:`matdata.qa.edges`) of the same records use the full decode.

Threads: OpenCV's thread pool is off while a shard is scanned (restored after): a Dask
worker runs one task per core, and the pool's threads on a few large-image calls (resizes,
thresholds) only oversubscribed the cores (the decode floor is single-threaded too).

Checksum decision: a shard whose bytes do not match ``dataset.json`` gets the shard flag
``checksum_mismatch`` AND every record read from it carries the record flag
``checksum_mismatch`` (so per-sample consumers see it too).  The shard is read once: its
size is checked before, its sha256 taken while the records stream
(:class:`matdata.shards.ShardReader`, as the train and harmonize readers do); a shard of
the right size whose hash turns out wrong (rare) is scanned a second time, so that its
records carry the flag exactly as if it had been known up front.  A missing shard gets the
shard flag ``missing_shard``; a shard that breaks mid-stream gets ``unreadable_shard``
and keeps the records read before the break.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from matdata.errors import MatdataError
from matdata.qa.analysis import Flag, Thresholds, provenance, record_flags, record_stats
from matdata.qa.halo import halve
from matdata.qa.phash import image_hashes
from matdata.schema import IMAGE_FIELDS, Record

#: Height in pixels of each panel of a contact-sheet strip.
THUMB_HEIGHT = 96


@dataclass
class ShardScan:
    """What scanning one shard returns to the client (small, picklable)."""

    shard: dict[str, Any]  # ShardInfo.to_dict()
    rows: list[dict[str, Any]] = field(default_factory=list)
    thumbs: dict[str, bytes] = field(default_factory=dict)  # key -> JPEG strip
    problems: list[dict[str, str]] = field(default_factory=list)  # shard flags
    views: dict[str, Any] = field(default_factory=dict)  # key -> edges.RecordViews
    records: int = 0
    seconds: float = 0.0
    #: for :func:`pipelines.runner.run_shards`: QA writes no shard, so none is skipped
    skipped: ClassVar[bool] = False

    @property
    def samples(self) -> int:
        """Records read (the runner's name for them)."""
        return self.records


# -------------------------------------------------------------------------- thumbnails


def _panel(arr: np.ndarray, height: int) -> np.ndarray:
    """``arr`` resampled to ``height`` rows (3 channels): halved by 2 x 2 block means
    (OpenCV's fast area path for exactly half the size; an odd last row / column is
    dropped) while it stays at least ``height`` rows high, then bilinear to the panel size
    (a factor under 2, so every input pixel still counts).  OpenCV's area resampling at
    any other ratio costs a third of a decode on a full-size image, and still 0.2 ms on a
    128 px one."""
    import cv2

    h, w = arr.shape[:2]
    nw = max(1, round(w * height / h))
    while h >= 2 * height and w >= 2:
        h, w = h // 2, w // 2
        arr = cv2.resize(arr[: 2 * h, : 2 * w], (w, h), interpolation=cv2.INTER_AREA)
    out = cv2.resize(arr, (nw, height), interpolation=cv2.INTER_LINEAR)
    return np.repeat(out[:, :, None], 3, axis=2) if out.ndim == 2 else out


def _encode_strip(panels: list[np.ndarray], height: int) -> bytes:
    """JPEG bytes of the panels (3-channel in the order the JPEG encoder expects, or grey)
    side by side at ``height``, each framed in grey."""
    import cv2

    b = 2
    parts: list[np.ndarray] = []
    for p in panels:
        panel = _panel(p, height)
        framed = np.full((height + 2 * b, panel.shape[1] + 2 * b, 3), 128, np.uint8)
        framed[b:-b, b:-b] = panel
        if parts:
            parts.append(np.full((height + 2 * b, 4, 3), 255, np.uint8))
        parts.append(framed)
    strip = np.ascontiguousarray(np.concatenate(parts, axis=1))
    ok, buf = cv2.imencode(".jpg", strip, [cv2.IMWRITE_JPEG_QUALITY, 82])
    if not ok:  # pragma: no cover - OpenCV only fails on invalid input
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def _reduction(h: int, height: int) -> int:
    """The JPEG decode reduction (8, 4, 2 or 1: libjpeg's scaled IDCT) that keeps at least
    ``height`` of an image's ``h`` rows."""
    return next((f for f in (8, 4, 2) if h // f >= height), 1)


def _record_strip(
    rec: Record,
    dec: dict[str, np.ndarray],
    bbox: list[int] | None,
    height: int,
) -> bytes | None:
    """Strip of one record: composite | alpha | trimap (stored, else computed exactly on
    the band window) | image_raw (when present).  Colour panels come from ``dec`` when it
    holds them in colour (BGR), else from a reduced-scale decode of the JPEG (a panel is
    ``height`` pixels high, so the full-size colour image is never needed for it).  None
    when the image or alpha does not decode."""
    from matdata.qa.analysis import trimap_of

    alpha = dec.get("alpha")
    if alpha is None:
        return None
    reduce = _reduction(dec.get("image", alpha).shape[0], height)

    def colour(name: str) -> np.ndarray | None:
        arr = dec.get(name)
        if arr is not None and arr.ndim == 3:
            return arr
        data = getattr(rec, name)
        return None if data is None else _decode_or_none(data, reduce)

    image = colour("image")
    if image is None:
        return None
    tri = dec.get("trimap")
    if tri is None:
        tri = trimap_of(alpha, bbox)
    raw = colour("image_raw")
    return _encode_strip([image, alpha, tri] + ([raw] if raw is not None else []), height)


# ---------------------------------------------------------------------------- records


def _decode_or_none(data: bytes, reduce: int) -> np.ndarray | None:
    from matdata.imageio import fast_decode_jpeg

    try:
        return fast_decode_jpeg(data, "bgr", reduce)
    except (MatdataError, ValueError):
        return None


#: How :func:`_decode_fields` decodes each JPEG field (see there); others decode as BGR.
_JPEG_ORDER = {"fg": "grey", "bg": "grey", "image_raw": "bgr"}


def _decode_fields(rec: Record, colour: bool = True) -> tuple[dict[str, np.ndarray], list[Flag]]:
    """Decode every present field, each only as far as a check uses it: ``image`` and
    ``bg`` in colour (BGR) when ``colour``, else their grey (luma) plane only; ``fg`` grey
    (only its size and decodability are checked); ``image_raw`` in colour (BGR); the PNG
    masks as they are.  Fields that do not decode become ``undecodable`` flags."""
    from matdata.imageio import fast_decode_jpeg, fast_decode_png_gray

    orders = {**_JPEG_ORDER, "image": "bgr" if colour else "grey"}
    if colour:
        orders["bg"] = "bgr"
    out: dict[str, np.ndarray] = {}
    flags: list[Flag] = []
    for spec in IMAGE_FIELDS:
        data = getattr(rec, spec.name)
        if data is None:
            continue
        try:
            if spec.kind == "jpeg":
                out[spec.name] = fast_decode_jpeg(data, orders.get(spec.name, "bgr"))
            else:
                out[spec.name] = fast_decode_png_gray(data)
        except (MatdataError, ValueError) as exc:
            flags.append(Flag("undecodable", f"{spec.name}: {exc}"))
    return out, flags


def decode_for_scan(rec: Record, halo: bool = True) -> tuple[dict[str, np.ndarray], list[Flag]]:
    """Decode ``rec`` exactly as the scan does (:func:`_decode_fields`): the composite in
    colour when the halo score is on or the record has ``image_raw``.  The benchmark's
    floor (``benchmarks/qa_throughput.py``) calls this too, so it decodes what the scan
    decodes by construction."""
    return _decode_fields(rec, colour=halo or rec.image_raw is not None)


def analyze_record(
    rec: Record,
    th: Thresholds,
    *,
    want_thumb: bool = False,
    flag_thumb: bool = True,
    extra_flags: Iterable[Flag] = (),
    thumb_height: int = THUMB_HEIGHT,
    band: bool = True,
    halo: bool = True,
) -> tuple[dict[str, Any], bytes | None]:
    """One row (provenance + stats + flags + hashes) and its strip when ``want_thumb``, or
    when ``flag_thumb`` and the record is flagged (None otherwise).

    The composite is decoded in colour when the halo score (``halo``) or a harmonization
    check (the record has ``image_raw``) needs it; otherwise its luma plane is all the
    stats and hashes use.
    """
    row, thumb, _ = _analyze(rec, th, want_thumb, flag_thumb, extra_flags, thumb_height, band, halo)
    return row, thumb


def _analyze(
    rec: Record,
    th: Thresholds,
    want_thumb: bool = False,
    flag_thumb: bool = True,
    extra_flags: Iterable[Flag] = (),
    thumb_height: int = THUMB_HEIGHT,
    band: bool = True,
    halo: bool = True,
) -> tuple[dict[str, Any], bytes | None, dict[str, np.ndarray]]:
    """:func:`analyze_record` plus the decoded fields (for :func:`_views`)."""
    import cv2

    meta = rec.meta if isinstance(rec.meta, dict) else {}
    row: dict[str, Any] = {"key": rec.key, **provenance(meta)}
    dec, flags = decode_for_scan(rec, halo)
    flags += list(extra_flags)
    row["phash"] = row["dhash"] = None
    thumb = None
    if "image" in dec and "alpha" in dec:
        image = dec["image"]
        # the colour image halved (2x2 block means), shared by the halo score's working
        # image and the hashes' thumbnail (both start with it at a short side of 512+)
        half = halve(image) if image.ndim == 3 and min(image.shape[:2]) >= 512 else None
        stats, size_flags = record_stats(
            image,
            dec["alpha"],
            trimap=dec.get("trimap"),
            image_raw=dec.get("image_raw"),
            ignore=dec.get("ignore"),
            margin=th.bg_margin,
            band=band,
            bgr=True,
            bg=dec.get("bg") if dec.get("bg") is not None and dec["bg"].ndim == 3 else None,
            halo=halo,
            half=half,
        )
        for name in ("fg", "bg"):
            arr = dec.get(name)
            if arr is not None and arr.shape[:2] != image.shape[:2]:
                h, w = arr.shape[:2]
                size_flags.append(
                    Flag("size_mismatch", f"{name} is {w}x{h}, image {stats['width']}x"
                         f"{stats['height']}")
                )  # fmt: skip
        row.update(stats)
        flags += size_flags + record_flags(stats, meta, th)
        colour = image if half is None else half  # image_hashes halves what is 512+
        grey = colour if colour.ndim == 2 else cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
        row["phash"], row["dhash"] = image_hashes(grey)
        if want_thumb or (flag_thumb and flags):
            thumb = _record_strip(rec, dec, stats["bbox"], thumb_height)
    elif "image" in dec or "alpha" in dec:
        h, w = (dec.get("image") if "image" in dec else dec["alpha"]).shape[:2]
        row.update(width=w, height=h)
    row["flags"] = [f.to_dict() for f in flags]
    return row, thumb, dec


def _views(rec: Record, dec: dict[str, np.ndarray]) -> Any:
    """Edge sheet and full-size image of a record (:mod:`matdata.qa.edges`), or None."""
    from matdata.qa.edges import record_views

    image, alpha = dec.get("image"), dec.get("alpha")
    if alpha is None or rec.image is None:
        return None
    if image is None or image.ndim != 3:
        image = _decode_or_none(rec.image, 1)
    fg = _decode_or_none(rec.fg, 1) if rec.fg is not None else None
    raw = dec.get("image_raw")
    if image is None:
        return None
    stored = {"image": rec.image, "alpha": rec.alpha, "image_raw": rec.image_raw}
    return record_views(
        image, alpha, fg=fg, image_raw=raw if raw is not None and raw.ndim == 3 else None,
        stored=stored,
    )  # fmt: skip


def _iter_guarded(records: Iterable[Record], problems: list[dict[str, str]]):
    try:
        yield from records
    except MatdataError as exc:
        reason = "missing_shard" if "missing" in str(exc) else "unreadable_shard"
        problems.append(Flag(reason, str(exc)).to_dict())
    except Exception as exc:  # pyarrow / tarfile / zlib errors on a corrupt file
        problems.append(Flag("unreadable_shard", f"{type(exc).__name__}: {exc}").to_dict())


def scan_shard(
    dataset_dir: str,
    shard: Any,
    sample: Iterable[int] = (),
    thresholds: Thresholds | None = None,
    *,
    band: Iterable[int] | None = None,
    verify: bool = True,
    max_flag_thumbs: int = 32,
    thumb_height: int = THUMB_HEIGHT,
    max_flag_views: int = 4,
    progress: Callable[[int], None] | None = None,
) -> ShardScan:
    """Scan one shard (a :class:`matdata.shards.ShardInfo`); see the module docstring.

    ``sample``: positions (0-based, in reading order) of records whose strips and edge
    views (:mod:`matdata.qa.edges`) are always returned; strips of flagged records are
    returned for the first ``max_flag_thumbs`` of them, edge views for the first
    ``max_flag_views``.  ``band``: positions whose unknown-band area is computed when the
    record has no stored trimap (None = every record).  ``progress(n)``: n more records
    read (the runner's progress events).
    """
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # one task is one core's work (see the module docstring)
    try:
        return _scan_shard(
            dataset_dir,
            shard,
            sample,
            thresholds,
            band,
            verify,
            max_flag_thumbs,
            thumb_height,
            max_flag_views,
            progress,
        )
    finally:
        cv2.setNumThreads(threads)


def _scan_shard(
    dataset_dir: str,
    shard: Any,
    sample: Iterable[int],
    thresholds: Thresholds | None,
    band: Iterable[int] | None,
    verify: bool,
    max_flag_thumbs: int,
    thumb_height: int,
    max_flag_views: int = 4,
    progress: Callable[[int], None] | None = None,
) -> ShardScan:
    from matdata.shards import ShardReader, shard_ok

    t0 = time.perf_counter()
    opts = _ScanOptions(
        thresholds or Thresholds(), set(sample), None if band is None else set(band),
        max_flag_thumbs, thumb_height, max_flag_views,
    )  # fmt: skip
    res = ShardScan(shard=shard.to_dict())
    bad_sum = None
    if verify:  # size now (cheap); the sha256 of the bytes as the scan reads them
        problem = shard_ok(dataset_dir, shard, hash_check=False)
        if problem is not None and problem.endswith(": missing"):
            res.problems.append(Flag("missing_shard", problem).to_dict())
            res.seconds = time.perf_counter() - t0
            return res
        if problem is not None:
            bad_sum = Flag("checksum_mismatch", f"shard {problem}")
            res.problems.append(bad_sum.to_dict())
    reader = ShardReader(dataset_dir, shard)
    _scan_records(res, reader, opts, bad_sum, progress)
    if verify and bad_sum is None:
        if reader.sha256 is None:  # the reader could not hash it: hash the file itself
            problem = shard_ok(dataset_dir, shard)
        else:
            problem = None if reader.sha256 == shard.sha256 else f"{shard.path}: sha256 mismatch"
        if problem is not None:  # rare: scan again, every record carrying the flag
            bad_sum = Flag("checksum_mismatch", f"shard {problem}")
            res = ShardScan(shard=shard.to_dict(), problems=[bad_sum.to_dict()])
            _scan_records(res, ShardReader(dataset_dir, shard), opts, bad_sum)
    res.seconds = time.perf_counter() - t0
    return res


@dataclass(frozen=True)
class _ScanOptions:
    th: Thresholds
    want: set[int]  # positions whose strips and views are always returned
    band_at: set[int] | None  # positions with the unknown band (None: all)
    max_flag_thumbs: int
    thumb_height: int
    max_flag_views: int


def _scan_records(
    res: ShardScan,
    records: Iterable[Record],
    opts: _ScanOptions,
    bad_sum: Flag | None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Analyze every record of ``records`` into ``res`` (rows, strips, views, problems)."""
    want = opts.want
    flag_thumbs = flag_views = 0
    path = res.shard["path"]
    for i, rec in enumerate(_iter_guarded(records, res.problems)):
        row, thumb, dec = _analyze(
            rec,
            opts.th,
            want_thumb=i in want,
            flag_thumb=flag_thumbs < opts.max_flag_thumbs,
            extra_flags=[bad_sum] if bad_sum is not None else (),
            thumb_height=opts.thumb_height,
            band=opts.band_at is None or i in opts.band_at,
        )
        row["shard"] = path
        row["position"] = i
        res.rows.append(row)
        if thumb is not None:
            res.thumbs[rec.key] = thumb
            flag_thumbs += i not in want
        if i in want or (row["flags"] and flag_views < opts.max_flag_views):
            views = _views(rec, dec)
            if views is not None:
                res.views[rec.key] = views
                flag_views += i not in want
        res.records += 1
        if progress is not None:
            progress(1)


def shard_strips(
    dataset_dir: str, shard: Any, keys: Iterable[str], thumb_height: int = THUMB_HEIGHT
) -> dict[str, bytes]:
    """Contact-sheet strips of the given keys of one shard (second pass for global flags)."""
    import cv2

    from matdata.imageio import fast_decode_png_gray
    from matdata.shards import iter_shard

    wanted = set(keys)
    out: dict[str, bytes] = {}
    for rec in _iter_guarded(iter_shard(dataset_dir, shard), []):
        if rec.key not in wanted:
            continue
        dec: dict[str, np.ndarray] = {}
        for name in ("alpha", "trimap"):
            data = getattr(rec, name)
            try:
                if data is not None:
                    dec[name] = fast_decode_png_gray(data)
            except (MatdataError, ValueError):
                pass
        alpha = dec.get("alpha")
        bbox = None
        if alpha is not None and cv2.countNonZero(alpha):
            x, y, w, h = cv2.boundingRect(alpha)
            bbox = [x, y, x + w, y + h]
        strip = _record_strip(rec, dec, bbox, thumb_height)
        if strip is not None:
            out[rec.key] = strip
        if len(out) == len(wanted):
            break
    return out


def shard_views(dataset_dir: str, shard: Any, keys: Iterable[str]) -> dict[str, Any]:
    """Edge views (:func:`matdata.qa.edges.record_views`) of the given keys of one shard
    (second pass: records flagged by global flags, per-group samples, a compared dataset)."""
    from matdata.shards import iter_shard

    wanted = set(keys)
    out: dict[str, Any] = {}
    for rec in _iter_guarded(iter_shard(dataset_dir, shard), []):
        if rec.key not in wanted:
            continue
        dec, _ = _decode_fields(rec, colour=True)
        views = _views(rec, dec)
        if views is not None:
            out[rec.key] = views
        if len(out) == len(wanted):
            break
    return out


def sample_plan(shards: list[Any], n: int, seed: int = 0) -> dict[str, list[int]]:
    """``{shard.path: positions}``: ``n`` records drawn uniformly without replacement
    over all shards (by their recorded sample counts), deterministic in ``seed``."""
    counts = [max(0, int(s.samples)) for s in shards]
    total = sum(counts)
    n = min(max(0, n), total)
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(total, size=n, replace=False)) if n else np.zeros(0, int)
    offsets = np.cumsum([0, *counts])
    plan: dict[str, list[int]] = {s.path: [] for s in shards}
    for g in picks.tolist():
        j = int(np.searchsorted(offsets, g, side="right") - 1)
        plan[shards[j].path].append(int(g - offsets[j]))
    return plan
