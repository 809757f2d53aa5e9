"""``matdata harmonize`` as a Dask graph: one task per input shard, resumable.

Each task (:func:`harmonization.dataset.run_task`) reads one shard of the input dataset,
harmonizes it and writes the same shard (split, index, keys, formats) into ``--out``
atomically, then its marker; a rerun skips shards whose marker matches and whose files
re-hash.  ``dataset.json`` is written last, with the input's config and sources and a
``harmonization`` entry.  The network is loaded once per worker process (cached), and a
worker's ``auto`` device is its own GPU when it has one.  No image logic here.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from matdata.errors import ConfigError, DatasetError
from matdata.rejects import Reject, count_by_reason, read_rejects, write_rejects
from matdata.shards import PARTS_DIR, REJECTS_NAME, list_shards, read_index, write_index
from matdata.storage import exists, get_fs, join
from pipelines.runner import ShardJob, run_job

PLAN_NAME = f"{PARTS_DIR}/harmonize.json"
#: dataset.json fields written by ``write_index`` itself (the rest is carried over).
_INDEX_FIELDS = ("format", "schema_version", "formats", "splits", "samples", "shards")
_INDEX_FIELDS += ("config", "sources", "rejects")


@dataclass
class HarmonizeSummary:
    out: str
    model: str
    checkpoint_sha256: str | None
    samples: int
    counts: dict[str, int]  # harmonized / empty / full / rejected
    shards: int
    written: int
    skipped: int
    seconds: float
    workers: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)


def _same_dir(a: str, b: str) -> bool:
    fa, pa = get_fs(a)
    fb, pb = get_fs(b)
    return type(fa) is type(fb) and pa.rstrip("/") == pb.rstrip("/")


def run_harmonize(
    dataset: str,
    out: str,
    model: str,
    *,
    checkpoint: str | None = None,
    device: str = "auto",
    batch_size: int = 8,
    params: dict[str, Any] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    verify: bool = True,
    console: Console | None = None,
    progress: bool = True,
) -> HarmonizeSummary:
    """Harmonize every composite of ``dataset`` into a new dataset ``out``.

    Each input shard is hashed while it is read; with ``verify`` (default) a shard whose
    bytes differ from ``dataset.json`` fails its task with one line naming it.  The hashes
    of the bytes actually read are recorded in ``harmonization.source_dataset.shards``."""
    from harmonization.dataset import HarmonizeTask, run_task
    from harmonization.harmonizers import load_harmonizer

    console = console or Console(stderr=True)
    t0 = time.perf_counter()
    _check_arguments(dataset, out, batch_size, device, scheduler)
    params = dict(params or {})
    if model not in ("none", "reinhard"):
        params.setdefault("batch_size", batch_size)
    # Fail fast, with one line, on a bad model name / checkpoint / parameter.
    probe = load_harmonizer(model, checkpoint, "cpu", **params)
    ckpt_sha = probe.checkpoint_sha256
    index = read_index(dataset)
    shards = list_shards(dataset)
    if not shards:
        raise DatasetError(f"{dataset} has no shards")
    quality = int((index.get("config") or {}).get("jpeg_quality") or 95)
    formats = tuple(index.get("formats") or (shards[0].format,))
    tasks = [
        HarmonizeTask(
            src=dataset, out=out, shard=s, model=model, checkpoint=checkpoint,
            checkpoint_sha256=ckpt_sha, params=params, device=device, batch_size=batch_size,
            formats=formats, jpeg_quality=quality, verify=verify,
        )
        for s in shards
    ]  # fmt: skip
    plan = _plan(shards, model, probe, formats, quality)
    job = ShardJob(
        kind="harmonize",
        out=out,
        plan_name=PLAN_NAME,
        plan=plan,
        tasks=tasks,
        fn=run_task,
        label=f"[bold]harmonize[/] {model}",
    )

    def finish(results: list[Any]) -> HarmonizeSummary:
        return _finish(dataset, out, index, plan, probe, job, results, t0)

    return run_job(
        job,
        finish,
        workers=workers,
        scheduler=scheduler,
        overwrite=overwrite,
        console=console,
        progress=progress,
    )


def _check_arguments(
    dataset: str, out: str, batch_size: int, device: str, scheduler: str | None
) -> None:
    """Refuse bad arguments with one line, before any work."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if _same_dir(dataset, out):
        raise ConfigError("--out must differ from the input dataset")
    if not scheduler:  # (on a cluster, each worker resolves its own device)
        from harmonization.device import resolve_device

        resolve_device(device)


def _plan(
    shards: list[Any], model: str, probe: Any, formats: tuple[str, ...], quality: int
) -> dict[str, Any]:
    """What a rerun must match to resume: the input shards' hashes, the model, its
    checkpoint and parameters, the output formats; with its own sha256."""
    plan = {
        "input": [s.sha256 for s in shards],
        "model": model,
        "checkpoint_sha256": probe.checkpoint_sha256,
        "params": probe.params(),
        "formats": list(formats),
        "jpeg_quality": quality,
    }
    plan["plan_sha256"] = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()
    return plan


def _finish(
    dataset: str,
    out: str,
    index: dict[str, Any],
    plan: dict[str, Any],
    probe: Any,
    job: ShardJob,
    results: list[Any],
    t0: float,
) -> HarmonizeSummary:
    """Rejects, ``dataset.json`` and the summary once every shard is harmonized."""
    model, ckpt_sha = plan["model"], plan["checkpoint_sha256"]
    # the hash of the bytes each task read (equal to the planned one unless --no-verify)
    read = [r.input_sha256 or planned for r, planned in zip(results, plan["input"], strict=True)]
    results.sort(key=lambda r: (r.split, r.index))
    new_rejects: list[Reject] = [rj for r in results for rj in r.rejects]
    old_rejects: list[Reject] = []
    if exists(join(dataset, REJECTS_NAME)):
        old_rejects = read_rejects(join(dataset, REJECTS_NAME))
    all_rejects = old_rejects + new_rejects
    write_rejects(join(out, REJECTS_NAME), all_rejects)
    counts = {k: sum(r.counts.get(k, 0) for r in results) for k in results[0].counts}
    harmonization = {
        "model": model,
        "checkpoint_sha256": ckpt_sha,
        "params": probe.params(),
        "counts": counts,
        "source_dataset": {"path": dataset, "shards": read},
        "plan_sha256": plan["plan_sha256"],
    }
    extra = {k: v for k, v in index.items() if k not in _INDEX_FIELDS and k != "harmonization"}
    extra["harmonization"] = harmonization
    rejects_info = dict(index.get("rejects") or {})
    rejects_info.update(
        file=REJECTS_NAME,
        total=len(all_rejects),
        by_reason=count_by_reason(all_rejects),
        harmonize=count_by_reason(new_rejects),
    )
    write_index(
        out,
        [s for r in results for s in r.shards],
        config=index.get("config") or {},
        sources=index.get("sources") or {},
        rejects=rejects_info,
        extra=extra,
    )
    written = [r for r in results if not r.skipped]
    return HarmonizeSummary(
        out=out,
        model=model,
        checkpoint_sha256=ckpt_sha,
        samples=sum(r.samples for r in results),
        counts=counts,
        shards=len(results),
        written=len(written),
        skipped=len(results) - len(written),
        seconds=time.perf_counter() - t0,
        workers=job.stats.workers,
        rejects_by_reason=count_by_reason(new_rejects),
    )
