"""``run_shards`` ships a *sequence* of tasks to the workers once and submits each task as
an index: the task specs stay small however much a task carries, the driver never
materialises a task when the sequence has ``info(i)``, and every result comes back with
the worker's busy time (utilisation), on a real LocalCluster."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cloudpickle

from pipelines.runner import RunStats, run_shards

# worker processes cannot import this test module: ship its functions and classes by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])

PAYLOAD = 256 * 1024


@dataclass
class BigTask:
    name: str
    samples: int
    payload: bytes


@dataclass
class SpecResult:
    name: str
    samples: int
    pid: int
    spec_bytes: int  # pickled size of the Dask task that ran this shard
    skipped: bool = False


class BigTasks(Sequence):
    """Tasks of ``PAYLOAD`` bytes each, materialised on access; records every access made
    in the process that holds this copy (the driver's copy stays in the driver)."""

    def __init__(self, n: int, with_info: bool = True):
        self.n, self.with_info = n, with_info
        self.gets: list[int] = []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # type: ignore[override]
        if not 0 <= i < self.n:
            raise IndexError(i)
        self.gets.append(i)
        return BigTask(f"t-{i:03d}", 2, bytes([i % 251]) * PAYLOAD)

    def __getattr__(self, name: str):
        if name == "info" and self.__dict__.get("with_info"):
            return lambda i: (f"t-{i:03d}", 2)
        raise AttributeError(name)


class Streamed:
    """``n`` big tasks drawn one at a time (not a sequence), with their total."""

    def __init__(self, n: int):
        self.n, self.total_samples = n, 2 * n

    def __iter__(self):
        return (BigTasks(self.n)[i] for i in range(self.n))


def _spec_size(task: BigTask, progress) -> SpecResult:
    """Return the pickled size of the Dask task running now (its spec as the worker got it)."""
    from distributed import get_worker
    from distributed.worker import thread_state

    assert task.payload == bytes([int(task.name[2:]) % 251]) * PAYLOAD
    spec = get_worker().state.tasks[thread_state.key].run_spec
    time.sleep(0.05)
    return SpecResult(task.name, task.samples, os.getpid(), len(cloudpickle.dumps(spec)))


def test_sequence_is_shipped_once_and_tasks_submitted_by_index() -> None:
    tasks = BigTasks(10)
    stats = RunStats()
    res = run_shards(tasks, _spec_size, label="t", workers=2, progress=False, stats=stats)
    assert [r.name for r in res] == [f"t-{i:03d}" for i in range(10)]
    assert stats.indexed
    assert tasks.gets == []  # the driver never materialised a task: the workers did
    assert all(r.pid != os.getpid() for r in res)
    # each spec is the function (here pickled by value), an index and a reference - not
    # the task's 256 KiB
    assert max(r.spec_bytes for r in res) < 16384, [r.spec_bytes for r in res]


def test_sequence_without_info_and_streamed_tasks() -> None:
    # without info(i) the driver reads name and size from the task (a list works likewise)
    tasks = BigTasks(3, with_info=False)
    res = run_shards(tasks, _spec_size, label="t", workers=1, progress=False)
    assert [r.name for r in res] == ["t-000", "t-001", "t-002"]
    assert max(r.spec_bytes for r in res) < 16384
    # an iterable that is not a sequence (here with its total) is drawn lazily: each task
    # travels in its spec (the peer)
    stats = RunStats()
    res = run_shards(Streamed(3), _spec_size, label="t", workers=1, progress=False, stats=stats)
    assert not stats.indexed
    assert min(r.spec_bytes for r in res) > PAYLOAD


def test_busy_time_and_utilisation() -> None:
    tasks = BigTasks(8)
    stats = RunStats()
    run_shards(tasks, _spec_size, label="t", workers=2, progress=False, stats=stats)
    assert stats.workers == 2
    assert 1 <= len(stats.busy) <= 2 and set(stats.busy) == set(stats.task_cpu)
    assert sum(stats.busy.values()) >= 8 * 0.05
    assert 0.0 < stats.utilisation <= 1.0
    assert stats.driver_cpu > 0.0
    # every worker's wall time is accounted for: before its first task, in tasks, between
    # tasks, after its last task
    accounted = sum(stats.busy.values()) + stats.ramp + stats.gaps + stats.tail
    assert abs(accounted - len(stats.busy) * stats.seconds) < 0.05, stats
    assert stats.ramp > 0.0 and stats.tail > 0.0
