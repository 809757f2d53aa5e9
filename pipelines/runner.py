"""The one resumable shard-job runner that build, harmonize (and any future pipeline) use.

A pipeline is a list of small, picklable *tasks* (one per output shard) and a per-task
function ``fn(task, progress) -> result`` that writes its shard atomically and then its
completion marker (:func:`matdata.shards.write_marker`), or returns the result recorded
by a previous run (:func:`matdata.shards.read_marker`).  The runner supplies the rest,
as separate stages that compose::

    with output_lock(out, job):                   # one writer per output (matdata.locks)
        prepare_output(out, plan_name, plan, ...) # refuse foreign/different output, clean
        with staged_tasks(tasks, out) as tasks:   # a plan: one file, read per shard
            results = run_shards(tasks, fn, ...)  # Dask submit / progress / failures
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
from collections.abc import Callable, Iterable, Iterator, Sequence
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

#: Where :func:`staged_tasks` writes a job's tasks for the workers (removed after the run).
TASKS_NAME = f"{PARTS_DIR}/tasks.arrows"


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


@dataclass(frozen=True)
class _Outcome:
    """What a worker hands back for one task: the task's result (or a
    :class:`TaskFailure`), the wall and CPU seconds the worker spent on it, which worker
    it was and when (``time.time()``) it started and ended."""

    value: Any
    seconds: float
    cpu: float
    worker: str
    start: float = 0.0
    end: float = 0.0


def _call(fn: TaskFn, task: Any, topic: str | None) -> _Outcome:
    """What a worker runs: the pipeline's task function with a progress reporter."""
    started, t0, c0 = time.time(), time.perf_counter(), time.process_time()
    try:
        res = fn(task, Reporter(topic, task.name) if topic else None)
    except MatdataError as exc:
        res = TaskFailure(exc.one_line())
    else:
        if not getattr(res, "skipped", True):
            testhooks.shard_written()  # no-op unless a MATDATA_TEST_*_AFTER_SHARDS hook is set
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return _Outcome(res, wall, cpu, _worker_address(), started, started + wall)


def _call_at(fn: TaskFn, tasks: Sequence[Any], i: int, topic: str | None) -> _Outcome:
    """:func:`_call` on ``tasks[i]``: ``tasks`` was shipped to the workers once, so the
    task's spec is only this index (see :class:`_IndexedFeed`).  A task that cannot be
    read (a task file changed under the run) fails like a task that raised."""
    try:
        task = tasks[i]
    except MatdataError as exc:
        now = time.time()
        return _Outcome(TaskFailure(exc.one_line()), 0.0, 0.0, _worker_address(), now, now)
    return _call(fn, task, topic)


def _worker_address() -> str:
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:  # not running on a worker
        return ""


# ------------------------------------------------------------------------- the Dask loop


@dataclass
class RunStats:
    """What :func:`run_shards` measured."""

    workers: int = 0
    threads: int = 0  # worker threads in all (matdata's local clusters: 1 per worker)
    seconds: float = 0.0  # wall time of the Dask phase (after the cluster started)
    window: int = 0  # most tasks submitted at a time
    busy: dict[str, float] = field(default_factory=dict)  # worker -> seconds inside tasks
    task_cpu: dict[str, float] = field(default_factory=dict)  # worker -> CPU s inside tasks
    driver_cpu: float = 0.0  # CPU seconds of this process (client + local scheduler) meanwhile
    indexed: bool = False  # tasks shipped once and submitted by index (small task specs)
    # where the rest of workers x wall went, summed over workers (seconds): before a
    # worker's first task, between its tasks, after its last task (for 1-thread workers)
    ramp: float = 0.0
    gaps: float = 0.0
    tail: float = 0.0
    _first: dict[str, float] = field(default_factory=dict, repr=False)
    _last: dict[str, float] = field(default_factory=dict, repr=False)

    def record(self, out: _Outcome) -> None:
        """Add one task's outcome (busy and CPU time, idle gap before it on its worker)."""
        w = out.worker
        self.busy[w] = self.busy.get(w, 0.0) + out.seconds
        self.task_cpu[w] = self.task_cpu.get(w, 0.0) + out.cpu
        if w in self._last:
            self.gaps += max(0.0, out.start - self._last[w])
            self._last[w] = max(self._last[w], out.end)
            self._first[w] = min(self._first[w], out.start)
        else:
            self._first[w], self._last[w] = out.start, out.end

    def close(self, began: float, ended: float) -> None:
        """Ramp and tail from the phase's wall-clock start and end (``time.time()``)."""
        self.ramp = sum(max(0.0, t - began) for t in self._first.values())
        self.tail = sum(max(0.0, ended - t) for t in self._last.values())

    @property
    def utilisation(self) -> float:
        """Busy time of all workers / (worker threads x wall time): 1.0 when the runner
        kept every worker thread fed for the whole phase."""
        threads = self.threads or self.workers
        if not threads or self.seconds <= 0:
            return 0.0
        return sum(self.busy.values()) / (threads * self.seconds)


