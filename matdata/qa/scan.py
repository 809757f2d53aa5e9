"""Scanning one shard for QA: the unit of work a Dask task runs (I/O at this edge only).

:func:`scan_shard` checks the shard file against ``dataset.json`` (size + sha256), streams
its records, decodes every field, and returns per-record statistics, flags and perceptual
hashes plus small contact-sheet strips for a bounded set of records (the planned random
sample and the first locally flagged ones).  Memory is bounded by one record plus the
returned rows (a few hundred bytes per record) and strips.

Checksum decision: a shard whose bytes do not match ``dataset.json`` gets the shard flag
``checksum_mismatch`` AND every record read from it carries the record flag
``checksum_mismatch`` (so per-sample consumers see it too).  A missing shard gets the
shard flag ``missing_shard``; a shard that breaks mid-stream gets ``unreadable_shard``
and keeps the records read before the break.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matdata.errors import MatdataError
from matdata.qa.analysis import Flag, Thresholds, provenance, record_flags, record_stats
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
    records: int = 0
    seconds: float = 0.0


# -------------------------------------------------------------------------- thumbnails


def _panel(arr: np.ndarray, height: int) -> np.ndarray:
    import cv2

    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    h, w = arr.shape[:2]
    nw = max(1, round(w * height / h))
    return cv2.resize(arr, (nw, height), interpolation=cv2.INTER_AREA)


def contact_strip(panels: list[np.ndarray], height: int = THUMB_HEIGHT) -> bytes:
    """JPEG bytes of the panels (RGB or grey uint8 arrays) side by side at ``height``,
    each framed in grey (so all-white or all-black masks stay visible)."""
    from matdata.imageio import encode_jpeg

    b = 2
    parts: list[np.ndarray] = []
    for p in panels:
        panel = _panel(p, height)
        framed = np.full((height + 2 * b, panel.shape[1] + 2 * b, 3), 128, np.uint8)
        framed[b:-b, b:-b] = panel
        if parts:
            parts.append(np.full((height + 2 * b, 4, 3), 255, np.uint8))
        parts.append(framed)
    return encode_jpeg(np.ascontiguousarray(np.concatenate(parts, axis=1)), quality=82)


def strip_panels(dec: dict[str, np.ndarray]) -> list[np.ndarray]:
    """composite | alpha | trimap (stored, else computed) | image_raw (when present)."""
    from matdata.trimap import make_trimap

    panels = [dec["image"], dec["alpha"]]
    tri = dec.get("trimap")
    panels.append(tri if tri is not None else make_trimap(dec["alpha"]))
    if dec.get("image_raw") is not None:
        panels.append(dec["image_raw"])
    return panels


# ---------------------------------------------------------------------------- records


def _decode_fields(rec: Record) -> tuple[dict[str, np.ndarray], list[Flag]]:
    from matdata.imageio import fast_decode_jpeg, fast_decode_png_gray

    out: dict[str, np.ndarray] = {}
    flags: list[Flag] = []
    for spec in IMAGE_FIELDS:
        data = getattr(rec, spec.name)
        if data is None:
            continue
        try:
            if spec.kind == "jpeg":
                out[spec.name] = fast_decode_jpeg(data)
            else:
                out[spec.name] = fast_decode_png_gray(data)
        except (MatdataError, ValueError) as exc:
            flags.append(Flag("undecodable", f"{spec.name}: {exc}"))
    return out, flags


def analyze_record(
    rec: Record,
    th: Thresholds,
    *,
    want_thumb: bool = False,
    flag_thumb: bool = True,
    extra_flags: Iterable[Flag] = (),
    thumb_height: int = THUMB_HEIGHT,
    band: bool = True,
) -> tuple[dict[str, Any], bytes | None]:
    """One row (provenance + stats + flags + hashes) and its strip when ``want_thumb``, or
    when ``flag_thumb`` and the record is flagged (None otherwise)."""
    meta = rec.meta if isinstance(rec.meta, dict) else {}
    row: dict[str, Any] = {"key": rec.key, **provenance(meta)}
    dec, flags = _decode_fields(rec)
    flags += list(extra_flags)
    row["phash"] = row["dhash"] = None
    thumb = None
    if "image" in dec and "alpha" in dec:
        stats, size_flags = record_stats(
            dec["image"],
            dec["alpha"],
            trimap=dec.get("trimap"),
            image_raw=dec.get("image_raw"),
            ignore=dec.get("ignore"),
            margin=th.bg_margin,
            band=band,
        )
        for name in ("fg", "bg"):
            arr = dec.get(name)
            if arr is not None and arr.shape[:2] != dec["image"].shape[:2]:
                h, w = arr.shape[:2]
                size_flags.append(
                    Flag("size_mismatch", f"{name} is {w}x{h}, image {stats['width']}x"
                         f"{stats['height']}")
                )  # fmt: skip
        row.update(stats)
        flags += size_flags + record_flags(stats, meta, th)
        row["phash"], row["dhash"] = image_hashes(dec["image"])
        if want_thumb or (flag_thumb and flags):
            thumb = contact_strip(strip_panels(dec), thumb_height)
    elif "image" in dec or "alpha" in dec:
        h, w = (dec.get("image") if "image" in dec else dec["alpha"]).shape[:2]
        row.update(width=w, height=h)
    row["flags"] = [f.to_dict() for f in flags]
    return row, thumb


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
) -> ShardScan:
    """Scan one shard (a :class:`matdata.shards.ShardInfo`); see the module docstring.

    ``sample``: positions (0-based, in reading order) of records whose strips are
    always returned; strips of flagged records are returned for the first
    ``max_flag_thumbs`` of them.  ``band``: positions whose unknown-band area is
    computed when the record has no stored trimap (None = every record).
    """
    from matdata.shards import iter_shard, shard_ok

    t0 = time.perf_counter()
    th = thresholds or Thresholds()
    res = ShardScan(shard=shard.to_dict())
    want = set(sample)
    band_at = None if band is None else set(band)
    bad_sum = None
    if verify:
        problem = shard_ok(dataset_dir, shard)
        if problem is not None:
            if problem.endswith(": missing"):
                res.problems.append(Flag("missing_shard", problem).to_dict())
                res.seconds = time.perf_counter() - t0
                return res
            bad_sum = Flag("checksum_mismatch", f"shard {problem}")
            res.problems.append(bad_sum.to_dict())
    flag_thumbs = 0
    for i, rec in enumerate(_iter_guarded(iter_shard(dataset_dir, shard), res.problems)):
        row, thumb = analyze_record(
            rec,
            th,
            want_thumb=i in want,
            flag_thumb=flag_thumbs < max_flag_thumbs,
            extra_flags=[bad_sum] if bad_sum is not None else (),
            thumb_height=thumb_height,
            band=band_at is None or i in band_at,
        )
        row["shard"] = shard.path
        row["position"] = i
        res.rows.append(row)
        if thumb is not None:
            res.thumbs[rec.key] = thumb
            flag_thumbs += i not in want
        res.records += 1
    res.seconds = time.perf_counter() - t0
    return res


def shard_strips(
    dataset_dir: str, shard: Any, keys: Iterable[str], thumb_height: int = THUMB_HEIGHT
) -> dict[str, bytes]:
    """Contact-sheet strips of the given keys of one shard (second pass for global flags)."""
    from matdata.shards import iter_shard

    wanted = set(keys)
    out: dict[str, bytes] = {}
    for rec in _iter_guarded(iter_shard(dataset_dir, shard), []):
        if rec.key not in wanted:
            continue
        dec, _ = _decode_fields(rec)
        if "image" in dec and "alpha" in dec:
            out[rec.key] = contact_strip(strip_panels(dec), thumb_height)
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
