"""Driver peak RSS of :func:`pipelines.runner.run_shards` as the number of shards grows
(issue 15: 340k samples are about 1,400 shards; a build with small shards has many more).

Each run starts a fresh child process that runs ``run_shards`` over N tiny shard tasks on
a LocalCluster of 2 workers (the scheduler lives in the driver process, as in ``matdata
build``).  Each task carries a payload of ``--payload`` KiB (a real ``ShardTask`` carries
its pairs, items and sources); the task function does nothing, so the figures are the
runner's own costs.  The child reports its peak RSS (``resource.getrusage``, robust when
the machine is busy) minus its RSS after imports, and its CPU time per task (client and
in-process scheduler).  Modes, in the same run:

* ``indexed``: the tasks are a sequence (like a plan's ``TaskList``, with ``info(i)``),
  shipped to the workers once; each task's spec is an index (what the runner does now);
* ``embedded``: the same tasks as an iterator, each travelling in its spec, with
  distributed's own debug log length (1,000): what the runner did before for every
  pipeline.

    python benchmarks/runner_memory.py                    # N = 100 and 1400
    python benchmarks/runner_memory.py --shards 100,4000 --payload 128

Verdict: the indexed driver's peak at the largest N within +15 MB of the smallest N.

Cause of the growth with embedded specs (distributed 2026.8.0): every ``BatchedSend``
stream keeps its last ``distributed.admin.low-level-log-length`` (1,000) messages for
debugging, task specs included - the client's stream to the scheduler and, in the
in-process scheduler, its stream to each worker.  So the driver holds up to about
2 x 1,000 x the spec size: measured 100 -> 1,400 shards of 64 KiB: +182 MB, and +2 MB with
that log length set to 10.  With this runner (load average 15-18): indexed 135 -> 137 MB
(+2 MB), embedded (the runner before) 148 -> 305 MB (+157 MB).  Indexed specs are a few
hundred bytes, so the same logs stay small; :mod:`pipelines.cluster` also sets the log
length to 100 for the clusters matdata starts, so what is left of the growth stops after
100 shards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class TinyTask:
    name: str
    samples: int
    payload: bytes


@dataclass
class TinyResult:
    samples: int
    skipped: bool = False


def _noop(task: TinyTask, progress) -> TinyResult:
    return TinyResult(task.samples)


class LazyTasks(Sequence):
    """N tasks materialised on access (like :class:`matdata.planning.TaskList`)."""

    def __init__(self, n: int, payload: int):
        self.n, self.payload = n, payload

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> TinyTask:  # type: ignore[override]
        if not 0 <= i < self.n:
            raise IndexError(i)
        return TinyTask(f"train-{i:06d}", 1, os.urandom(self.payload))

    def info(self, i: int) -> tuple[str, int]:
        return f"train-{i:06d}", 1

    @property
    def total_samples(self) -> int:
        return self.n


class StreamTasks:
    """The same tasks as a one-shot iterator (each task travels in its spec)."""

    def __init__(self, n: int, payload: int):
        self.tasks = LazyTasks(n, payload)
        self.total_samples = n

    def __iter__(self):
        return (self.tasks[i] for i in range(len(self.tasks)))


def child(n: int, mode: str, payload: int) -> None:
    import resource

    # this module by its importable name, so that workers import the task function and
    # classes by reference as they do a pipeline's (not pickled by value from __main__)
    from benchmarks import runner_memory as me
    from pipelines import cluster
    from pipelines.runner import RunStats, run_shards

    if mode == "embedded":  # the runner before: distributed's default log length too
        cluster.LOG_LENGTH = 1000

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats = RunStats()
    t0 = time.perf_counter()
    tasks = (me.LazyTasks if mode == "indexed" else me.StreamTasks)(n, payload * 1024)
    res = run_shards(tasks, me._noop, label="bench", workers=2, progress=False, stats=stats)
    assert len(res) == n and stats.indexed == (mode == "indexed")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "base": base,
                "peak": peak,
                "seconds": time.perf_counter() - t0,
                "window": stats.window,
                "cpu_ms": 1000 * stats.driver_cpu / n,
            }  # fmt: skip
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", default="100,1400", help="comma-separated shard counts")
    ap.add_argument("--payload", type=int, default=64, help="KiB carried by each task")
    ap.add_argument("--no-peer", action="store_true", help="skip the embedded-spec peer")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(int(a.child[0]), a.child[1], a.payload)
        return
    sizes = [int(s) for s in a.shards.split(",")]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    rows: dict[tuple[str, int], dict] = {}
    modes = ["indexed"] + ([] if a.no_peer else ["embedded"])
    print(f"load average {os.getloadavg()[0]:.1f}, payload {a.payload} KiB per task")
    head = f"{'mode':9} {'shards':>7} {'window':>7} {'peak MB':>8} {'+imports MB':>12}"
    print(f"{head} {'CPU ms/task':>12} {'s':>6}")
    for n in sizes:  # modes interleaved per size (both see the same load)
        for mode in modes:
            cmd = [sys.executable, __file__, "--payload", str(a.payload), "--child", str(n), mode]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows[(mode, n)] = r
            print(
                f"{mode:9} {n:7d} {r['window']:7d} {r['peak']:8.0f} "
                f"{r['peak'] - r['base']:12.0f} {r['cpu_ms']:12.1f} {r['seconds']:6.1f}",
                flush=True,
            )
    lo, hi = min(sizes), max(sizes)
    for mode in modes:
        grow = rows[(mode, hi)]["peak"] - rows[(mode, lo)]["peak"]
        print(f"{mode}: peak at {hi} shards - peak at {lo} shards = {grow:+.0f} MB", end=" ")
        print("-> FLAT" if grow <= 15 else "-> GROWS")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
