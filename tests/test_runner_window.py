"""``run_shards`` keeps a bounded window of tasks in flight on a real LocalCluster, draws
tasks lazily in order, and still returns results in task order and reports failures."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cloudpickle
import pytest

from matdata.errors import DatasetError, SourceError
from pipelines.runner import RunStats, run_shards

# worker processes cannot import this test module: ship its functions and classes by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass
class SleepTask:
    name: str
    samples: int
    done_log: str
    fail: bool = False


@dataclass
class SleepResult:
    name: str
    samples: int
    skipped: bool = False


def _sleep_task(task: SleepTask, progress) -> SleepResult:
    """Sleep a little, then record completion in a file *before* returning (so the file's
    count is never behind what the client has seen)."""
    time.sleep(0.15)
    if progress is not None:
        progress(task.samples)
    with open(task.done_log, "a") as f:
        f.write(task.name + "\n")
    if task.fail:
        raise SourceError(f"bad input in {task.name}")
    return SleepResult(task.name, task.samples)


class RecordingTasks:
    """Re-iterable tasks that log, for each task the runner draws, how many tasks had
    completed by then (like a plan's TaskList: materialised on access)."""

    def __init__(self, n: int, done_log: Path, fail: set[int] = frozenset()):
        self.n, self.done_log, self.fail = n, done_log, fail
        self.pulls: list[tuple[int, int]] = []  # (task index, tasks completed when drawn)

    @property
    def total_samples(self) -> int:
        return 3 * self.n

    def __iter__(self):
        for i in range(self.n):
            done = len(self.done_log.read_text().splitlines()) if self.done_log.exists() else 0
            self.pulls.append((i, done))
            yield SleepTask(f"s-{i:03d}", 3, str(self.done_log), fail=i in self.fail)


def test_window_bounds_tasks_in_flight(tmp_path: Path) -> None:
    log = tmp_path / "done.txt"
    tasks = RecordingTasks(12, log)
    stats = RunStats()
    window = 3
    res = run_shards(
        tasks, _sleep_task, label="t", workers=2, progress=False, stats=stats, window=window
    )
    assert [r.name for r in res] == [f"s-{i:03d}" for i in range(12)]
    assert stats.window == window and stats.workers == 2
    # drawn lazily, once, in order
    assert [i for i, _ in tasks.pulls] == list(range(12))
    # when task j is drawn, at most window-1 earlier tasks are still unfinished (submitting
    # everything at once would draw all 12 before any finished)
    in_flight = [i - done for i, done in tasks.pulls]
    assert max(in_flight) <= window - 1, tasks.pulls
    assert len(log.read_text().splitlines()) == 12


def test_window_failures_collected_and_default_window(tmp_path: Path) -> None:
    log = tmp_path / "done.txt"
    tasks = RecordingTasks(10, log, fail={4, 7})
    stats = RunStats()
    with pytest.raises(DatasetError) as err:
        run_shards(tasks, _sleep_task, label="t", workers=1, progress=False, stats=stats)
    msg = err.value.one_line()
    assert "2 of 10 shards failed (first: s-004: bad input in s-004" in msg
    assert stats.window == 4  # 4 per worker thread, one worker of one thread
    # every task ran, also those after the failures
    assert sorted(log.read_text().split()) == [f"s-{i:03d}" for i in range(10)]
    assert max(i - done for i, done in tasks.pulls) <= 3


def test_plain_iterator_and_plan_total(tmp_path: Path) -> None:
    from matdata.build_config import BuildConfig
    from matdata.builder import prepare_build

    cfg = BuildConfig(
        fg="demo", bg="demo", out=str(tmp_path / "b"), per_fg=3, size=(32, 32),
        samples_per_shard=4,
    )  # fmt: skip
    plan = prepare_build(cfg)
    assert plan.tasks.total_samples == sum(t.samples for t in plan.tasks) > 0
    # a one-shot generator works too (kept for the total, then drawn in order)
    log = tmp_path / "done.txt"
    gen = (SleepTask(f"g-{i}", 1, str(log)) for i in range(3))
    res = run_shards(gen, _sleep_task, label="t", workers=1, progress=False, window=1)
    assert [r.name for r in res] == ["g-0", "g-1", "g-2"]