#: Tasks kept in flight per worker thread: enough to keep every worker busy while the
#: client refills, few enough that the driver and scheduler hold a bounded number of tasks.
WINDOW_PER_THREAD = 4


class _IndexedFeed:
    """Submits the tasks of a sequence by index.

    The sequence (a plan's :class:`~matdata.planning.TaskList`: arrays and Arrow tables, or
    a list) is scattered to every worker once; each task's spec is then ``(fn, ref, i,
    topic)``, a few hundred bytes however many samples the shard holds.  A worker
    materialises ``tasks[i]`` itself.  ``tasks.info(i) -> (name, samples)`` where present
    spares the driver materialising tasks at all.  Every worker holds the whole sequence,
    so a build ships its plan as a :class:`~matdata.taskfile.TaskFile` (see
    :func:`staged_tasks`: a few bytes per shard; a 340k-sample plan itself pickles to
    about 113 MB).  (distributed keeps the last 1,000 messages of every stream for
    debugging, task specs included: with specs carrying a shard's items, the driver's
    memory grew with the shard count.)"""

    def __init__(self, client: Any, tasks: Sequence[Any], fn: TaskFn, topic: str | None):
        self.client, self.tasks, self.fn, self.topic = client, tasks, fn, topic
        # broadcast: every worker holds it, so no worker is preferred for holding the data
        [self.ref] = client.scatter([tasks], broadcast=True, hash=False)
        self.info = getattr(tasks, "info", None)
        self.count = 0

    def next(self) -> tuple[Any, int, str, int] | None:
        i = self.count
        if i >= len(self.tasks):
            return None
        self.count += 1
        if self.info is not None:
            name, samples = self.info(i)
        else:
            t = self.tasks[i]
            name, samples = t.name, t.samples
        fut = self.client.submit(
            _call_at, self.fn, self.ref, i, self.topic, pure=False, priority=-i
        )
        return fut, i, name, samples

    def close(self) -> None:
        self.ref.release()


@contextlib.contextmanager
def staged_tasks(tasks: Iterable[Any], out: str) -> Iterator[Iterable[Any]]:
    """``tasks``, or where they can write themselves to a file (``tasks.to_file(path)``,
    a plan's :class:`~matdata.planning.TaskList`), that file's small reader, written to
    :data:`TASKS_NAME` in ``out`` and removed when the block ends.  Workers then read only
    the shard they run instead of each holding every task (flat in the number of shards)."""
    to_file = getattr(tasks, "to_file", None)
    if to_file is None:
        yield tasks
        return
    path = join(out, TASKS_NAME)
    try:
        yield to_file(path)
    finally:
        fs, p = get_fs(path)
        with contextlib.suppress(FileNotFoundError):
            fs.rm(p)


class _StreamFeed:
    """Submits the tasks of a one-shot iterable as they are drawn (each spec carries its
    task: pass a sequence for flat driver memory over many shards)."""

    def __init__(self, client: Any, tasks: Iterable[Any], fn: TaskFn, topic: str | None):
        self.client, self.fn, self.topic = client, fn, topic
        self.pending = enumerate(tasks)  # lazy: a task is materialised when it is submitted
        self.count = 0

    def next(self) -> tuple[Any, int, str, int] | None:
        nxt = next(self.pending, None)
        if nxt is None:
            return None
        i, t = nxt
        self.count += 1
        fut = self.client.submit(_call, self.fn, t, self.topic, pure=False, priority=-i)
        return fut, i, t.name, t.samples

    def close(self) -> None:
        pass


class _Tally:
    """The progress bar's sample count: workers' events as they arrive (throttled), then
    each shard's completion settles its count exactly, whatever events arrived or were
    lost.  Resumed shards leave the total (they do not count towards the speed), as do
    records lost to rejects."""

    def __init__(self, bar: Any, total: int):
        self.bar = bar
        self.job = bar.add_task("samples", total=total)
        self.lock = threading.Lock()
        self.reported: dict[str, int] = {}
        self.finished: set[str] = set()

    def on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        msg = event[1]
        with self.lock:
            if msg["shard"] in self.finished:
                return
            self.reported[msg["shard"]] = self.reported.get(msg["shard"], 0) + int(msg["n"])
        self.bar.advance(self.job, int(msg["n"]))

    def settle(self, name: str, planned: int, res: Any) -> None:
        with self.lock:
            self.finished.add(name)
            seen = self.reported.pop(name, 0)
        total = self.bar.tasks[0].total or 0
        if res.skipped:
            self.bar.update(self.job, total=total - planned)
        else:
            self.bar.update(self.job, total=total - (planned - res.samples))
            self.bar.advance(self.job, res.samples - seen)


def _total_samples(tasks: Iterable[Any]) -> tuple[Iterable[Any], int]:
    """``(tasks, total samples)``: ``tasks.total_samples`` where a plan's task list has it,
    else the sum of ``tasks.info(i)`` sizes, else one pass summing ``samples`` (a one-shot
    iterator is kept as a list for that)."""
    total = getattr(tasks, "total_samples", None)
    if total is not None:
        return tasks, int(total)
    info = getattr(tasks, "info", None)
    if info is not None and isinstance(tasks, Sequence):
        return tasks, sum(info(i)[1] for i in range(len(tasks)))
    if iter(tasks) is tasks:
        tasks = list(tasks)
    return tasks, sum(t.samples for t in tasks)


