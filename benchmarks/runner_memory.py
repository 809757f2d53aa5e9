"""Driver peak RSS of :func:`pipelines.runner.run_shards` as the number of shards grows
(issue 15: 340k samples are about 1,400 shards; a build with small shards has many more).

Each run starts a fresh child process that runs ``run_shards`` over N tiny shard tasks on
a LocalCluster of 2 workers (the scheduler lives in the driver process, as in ``matdata
build``).  Tasks are drawn lazily like a plan's ``TaskList`` and each carries a payload of
``--payload`` KiB (a real ``ShardTask`` carries its items, names and sources); the task
function does nothing, so the figure is the runner's own cost.  The child reports its
peak RSS (``resource.getrusage``, robust when the machine is busy) minus its RSS after
imports.  In the same run, the peer is the old behaviour: every task submitted at once
(``window = N``).

    python benchmarks/runner_memory.py                    # N = 500 and 4000
    python benchmarks/runner_memory.py --shards 1000,10000 --payload 32

Verdict: the windowed driver's peak at the largest N within +15 MB of the smallest N.

Measured on the shared 2-core machine (distributed 2026.8.0): the window bounds what is
*in flight* (8 tasks), yet the driver still grows with N in both modes - 100 -> 1000
shards of 128 KiB: windowed +226 MB, all at once +268 MB.  tracemalloc (taken while the
last task is drawn, after ``gc.collect()``) shows every submitted task's pickled spec
still alive on the client and its deserialized copy on the in-process scheduler
(``Scheduler.update_graph``), about payload x 2 per task, for tasks already released.
So flat driver memory also needs small task specs (e.g. a shard index, with the plan
sent to workers once) or finding what in distributed keeps released specs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
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


class LazyTasks:
    """N tasks materialised on access (like :class:`matdata.planning.TaskList`)."""

    def __init__(self, n: int, payload: int):
        self.n, self.payload = n, payload

    @property
    def total_samples(self) -> int:
        return self.n

    def __iter__(self):
        for i in range(self.n):
            yield TinyTask(f"train-{i:06d}", 1, os.urandom(self.payload))


def child(n: int, window: int | None, payload: int) -> None:
    import resource

    from pipelines.runner import RunStats, run_shards

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats = RunStats()
    t0 = time.perf_counter()
    res = run_shards(
        LazyTasks(n, payload * 1024), _noop, label="bench", workers=2, progress=False,
        stats=stats, window=window,
    )  # fmt: skip
    assert len(res) == n
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "base": base,
                "peak": peak,
                "seconds": time.perf_counter() - t0,
                "window": stats.window,
            }  # fmt: skip
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", default="500,4000", help="comma-separated shard counts")
    ap.add_argument("--payload", type=int, default=16, help="KiB carried by each task")
    ap.add_argument("--no-peer", action="store_true", help="skip the all-at-once peer")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        n, w = int(a.child[0]), int(a.child[1])
        child(n, w or None, a.payload)
        return
    sizes = [int(s) for s in a.shards.split(",")]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    rows: dict[tuple[str, int], dict] = {}
    modes = [("windowed", 0)] + ([] if a.no_peer else [("all at once", -1)])
    print(f"{'mode':12} {'shards':>7} {'window':>7} {'peak MB':>8} {'+imports MB':>12} {'s':>6}")
    for mode, w in modes:
        for n in sizes:
            cmd = [sys.executable, __file__, "--payload", str(a.payload), "--child", str(n)]
            cmd.append(str(n if w < 0 else w))
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows[(mode, n)] = r
            print(
                f"{mode:12} {n:7d} {r['window']:7d} {r['peak']:8.0f} "
                f"{r['peak'] - r['base']:12.0f} {r['seconds']:6.1f}",
                flush=True,
            )
    lo, hi = min(sizes), max(sizes)
    grow = rows[("windowed", hi)]["peak"] - rows[("windowed", lo)]["peak"]
    print(f"\nwindowed: peak at {hi} shards - peak at {lo} shards = {grow:+.0f} MB", end=" ")
    print("-> FLAT" if grow <= 15 else "-> GROWS")
    if not a.no_peer:
        g2 = rows[("all at once", hi)]["peak"] - rows[("all at once", lo)]["peak"]
        print(f"all at once: {g2:+.0f} MB over the same range")


if __name__ == "__main__":
    main()
