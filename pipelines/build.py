"""The build as a Dask graph of shard tasks: plan, resume, run, index.

One task per shard (:class:`matdata.builder.ShardTask`); each writes its files atomically
and then its completion marker, so the graph can die at any point and a rerun of the same
command skips the shards whose marker matches and whose files re-hash correctly, then
writes ``dataset.json`` last.  No image logic here: that is :mod:`matdata.builder`.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from matdata.builder import (
    BuildConfig,
    BuildPlan,
    ShardResult,
    ShardTask,
    completed_shard,
    prepare_build,
    run_shard,
)
from matdata.errors import ConfigError, DatasetError
from matdata.rejects import Reject, count_by_reason, write_rejects
from matdata.shards import (
    FORMATS,
    INDEX_NAME,
    PARTS_DIR,
    REJECTS_NAME,
    list_temporaries,
    write_index,
)
from matdata.storage import atomic_write_text, get_fs, join

PLAN_NAME = f"{PARTS_DIR}/plan.json"
#: Names a build owns inside its output directory (``--overwrite`` removes only these).
OWNED = (INDEX_NAME, REJECTS_NAME, PARTS_DIR, *FORMATS)


@dataclass
class BuildSummary:
    """What a build did; :func:`run_build` returns it and the CLI prints it."""

    out: str
    samples: int
    splits: dict[str, int]
    shards: int  # shard files (all formats)
    written: int  # shard tasks run now
    skipped: int  # shard tasks found complete (resume)
    seconds: float
    samples_written: int
    accounting: dict[str, dict[str, int]]  # source -> found/used/rejected/...
    rejects_by_reason: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    workers: int = 0
    shard_seconds: float = 0.0  # wall time of the Dask phase (after the cluster started)
    task_seconds: float = 0.0  # sum over written shards of their task time (worker busy)
    peak_rss_mb: float = 0.0  # highest worker peak RSS reported by a written shard

    @property
    def throughput(self) -> float:
        return self.samples_written / self.seconds if self.seconds > 0 else 0.0


class _RateColumn(ProgressColumn):
    def render(self, task: Any) -> Text:
        # completed / elapsed: shards finish in bursts, rich's windowed speed is too jumpy
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed or not task.completed:
            return Text("- samples/s", style="cyan")
        return Text(f"{task.completed / elapsed:,.1f} samples/s", style="cyan")


class _Reporter:
    """Progress callback run on a worker: sends ``{"shard", "n"}`` events to the client's
    topic at most every ``interval`` seconds (no-op outside a Dask worker)."""

    def __init__(self, topic: str, shard: str, interval: float = 0.5):
        self.topic, self.shard, self.interval = topic, shard, interval
        self.pending = 0
        self.last = time.monotonic()

    def __call__(self, n: int) -> None:
        self.pending += n
        if time.monotonic() - self.last >= self.interval:
            from distributed import get_worker

            with contextlib.suppress(ValueError):  # ValueError: not running on a worker
                get_worker().log_event(self.topic, {"shard": self.shard, "n": self.pending})
            self.pending = 0
            self.last = time.monotonic()


def build_shard(task: ShardTask, topic: str | None = None) -> ShardResult:
    """The Dask task: reuse a complete shard from a previous run, else write it
    (reporting progress to ``topic`` when given)."""
    done = completed_shard(task)
    if done is not None:
        return done
    return run_shard(task, progress=_Reporter(topic, task.name) if topic else None)


# ----------------------------------------------------------------------- output folder


def _plan_record(plan: BuildPlan) -> dict[str, Any]:
    return {
        "config": plan.config.to_dict(),
        "plan_sha256": plan.plan_sha256,
        "shards": plan.shard_names(),
    }


def _diff_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def prepare_output(plan: BuildPlan, *, overwrite: bool = False) -> None:
    """Check ``--out`` holds nothing or this same build, clean temporaries, record the plan.

    A directory holding a different build is refused unless ``overwrite``; then only the
    files a build owns (:data:`OWNED`) are deleted.  Unknown files are never deleted.
    """
    out = plan.config.out
    fs, root = get_fs(out)
    fs.makedirs(root, exist_ok=True)
    names = {n.rstrip("/").rsplit("/", 1)[-1] for n in fs.ls(root, detail=False)}
    foreign = sorted(n for n in names if n not in OWNED)
    if foreign:
        raise ConfigError(
            f"{out} holds files that are not a matdata build ({', '.join(foreign[:3])}...)",
            hint="choose an empty or new --out directory",
        )
    mine = _plan_record(plan)
    if names:
        old = None
        try:
            with fs.open(join(root, PLAN_NAME), "rb") as f:
                old = json.loads(f.read())
        except (FileNotFoundError, ValueError):
            old = None
        same = old is not None and old.get("plan_sha256") == mine["plan_sha256"]
        same = same and old.get("config") == mine["config"]
        if not same and not overwrite:
            what = (
                "options differ: " + ", ".join(_diff_keys(old["config"], mine["config"]))
                if old and old.get("config") != mine["config"]
                else "its inputs or plan differ"
            )
            raise ConfigError(
                f"{out} holds a different build ({what})",
                hint="use --overwrite to replace it, or another --out",
            )
        if not same:
            for n in OWNED:
                p = join(root, n)
                if fs.exists(p):
                    fs.rm(p, recursive=True)
    for tmp in list_temporaries(out):
        fs.rm(tmp)
    atomic_write_text(join(out, PLAN_NAME), json.dumps(mine, sort_keys=True, indent=1) + "\n")


# ------------------------------------------------------------------------------- build


def _build_rejects(results: list[ShardResult]) -> list[Reject]:
    """Build-stage rejects, once per (source, path, reason) (a foreground spanning two
    shards may fail in both)."""
    seen: dict[tuple[str, str, str], Reject] = {}
    for r in results:
        for rej in r.rejects:
            seen.setdefault((rej.source, rej.path, rej.reason), rej)
    return [seen[k] for k in sorted(seen)]


def _accounting(plan: BuildPlan, build_rejects: list[Reject]) -> dict[str, dict[str, int]]:
    acct: dict[str, dict[str, int]] = {}
    failed: dict[str, int] = {}
    for rej in build_rejects:
        failed[rej.source] = failed.get(rej.source, 0) + 1
    for name, a in plan.accounting.items():
        rejected = a["ingest_rejected"] + a["filtered"] + failed.get(name, 0)
        acct[name] = {
            "found": a["found"],
            "ingest_rejected": a["ingest_rejected"],
            "filtered": a["filtered"],
            "build_failed": failed.get(name, 0),
            "rejected": rejected,
            "used": a["found"] - rejected,
        }
    return acct


def run_build(
    cfg: BuildConfig,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    console: Console | None = None,
    progress: bool = True,
) -> BuildSummary:
    """Plan, run every missing shard on Dask, then write ``rejects.parquet`` and
    ``dataset.json`` (last).  Raises :class:`DatasetError` if any shard failed (the
    others are kept; rerunning resumes)."""
    from distributed import as_completed

    from pipelines.cluster import dask_client

    console = console or Console(stderr=True)
    t0 = time.perf_counter()
    plan = prepare_build(cfg)
    for w in plan.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    prepare_output(plan, overwrite=overwrite)

    results: list[ShardResult] = []
    failures: list[tuple[str, BaseException]] = []
    columns = (
        TextColumn("[bold]build[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with (
        dask_client(workers, scheduler) as client,
        Progress(*columns, console=console, disable=not progress, transient=False) as bar,
    ):
        n_workers = len(client.scheduler_info().get("workers", {}))
        job = bar.add_task("samples", total=plan.samples)
        # workers report samples as they go (events, throttled); a shard's completion then
        # settles its count exactly, whatever events arrived or were lost
        topic = f"matdata-build-{uuid.uuid4().hex[:12]}"
        lock = threading.Lock()
        reported: dict[str, int] = {}
        finished: set[str] = set()

        def _on_event(event: tuple[float, dict[str, Any]]) -> None:
            msg = event[1]
            with lock:
                if msg["shard"] in finished:
                    return
                reported[msg["shard"]] = reported.get(msg["shard"], 0) + int(msg["n"])
            bar.advance(job, int(msg["n"]))

        client.subscribe_topic(topic, _on_event)
        t_shards = time.perf_counter()
        futures = {
            client.submit(build_shard, t, topic, pure=False, priority=-i): t
            for i, t in enumerate(plan.tasks)
        }
        for fut in as_completed(futures):
            task = futures[fut]
            name = task.name
            try:
                res = fut.result()
            except Exception as exc:  # recorded; the build reports them all at the end
                failures.append((name, exc))
                continue
            finally:
                fut.release()
            results.append(res)
            with lock:
                finished.add(name)
                seen = reported.pop(name, 0)
            total = bar.tasks[0].total or 0
            if res.skipped:  # resumed shards do not count towards the speed
                bar.update(job, total=total - res.samples)
            else:  # samples lost to build rejects leave the total too
                bar.update(job, total=total - (task.samples - res.samples))
                bar.advance(job, res.samples - seen)
        t_shards = time.perf_counter() - t_shards
        client.unsubscribe_topic(topic)
    if failures:
        name, exc = sorted(failures, key=lambda f: f[0])[0]
        raise DatasetError(
            f"{len(failures)} of {len(plan.tasks)} shards failed (first: {name}: {exc})",
            hint="complete shards are kept; fix the cause and re-run the same command",
        )

    results.sort(key=lambda r: (r.split, r.index))
    build_rejects = _build_rejects(results)
    all_rejects = plan.rejects + build_rejects
    write_rejects(join(cfg.out, REJECTS_NAME), all_rejects)
    acct = _accounting(plan, build_rejects)
    splits: dict[str, int] = {}
    for r in results:
        splits[r.split] = splits.get(r.split, 0) + r.samples
    infos = [s for r in results for s in r.shards]
    by_source: dict[str, dict[str, dict[str, int]]] = {"fg": {}, "bg": {}}
    for r in results:  # samples written per source and split (fg and bg views)
        for key, n in r.by_source.items():
            role, _, name = key.partition("/")
            d = by_source.setdefault(role, {}).setdefault(name, {})
            d[r.split] = d.get(r.split, 0) + n
    rejects_info = {
        "file": REJECTS_NAME,
        "total": len(all_rejects),
        "by_reason": count_by_reason(all_rejects),
        "by_source": acct,
    }
    write_index(
        cfg.out,
        infos,
        config=cfg.to_dict(),
        sources=plan.sources,
        rejects=rejects_info,
        extra={
            "plan_sha256": plan.plan_sha256,
            "samples_per_shard": plan.samples_per_shard,
            "pairing": {
                "per_fg": cfg.per_fg,
                "with_replacement": plan.with_replacement,
                "bg_pool_all_splits": plan.bg_pool_all,
            },
            "warnings": plan.warnings,
            "samples_by_source": by_source,
        },
    )
    written = [r for r in results if not r.skipped]
    return BuildSummary(
        out=cfg.out,
        samples=sum(splits.values()),
        splits=dict(sorted(splits.items())),
        shards=len(infos),
        written=len(written),
        skipped=len(results) - len(written),
        seconds=time.perf_counter() - t0,
        samples_written=sum(r.samples for r in written),
        accounting=acct,
        rejects_by_reason=count_by_reason(all_rejects),
        warnings=plan.warnings,
        workers=n_workers,
        shard_seconds=t_shards,
        task_seconds=sum(r.seconds for r in written),
        peak_rss_mb=max((r.peak_rss_mb for r in written), default=0.0),
    )