def _progress_bar(label: str, console: Console, progress: bool) -> Any:
    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    return make_progress(
        *columns,
        console=console,
        disable=not progress,
        label=Text.from_markup(label).plain,
        unit="samples",
    )


def _window(client: Any, window: int | None) -> tuple[int, int, int]:
    """``(workers, threads, window)``: the default window is :data:`WINDOW_PER_THREAD` per
    worker thread."""
    info = client.scheduler_info().get("workers", {})
    threads = sum(int(w.get("nthreads", 1) or 1) for w in info.values())
    if window is None:
        window = WINDOW_PER_THREAD * max(1, threads)
    return len(info), threads, max(1, int(window))


def _drive(
    feed: _IndexedFeed | _StreamFeed, window: int, tally: _Tally, stats: RunStats
) -> tuple[dict[int, Any], list[tuple[str, Any]]]:
    """Keep ``window`` tasks in flight, refilled in task order as each completes; collect
    results by task index and failures by task name."""
    from distributed import as_completed

    results: dict[int, Any] = {}
    failures: list[tuple[str, Any]] = []
    in_flight: dict[Any, tuple[int, str, int]] = {}  # future -> (index, name, samples)
    done = as_completed(with_results=True, raise_errors=False)  # gathered in the background

    def submit_next() -> None:
        nxt = feed.next()
        if nxt is not None:
            fut, i, name, samples = nxt
            in_flight[fut] = (i, name, samples)
            done.add(fut)

    for _ in range(window):
        submit_next()
    for fut, out in done:
        i, name, samples = in_flight.pop(fut)
        fut.release()
        submit_next()
        if not isinstance(out, _Outcome):  # an exception: recorded, reported together
            # (an error arrives as (type, exception, traceback), a cancellation as itself)
            failures.append((name, out[1] if isinstance(out, tuple) else out))
            continue
        stats.record(out)
        if isinstance(out.value, TaskFailure):
            failures.append((name, out.value))
            continue
        results[i] = out.value
        tally.settle(name, samples, out.value)
    return results, failures


def _raise_failures(failures: list[tuple[str, Any]], n_tasks: int) -> None:
    """One :class:`DatasetError` naming the first failure by task name (if any)."""
    if not failures:
        return
    name, exc = sorted(failures, key=lambda f: f[0])[0]
    msg = exc.one_line() if hasattr(exc, "one_line") else str(exc)
    raise DatasetError(
        f"{len(failures)} of {n_tasks} shards failed (first: {name}: {msg})",
        hint="complete shards are kept; fix the cause and re-run the same command",
    )


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

    At most ``window`` tasks (default :data:`WINDOW_PER_THREAD` per worker thread) are
    submitted at a time, refilled in task order as each completes.  A sequence of tasks
    (a plan's :class:`~matdata.planning.TaskList`, a list) is shipped to the workers once
    and its tasks submitted by index, so driver memory stays flat however many shards
    there are; another iterable with a ``total_samples`` is drawn lazily, each task
    travelling in its spec.  The progress total is ``tasks.total_samples`` where ``tasks``
    has it, else the sum of ``tasks.info(i)`` sizes, else one pass summing ``samples`` (a
    one-shot iterator is listed for it)."""
    from pipelines.cluster import dask_client

    console = console or Console(stderr=True)
    stats = stats if stats is not None else RunStats()
    tasks, total = _total_samples(tasks)
    with (
        dask_client(workers, scheduler) as client,
        _progress_bar(label, console, progress) as bar,
    ):
        stats.workers, stats.threads, stats.window = _window(client, window)
        tally = _Tally(bar, total)
        # workers report progress as events only when a bar shows it
        topic = f"matdata-run-{uuid.uuid4().hex[:12]}" if progress else None
        if topic:
            client.subscribe_topic(topic, tally.on_event)
        began, t0, c0 = time.time(), time.perf_counter(), time.process_time()
        stats.indexed = isinstance(tasks, Sequence)
        feed = (_IndexedFeed if stats.indexed else _StreamFeed)(client, tasks, fn, topic)
        try:
            results, failures = _drive(feed, stats.window, tally, stats)
        finally:
            feed.close()
        stats.seconds = time.perf_counter() - t0
        stats.driver_cpu = time.process_time() - c0
        stats.close(began, began + stats.seconds)
        if topic:
            client.unsubscribe_topic(topic)
    _raise_failures(failures, feed.count)
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
        with staged_tasks(job.tasks, job.out) as tasks:
            results = run_shards(
                tasks,
                job.fn,
                label=job.label or f"[bold]{job.kind}[/]",
                workers=workers,
                scheduler=scheduler,
                console=console,
                progress=progress,
                stats=job.stats,
            )
        return finish(results)
