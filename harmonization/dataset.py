"""Harmonizing one shard of a built dataset (the work of one Dask task; no Dask here).

For each record of the input shard: decode the composite (``image_raw`` when the record
was already harmonized, so models replace each other instead of stacking) and its alpha,
harmonize with ``alpha / 255`` as the mask, and write a record with the same key and
fields where ``image`` is the harmonized JPEG, ``image_raw`` the original bytes and
``meta["harmonization"]`` = ``{model, checkpoint_sha256, params, applied}`` with
``applied`` one of ``harmonized | empty | full``; the meta is schema 2 whatever the
input's (:func:`matdata.schema.conform_meta`: a schema-1 record gains every key).
Empty/full masks, and composites the harmonizer leaves pixel-identical, keep their
original bytes (no JPEG re-encode).  A record that cannot be decoded, or whose alpha and
image sizes differ, becomes a :class:`~matdata.rejects.Reject` (stage ``harmonize``), not
a crash.

The output shard is written atomically, then its marker ``.parts/SPLIT-NNNNN.json``, so
:func:`completed_shard` can skip it on a rerun.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from matdata.errors import MatdataError
from matdata.rejects import Reject

STATUSES = ("harmonized", "empty", "full")


@dataclass(frozen=True)
class HarmonizeTask:
    """One input shard to harmonize into ``out`` (picklable, small)."""

    src: str
    out: str
    shard: Any  # matdata.shards.ShardInfo of the input
    model: str
    checkpoint: str | None
    checkpoint_sha256: str | None
    params: dict[str, Any]
    device: str
    batch_size: int
    formats: tuple[str, ...]
    jpeg_quality: int
    verify: bool = True  # refuse an input shard whose bytes do not match its sha256
    #: threads decoding the next batch and encoding the previous one while the network runs
    #: (None: io_threads_for(device); 0: none).  Outputs are the same bytes either way.
    io_threads: int | None = None

    @property
    def samples(self) -> int:
        return int(self.shard.samples)

    @property
    def digest(self) -> str:
        """Identity of the task's output: input shard bytes, model, weights, parameters."""
        ident = {
            "shard": self.shard.sha256,
            "model": self.model,
            "checkpoint_sha256": self.checkpoint_sha256,
            "params": self.params,
            "formats": list(self.formats),
            "jpeg_quality": self.jpeg_quality,
        }
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()

    @property
    def name(self) -> str:
        return f"{self.shard.split}-{self.shard.index:05d}"


@dataclass
class HarmonizeResult:
    split: str
    index: int
    digest: str
    shards: list[Any]  # list[ShardInfo]
    counts: dict[str, int]  # harmonized / empty / full / rejected
    rejects: list[Reject] = field(default_factory=list)
    seconds: float = 0.0
    skipped: bool = False
    #: sha256 of the input bytes actually read; None: equal to the planned input's sha256
    input_sha256: str | None = None

    @property
    def samples(self) -> int:
        return sum(self.counts.get(k, 0) for k in STATUSES)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "split": self.split,
            "index": self.index,
            "digest": self.digest,
            "shards": [s.to_dict() for s in self.shards],
            "counts": dict(sorted(self.counts.items())),
            "rejects": [r.to_dict() for r in self.rejects],
        }
        if self.input_sha256 is not None:  # only with --no-verify: the input had changed
            d["input_sha256"] = self.input_sha256
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], skipped: bool = False) -> HarmonizeResult:
        from matdata.shards import ShardInfo

        return cls(
            split=d["split"],
            index=int(d["index"]),
            digest=d["digest"],
            shards=[ShardInfo.from_dict(s) for s in d["shards"]],
            counts={k: int(v) for k, v in d["counts"].items()},
            rejects=[Reject(**r) for r in d["rejects"]],
            skipped=skipped,
            input_sha256=str(d["input_sha256"]) if "input_sha256" in d else None,
        )


def _decode(rec: Any) -> tuple[bytes, np.ndarray, np.ndarray]:
    """``(source jpeg bytes, image (H,W,3) uint8, mask (H,W) float32)``; ItemError on misfit."""
    from matdata.errors import ItemError
    from matdata.imageio import fast_decode_jpeg, fast_decode_png_gray

    src = rec.image_raw if rec.image_raw is not None else rec.image
    image = fast_decode_jpeg(src)
    alpha = fast_decode_png_gray(rec.alpha)
    if alpha.shape != image.shape[:2]:
        raise ItemError(
            rec.key,
            "size_mismatch",
            f"alpha {alpha.shape[1]}x{alpha.shape[0]} vs image {image.shape[1]}x{image.shape[0]}",
        )
    return src, image, alpha.astype(np.float32) / 255.0


