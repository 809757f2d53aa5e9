"""The one resumable shard-job runner that build, harmonize (and any future pipeline) use.

A pipeline is a list of small, picklable *tasks* (one per output shard) and a per-task
function ``fn(task, progress) -> result`` that writes its shard atomically and then its
completion marker (:func:`matdata.shards.write_marker`), or returns the result recorded
by a previous run (:func:`matdata.shards.read_marker`).  The runner supplies the rest,
as separate stages that compose::

    with output_lock(out, job):                   # one writer per output (matdata.locks)
        prepare_output(out, plan_name, plan, ...) # refuse foreign/different output, clean
        results = run_shards(tasks, fn, ...)      # Dask submit / progress / failures
        ...pipeline's own aggregation...          # rejects, dataset.json (write_index)

:func:`run_job` chains them for a :class:`ShardJob`.  A task needs ``name`` (unique,
e.g. ``train-00003``) and ``samples`` (expected records, for the progress bar); a
result needs ``samples`` (records written) and ``skipped`` (found complete).  Workers
report progress as Dask events (throttled); a task's completion settles its count.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from matdata import testhooks
from matdata.errors import ConfigError, DatasetError, MatdataError
from matdata.locks import LOCK_NAME, output_lock
from matdata.progress import make_progress
from matdata.shards import FORMATS, INDEX_NAME, PARTS_DIR, REJECTS_NAME, list_temporaries
from matdata.storage import atomic_write_text, get_fs, join

#: Names a shard job owns inside its output directory (``--overwrite`` removes only these).
OWNED = (INDEX_NAME, REJECTS_NAME, PARTS_DIR, *FORMATS)

#: Per-task function: ``fn(task, progress)``; ``progress(n)`` reports n more records.
TaskFn = Callable[[Any, Callable[[int], None] | None], Any]


# ------------------------------------------------------------------------ output folder


def prepare_output(
    out: str,
    plan_name: str,
    plan: dict[str, Any],
    *,
    overwrite: bool = False,
    kind: str = "dataset",
    same: Callable[[dict[str, Any] | None, dict[str, Any]], bool] | None = None,
    differs: Callable[[dict[str, Any] | None, dict[str, Any]], str] | None = None,
) -> None:
    """Check ``out`` holds nothing or this same job, clean temporaries, record the plan.

    ``out`` holding files a job does not own is refused.  Holding a different job
    (``same(old_plan, plan)`` false; default: equal plans) is refused unless
    ``overwrite``; then only the names in :data:`OWNED` are deleted.  ``differs`` words
    the difference for the message.  Call it while holding :func:`output_lock`.
    """
    fs, root = get_fs(out)
    fs.makedirs(root, exist_ok=True)
    names = {n.rstrip("/").rsplit("/", 1)[-1] for n in fs.ls(root, detail=False)}
    names.discard(LOCK_NAME)
    foreign = sorted(n for n in names if n not in OWNED)
    if foreign:
        raise ConfigError(
            f"{out} holds files that are not a matdata {kind} ({', '.join(foreign[:3])}...)",
            hint="choose an empty or new --out directory",
        )
    if names:
        old = None
        try:
            with fs.open(join(root, plan_name), "rb") as f:
                old = json.loads(f.read())
        except (FileNotFoundError, ValueError):
            old = None
        old = old if isinstance(old, dict) else None
        is_same = same(old, plan) if same is not None else old == plan
        if not is_same:
            if not overwrite:
                what = f" ({differs(old, plan)})" if differs is not None else ""
                raise ConfigError(
                    f"{out} holds a different {kind}{what}",
                    hint="use --overwrite to replace it, or another --out",
                )
            for n in OWNED:
                p = join(root, n)
                if fs.exists(p):
                    fs.rm(p, recursive=True)
    for tmp in list_temporaries(out):
        fs.rm(tmp)
    atomic_write_text(join(out, plan_name), json.dumps(plan, sort_keys=True, indent=1) + "\n")


# --------------------------------------------------------------------------- progress


class RateColumn(ProgressColumn):
    """completed / elapsed records per second (shards finish in bursts: rich's windowed
    speed is too jumpy)."""

    def render(self, task: Any) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed or not task.completed:
            return Text("- samples/s", style="cyan")
        return Text(f"{task.completed / elapsed:,.1f} samples/s", style="cyan")


class Reporter:
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


@dataclass(frozen=True)
class TaskFailure:
    """A task that stopped on a :class:`MatdataError` (bad input, not a bug): returned as a
    value, so the worker does not log a traceback for an error the client reports."""

    message: str

    def one_line(self) -> str:
        return self.message


def _call(fn: TaskFn, task: Any, topic: str | None) -> Any:
    """What a worker runs: the pipeline's task function with a progress reporter."""
    try:
        res = fn(task, Reporter(topic, task.name) if topic else None)
    except MatdataError as exc:
        return TaskFailure(exc.one_line())
    if not getattr(res, "skipped", True):
        testhooks.shard_written()  # no-op unless a MATDATA_TEST_*_AFTER_SHARDS hook is set
    return res


# ------------------------------------------------------------------------- the Dask loop


@dataclass
class RunStats:
    """What :func:`run_shards` measured."""

    workers: int = 0
    seconds: float = 0.0  # wall time of the Dask phase (after the cluster started)
    window: int = 0  # most tasks submitted at a time


#: Tasks kept in flight per worker thread: enough to keep every worker busy while the
#: client refills, few enough that the driver and scheduler hold a bounded number of tasks.
WINDOW_PER_THREAD = 4


