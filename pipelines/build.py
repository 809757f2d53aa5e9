"""The build as a Dask graph of shard tasks: plan, resume, run, index.

One task per shard (:class:`matdata.builder.ShardTask`); each writes its files atomically
and then its completion marker, so the graph can die at any point and a rerun of the same
command skips the shards whose marker matches and whose files re-hash correctly, then
writes ``dataset.json`` last.  No image logic here: that is :mod:`matdata.builder`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from matdata.build_config import BuildConfig, check_max_reject_rate
from matdata.builder import (
    BuildPlan,
    ShardResult,
    ShardTask,
    completed_shard,
    prepare_build,
    run_shard,
)
from matdata.errors import ConfigError
from matdata.rejects import Reject, check_reject_rate, count_by_reason, write_rejects
from matdata.shards import PARTS_DIR, REJECTS_NAME, write_index
from matdata.storage import join
from pipelines.runner import OWNED, ShardJob, run_job
from pipelines.runner import prepare_output as runner_prepare_output

PLAN_NAME = f"{PARTS_DIR}/plan.json"
__all__ = ["OWNED", "PLAN_NAME", "BuildSummary", "build_job", "prepare_output", "run_build"]


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


def build_shard(task: ShardTask, progress: Callable[[int], None] | None = None) -> ShardResult:
    """The per-shard function: reuse a complete shard from a previous run, else write it."""
    done = completed_shard(task)
    if done is not None:
        return done
    return run_shard(task, progress=progress)


# ----------------------------------------------------------------------- output folder


def _plan_record(plan: BuildPlan) -> dict[str, Any]:
    return {
        "config": plan.config.to_dict(),
        "plan_sha256": plan.plan_sha256,
        "shards": plan.shard_names(),
    }


def _diff_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _same_build(old: dict[str, Any] | None, mine: dict[str, Any]) -> bool:
    return (
        old is not None
        and old.get("plan_sha256") == mine["plan_sha256"]
        and old.get("config") == mine["config"]
    )


def _build_differs(old: dict[str, Any] | None, mine: dict[str, Any]) -> str:
    if old and isinstance(old.get("config"), dict) and old["config"] != mine["config"]:
        return "options differ: " + ", ".join(_diff_keys(old["config"], mine["config"]))
    return "its inputs or plan differ"


def build_job(plan: BuildPlan) -> ShardJob:
    """The build as a :class:`~pipelines.runner.ShardJob` over ``plan``'s shard tasks."""
    return ShardJob(
        kind="build",
        out=plan.config.out,
        plan_name=PLAN_NAME,
        plan=_plan_record(plan),
        tasks=plan.tasks,
        fn=build_shard,
        same=_same_build,
        differs=_build_differs,
    )


def prepare_output(plan: BuildPlan, *, overwrite: bool = False) -> None:
    """Check ``--out`` holds nothing or this same build, clean temporaries, record the plan
    (:func:`pipelines.runner.prepare_output`; run without the lock, for benchmarks)."""
    job = build_job(plan)
    runner_prepare_output(
        job.out, job.plan_name, job.plan, overwrite=overwrite, kind="build",
        same=job.same, differs=job.differs,
    )  # fmt: skip


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
    max_reject_rate: float = 0.01,
) -> BuildSummary:
    """Plan, run every missing shard on Dask, then write ``rejects.parquet`` and
    ``dataset.json`` (last).  Raises :class:`DatasetError` if any shard failed (the
    others are kept; rerunning resumes), and :class:`~matdata.rejects.RejectRateError`
    (``rejects.parquet`` written, no ``dataset.json``) when the build-stage rejects of a
    source exceed ``max_reject_rate`` of the inputs it found."""
    console = console or Console(stderr=True)
    t0 = time.perf_counter()
    if workers is not None and workers < 1:  # checked before anything is written
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    check_max_reject_rate(max_reject_rate)
    plan = prepare_build(cfg)
    for w in plan.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    job = build_job(plan)
    return run_job(
        job,
        lambda results: _finish(plan, job, results, t0, max_reject_rate),
        workers=workers,
        scheduler=scheduler,
        overwrite=overwrite,
        console=console,
        progress=progress,
    )


def _finish(
    plan: BuildPlan, job: ShardJob, results: list[ShardResult], t0: float, max_reject_rate: float
) -> BuildSummary:
    """Rejects, ``dataset.json`` and the summary of a build whose shards are all done."""
    cfg = plan.config
    results.sort(key=lambda r: (r.split, r.index))
    build_rejects = _build_rejects(results)
    all_rejects = plan.rejects + build_rejects
    write_rejects(join(cfg.out, REJECTS_NAME), all_rejects)
    acct = _accounting(plan, build_rejects)
    check_reject_rate(build_rejects, acct, max_reject_rate)
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
        workers=job.stats.workers,
        shard_seconds=job.stats.seconds,
        task_seconds=sum(r.seconds for r in written),
        peak_rss_mb=max((r.peak_rss_mb for r in written), default=0.0),
    )