def _decode_or_error(rec: Any) -> tuple[bytes, np.ndarray, np.ndarray] | MatdataError:
    try:
        return _decode(rec)
    except MatdataError as exc:
        return exc


def _collect(
    records: list[Any], results: list[Any]
) -> tuple[list[tuple[Any, bytes, np.ndarray, np.ndarray]], dict[str, int], list[Reject]]:
    """Decoded records (in order) and the rejects among ``results`` of
    :func:`_decode_or_error` on ``records``."""
    counts = dict.fromkeys((*STATUSES, "rejected"), 0)
    rejects: list[Reject] = []
    decoded = []
    for rec, res in zip(records, results, strict=True):
        if isinstance(res, MatdataError):
            counts["rejected"] += 1
            rejects.append(Reject.from_error("harmonize", rec.key, res, stage="harmonize"))
        else:
            decoded.append((rec, *res))
    return decoded, counts, rejects


def _network(decoded: list[Any], harmonizer: Any) -> tuple[list[str], dict[int, np.ndarray]]:
    """The mask kind of each decoded record, and the harmonizer's output of the partial
    ones (by position)."""
    from harmonization.harmonizers import mask_kind

    kinds = [mask_kind(m) for _, _, _, m in decoded]
    todo = [i for i, k in enumerate(kinds) if k == "partial"]
    outs = harmonizer.batch([decoded[i][2] for i in todo], [decoded[i][3] for i in todo])
    return kinds, dict(zip(todo, outs, strict=True))


def _output(
    item: tuple[Any, bytes, np.ndarray, np.ndarray],
    status: str,
    out: np.ndarray | None,
    provenance: dict[str, Any],
    jpeg_quality: int,
) -> Any:
    """The output record of one decoded input (``out``: the harmonizer's pixels, or None)."""
    from matdata.imageio import encode_jpeg
    from matdata.schema import SCHEMA_VERSION, conform_meta

    rec, src, img, _m = item
    # unchanged pixels keep their original bytes (no JPEG generation loss)
    changed = out is not None and not np.array_equal(out, img)
    image = encode_jpeg(out, jpeg_quality) if changed else src
    # schema 2 (a schema-1 input gains every meta key, null where not applied)
    meta = conform_meta(rec.meta)
    meta["schema_version"] = SCHEMA_VERSION
    meta["harmonization"] = {**provenance, "applied": status}
    return replace(rec, image=image, image_raw=src, meta=meta)


def harmonize_records(
    records: list[Any], harmonizer: Any, provenance: dict[str, Any], jpeg_quality: int
) -> tuple[list[Any], dict[str, int], list[Reject]]:
    """Harmonize a batch of records; return ``(new records, counts, rejects)``."""
    decoded, counts, rejects = _collect(records, [_decode_or_error(r) for r in records])
    kinds, by_index = _network(decoded, harmonizer)
    new = []
    for i, item in enumerate(decoded):
        status = "harmonized" if kinds[i] == "partial" else kinds[i]
        counts[status] += 1
        new.append(_output(item, status, by_index.get(i), provenance, jpeg_quality))
    return new, counts, rejects


def io_threads_for(harmonizer: Any) -> int:
    """Default decode/encode threads of a shard task: up to 4 when the harmonizer runs a
    network on a GPU (the host's codecs are then the bottleneck), else 0 (on the CPU the
    network and the codecs share the same cores)."""
    import os

    device = getattr(harmonizer, "device", None)
    if getattr(device, "type", "cpu") != "cuda":
        return 0
    return max(1, min(4, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else os.cpu_count() or 1) - 1))  # fmt: skip