def run_shards(
    tasks: Iterable[Any],
    fn: TaskFn,
    *,
    label: str,
    workers: int | None = None,
    scheduler: str | None = None,
    console: Console | None = None,
    progress: bool = True,
    stats: RunStats | None = None,
    window: int | None = None,
) -> list[Any]:
    """Run ``fn`` on every task on Dask (first tasks first) and return the results in
    task order.  Failures are collected; after all tasks ran, the first failure (by task
    name) is raised as one :class:`DatasetError` (completed shards are kept).

    Tasks are drawn from ``tasks`` lazily and at most ``window`` (default
    :data:`WINDOW_PER_THREAD` per worker thread) are submitted at a time, refilled in task
    order as each completes, so memory stays flat however many shards there are.  The
    progress total is ``tasks.total_samples`` where ``tasks`` has it (a plan's
    :class:`~matdata.planning.TaskList`), else one pass summing ``samples``."""
    from distributed import as_completed

    from pipelines.cluster import dask_client

    console = console or Console(stderr=True)
    stats = stats if stats is not None else RunStats()
    results: dict[int, Any] = {}
    failures: list[tuple[str, Any]] = []
    total_samples = getattr(tasks, "total_samples", None)
    if total_samples is None and iter(tasks) is tasks:  # a one-shot iterator: keep it
        tasks = list(tasks)
    if total_samples is None:  # one pass, one task at a time (nothing kept)
        total_samples = sum(t.samples for t in tasks)
    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with (
        dask_client(workers, scheduler) as client,
        make_progress(
            *columns,
            console=console,
            disable=not progress,
            label=Text.from_markup(label).plain,
            unit="samples",
        ) as bar,
    ):
        info = client.scheduler_info().get("workers", {})
        stats.workers = len(info)
        if window is None:
            threads = sum(int(w.get("nthreads", 1) or 1) for w in info.values())
            window = WINDOW_PER_THREAD * max(1, threads)
        window = max(1, int(window))
        job = bar.add_task("samples", total=total_samples)
        # workers report samples as they go (events, throttled); a shard's completion then
        # settles its count exactly, whatever events arrived or were lost
        topic = f"matdata-run-{uuid.uuid4().hex[:12]}"
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
        t0 = time.perf_counter()
        pending = enumerate(tasks)  # lazy: a task is materialised when it is submitted
        in_flight: dict[Any, tuple[int, str, int]] = {}  # future -> (index, name, samples)
        done = as_completed()
        n_tasks = 0

        def _submit_next() -> None:
            nonlocal n_tasks
            nxt = next(pending, None)
            if nxt is None:
                return
            i, t = nxt
            n_tasks += 1
            fut = client.submit(_call, fn, t, topic, pure=False, priority=-i)
            in_flight[fut] = (i, t.name, t.samples)
            done.add(fut)

        for _ in range(window):
            _submit_next()
        for fut in done:
            i, name, samples = in_flight.pop(fut)
            try:
                res = fut.result()
            except Exception as exc:  # recorded; reported together below
                failures.append((name, exc))
                continue
            finally:
                fut.release()
                _submit_next()
            if isinstance(res, TaskFailure):
                failures.append((name, res))
                continue
            results[i] = res
            with lock:
                finished.add(name)
                seen = reported.pop(name, 0)
            total = bar.tasks[0].total or 0
            if res.skipped:  # resumed shards do not count towards the speed
                bar.update(job, total=total - samples)
            else:  # records lost to rejects leave the total too
                bar.update(job, total=total - (samples - res.samples))
                bar.advance(job, res.samples - seen)
        stats.seconds = time.perf_counter() - t0
        stats.window = window
        client.unsubscribe_topic(topic)
    if failures:
        name, exc = sorted(failures, key=lambda f: f[0])[0]
        msg = exc.one_line() if hasattr(exc, "one_line") else str(exc)
        raise DatasetError(
            f"{len(failures)} of {n_tasks} shards failed (first: {name}: {msg})",
            hint="complete shards are kept; fix the cause and re-run the same command",
        )
    return [results[i] for i in sorted(results)]


# ------------------------------------------------------------------------------ a job


@dataclass
class ShardJob:
    """A resumable job writing one shard per task into ``out`` (see the module docstring)."""

    kind: str  # "build", "harmonize": progress label, lock owner, messages
    out: str
    plan_name: str  # where the plan is recorded, relative to ``out``
    plan: dict[str, Any]
    tasks: Iterable[Any]  # drawn lazily, in order (a plan's TaskList, or a list)
    fn: TaskFn
    same: Callable[[dict[str, Any] | None, dict[str, Any]], bool] | None = None
    differs: Callable[[dict[str, Any] | None, dict[str, Any]], str] | None = None
    label: str = ""
    stats: RunStats = field(default_factory=RunStats)


def run_job(
    job: ShardJob,
    finish: Callable[[list[Any]], Any],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    console: Console | None = None,
    progress: bool = True,
) -> Any:
    """Lock ``job.out``, prepare it, run every task, then ``finish(results)`` (the
    pipeline's own aggregation: rejects and ``dataset.json``), still under the lock.
    Returns what ``finish`` returns."""
    console = console or Console(stderr=True)

    def warn(msg: str) -> None:
        console.print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)

    with output_lock(job.out, job.kind, warn=warn):
        prepare_output(
            job.out,
            job.plan_name,
            job.plan,
            overwrite=overwrite,
            kind="build" if job.kind == "build" else "dataset",
            same=job.same,
            differs=job.differs,
        )
        results = run_shards(
            job.tasks,
            job.fn,
            label=job.label or f"[bold]{job.kind}[/]",
            workers=workers,
            scheduler=scheduler,
            console=console,
            progress=progress,
            stats=job.stats,
        )
        return finish(results)
