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
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from matdata.errors import ConfigError, DatasetError
from matdata.progress import make_progress
from matdata.rejects import Reject, count_by_reason, read_rejects, write_rejects
from matdata.shards import (
    FORMATS,
    INDEX_NAME,
    PARTS_DIR,
    REJECTS_NAME,
    list_shards,
    list_temporaries,
    read_index,
    write_index,
)
from matdata.storage import atomic_write_text, exists, get_fs, join

PLAN_NAME = f"{PARTS_DIR}/harmonize.json"
OWNED = (INDEX_NAME, REJECTS_NAME, PARTS_DIR, *FORMATS)
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


def prepare_output(out: str, plan: dict[str, Any], *, overwrite: bool = False) -> None:
    """Refuse foreign files and a different harmonization in ``out`` (unless overwrite)."""
    fs, root = get_fs(out)
    fs.makedirs(root, exist_ok=True)
    names = {n.rstrip("/").rsplit("/", 1)[-1] for n in fs.ls(root, detail=False)}
    foreign = sorted(n for n in names if n not in OWNED)
    if foreign:
        raise ConfigError(
            f"{out} holds files that are not a matdata dataset ({', '.join(foreign[:3])})",
            hint="choose an empty or new --out directory",
        )
    if names:
        try:
            with fs.open(join(root, PLAN_NAME), "rb") as f:
                old = json.loads(f.read())
        except (FileNotFoundError, ValueError):
            old = None
        if old != plan:
            if not overwrite:
                raise ConfigError(
                    f"{out} holds a different dataset or harmonization",
                    hint="use --overwrite to replace it, or another --out",
                )
            for n in OWNED:
                if fs.exists(join(root, n)):
                    fs.rm(join(root, n), recursive=True)
    for tmp in list_temporaries(out):
        fs.rm(tmp)
    atomic_write_text(join(out, PLAN_NAME), json.dumps(plan, sort_keys=True, indent=1) + "\n")


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
    console: Console | None = None,
    progress: bool = True,
) -> HarmonizeSummary:
    """Harmonize every composite of ``dataset`` into a new dataset ``out``."""
    from distributed import as_completed

    from harmonization.dataset import HarmonizeTask, run_task
    from harmonization.harmonizers import load_harmonizer
    from pipelines.cluster import dask_client

    console = console or Console(stderr=True)
    t0 = time.perf_counter()
    params = dict(params or {})
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if _same_dir(dataset, out):
        raise ConfigError("--out must differ from the input dataset")
    # Fail fast, with one line, on a bad model name / checkpoint / device / parameter.
    if not scheduler:
        from harmonization.device import resolve_device

        resolve_device(device)
    if model not in ("none", "reinhard"):
        params.setdefault("batch_size", batch_size)
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
            formats=formats, jpeg_quality=quality,
        )
        for s in shards
    ]  # fmt: skip
    plan = {
        "input": [s.sha256 for s in shards],
        "model": model,
        "checkpoint_sha256": ckpt_sha,
        "params": probe.params(),
        "formats": list(formats),
        "jpeg_quality": quality,
    }
    plan["plan_sha256"] = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()
    prepare_output(out, plan, overwrite=overwrite)

    results = []
    failures: list[tuple[str, BaseException]] = []
    with dask_client(workers, scheduler) as client:
        n_workers = len(client.scheduler_info().get("workers", {}))
        futures = {
            client.submit(run_task, t, pure=False, priority=-i): t.name for i, t in enumerate(tasks)
        }
        columns = (
            TextColumn(f"[bold]harmonize[/] {model}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with make_progress(
            *columns, console=console, disable=not progress, label="harmonize", unit="samples"
        ) as bar:
            job = bar.add_task("samples", total=sum(s.samples for s in shards))
            for fut in as_completed(futures):
                try:
                    res = fut.result()
                except Exception as exc:  # reported together below; other shards are kept
                    failures.append((futures[fut], exc))
                    continue
                finally:
                    fut.release()
                results.append(res)
                bar.advance(job, res.samples + res.counts.get("rejected", 0))
    if failures:
        name, exc = sorted(failures, key=lambda f: f[0])[0]
        msg = exc.one_line() if hasattr(exc, "one_line") else str(exc)
        raise DatasetError(
            f"{len(failures)} of {len(tasks)} shards failed (first: {name}: {msg})",
            hint="complete shards are kept; fix the cause and re-run the same command",
        )

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
        "source_dataset": {"path": dataset, "shards": plan["input"]},
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
        workers=n_workers,
        rejects_by_reason=count_by_reason(new_rejects),
    )