class _Overlapped:
    """Batches through decode (pool) -> network (caller's thread) -> encode (pool), with
    batch ``k+1`` decoding and batch ``k-1`` encoding while the network runs batch ``k``.
    Records come out in input order, the same bytes as :func:`harmonize_records`."""

    def __init__(
        self, harmonizer: Any, provenance: dict[str, Any], quality: int, threads: int
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.harmonizer, self.provenance, self.quality = harmonizer, provenance, quality
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="harmonize-io")
        self.decoding: tuple[list[Any], list[Any]] | None = None  # (records, futures)
        self.encoding: tuple[list[Any], dict[str, int], list[Reject]] | None = None

    def push(self, records: list[Any]) -> tuple[list[Any], dict[str, int], list[Reject]] | None:
        """Start decoding ``records`` ([] at the end: no new batch); run the network on the
        batch decoding before; return the batch encoded before that (or None)."""
        previous = self.decoding
        futures = [self.pool.submit(_decode_or_error, r) for r in records]
        self.decoding = (records, futures) if records else None
        done = self.encoding
        self.encoding = None
        if previous is not None:
            recs, futs = previous
            decoded, counts, rejects = _collect(recs, [f.result() for f in futs])
            kinds, by_index = _network(decoded, self.harmonizer)
            outs = []
            for i, item in enumerate(decoded):
                status = "harmonized" if kinds[i] == "partial" else kinds[i]
                counts[status] += 1
                outs.append(
                    self.pool.submit(
                        _output, item, status, by_index.get(i), self.provenance, self.quality
                    )
                )
            self.encoding = (outs, counts, rejects)
        if done is None:
            return None
        outs, counts, rejects = done
        return [f.result() for f in outs], counts, rejects

    def drain(self) -> list[tuple[list[Any], dict[str, int], list[Reject]]]:
        """The batches still in flight, in order."""
        out = []
        while self.decoding is not None or self.encoding is not None:
            got = self.push([])
            if got is not None:
                out.append(got)
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def harmonize_shard(
    task: HarmonizeTask, progress: Callable[[int], None] | None = None
) -> HarmonizeResult:
    """Harmonize one input shard into the output dataset (atomic), then write its marker.

    The input is hashed while it streams (:class:`matdata.shards.ShardReader`): with
    ``task.verify`` a shard whose bytes differ from its recorded sha256 fails the task
    before its output is committed; the hash of the bytes read is kept in the result."""
    from harmonization.harmonizers import load_harmonizer
    from matdata.shards import ShardReader, ShardWriter, write_marker

    t0 = time.perf_counter()
    harmonizer = load_harmonizer(task.model, task.checkpoint, task.device, **task.params)
    provenance = {
        "model": task.model,
        "checkpoint_sha256": task.checkpoint_sha256,
        "params": harmonizer.params(),
    }
    counts = dict.fromkeys((*STATUSES, "rejected"), 0)
    rejects: list[Reject] = []
    batch: list[Any] = []
    reader = ShardReader(task.src, task.shard, verify=task.verify)
    threads = io_threads_for(harmonizer) if task.io_threads is None else task.io_threads
    overlap = _Overlapped(harmonizer, provenance, task.jpeg_quality, threads) if threads else None
    with ShardWriter(task.out, task.shard.split, task.shard.index, task.formats) as writer:

        def emit(got: tuple[list[Any], dict[str, int], list[Reject]] | None) -> None:
            if got is None:
                return
            new, c, r = got
            for rec in new:
                writer.write(rec)
            for k, v in c.items():
                counts[k] += v
            rejects.extend(r)
            if progress is not None:
                progress(len(new))

        def flush() -> None:
            if overlap is None:
                emit(harmonize_records(batch, harmonizer, provenance, task.jpeg_quality))
            else:
                emit(overlap.push(list(batch)))
            batch.clear()

        try:
            for rec in reader:
                batch.append(rec)
                if len(batch) >= task.batch_size:
                    flush()
            if batch:
                flush()
            if overlap is not None:
                for got in overlap.drain():
                    emit(got)
        finally:
            if overlap is not None:
                overlap.close()
        read_sha = reader.finish()  # raises on a mismatch (verify): nothing is committed
        infos = writer.close()
    res = HarmonizeResult(
        task.shard.split, task.shard.index, task.digest, infos, counts, rejects,
        seconds=time.perf_counter() - t0,
        input_sha256=None if read_sha == task.shard.sha256 else read_sha,
    )  # fmt: skip
    write_marker(task.out, task.shard.split, task.shard.index, res.to_dict())
    return res


def completed_shard(task: HarmonizeTask) -> HarmonizeResult | None:
    """The recorded result if the marker matches ``task`` and its files re-hash; else None
    (:func:`matdata.shards.read_marker`)."""
    from matdata.shards import read_marker

    d = read_marker(task.out, task.shard.split, task.shard.index, task.digest, task.formats)
    if d is None:
        return None
    try:
        return HarmonizeResult.from_dict(d, skipped=True)
    except (ValueError, KeyError, TypeError, MatdataError):
        return None


def run_task(task: HarmonizeTask, progress: Callable[[int], None] | None = None) -> HarmonizeResult:
    """The per-shard function: reuse a complete shard from a previous run, else harmonize."""
    return completed_shard(task) or harmonize_shard(task, progress)
