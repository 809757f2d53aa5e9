"""Worker (and driver) peak RSS of a build's shard tasks as the number of shards grows
(issue 15: a K=10 build of 34k foregrounds is 340k samples in about 1,400 shards).

Each run starts a fresh child process that makes a synthetic build plan
(:class:`matdata.planning.CompactPlan`: Arrow rows of the foregrounds and of the
backgrounds used, AISegment / Places-like paths and sizes, ``(n_fg, K)`` pairs, 24
foregrounds x K=10 per shard) of N shards, then runs :func:`pipelines.runner.run_shards`
over its tasks on a LocalCluster of 2 workers, as ``matdata build`` does.  The task
function only materialises the task (no pixels) and reports the worker's peak RSS
(``resource.getrusage``), so the figures are the plan's and the runner's own costs.
Modes, interleaved per size:

* ``file``: the tasks written to one file in the output's work folder
  (:func:`pipelines.runner.staged_tasks`, what ``run_job`` does now); each worker holds a
  small index and reads one shard's record per task;
* ``scatter``: the plan's ``TaskList`` shipped to every worker whole (the runner before).

    python benchmarks/worker_memory.py                   # N = 100 and 1400
    python benchmarks/worker_memory.py --shards 20,100   # quick

Printed per run: the highest worker peak RSS; the driver's RSS once the plan is made and
how far above it the driver peaked while staging and running (``VmHWM`` reset through
``/proc/self/clear_refs``: the runner's own cost, not planning's); the task file's size.
Verdict: a mode's highest worker peak at the largest N within +15 MB of the smallest N.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FG_PER_SHARD, K, N_BG = 24, 10, 1_800_000


@dataclass
class Touched:
    samples: int
    rss_mb: float
    skipped: bool = False


def _touch(task, progress) -> Touched:
    """Runs on a worker: the task is materialised already; report the worker's peak RSS."""
    import resource

    return Touched(task.samples, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _strings(fmt: str, ks) -> list[str]:
    return [fmt.format(k=k, g=k // 500) for k in ks.tolist()]


def _table(role: str, ks):
    """Manifest rows for item numbers ``ks`` (realistic field sizes, no files)."""
    import numpy as np
    import pyarrow as pa

    from matdata.sources.base import manifest_schema

    n = len(ks)
    rng = np.random.default_rng(len(ks))
    sha = [f"{v:016x}" * 4 for v in rng.integers(0, 2**63, size=n).tolist()]
    if role == "fg":
        ids = _strings("1803{g:05d}-{k:08d}", ks)
        cols = {
            "id": ids,
            "source": ["aisegment"] * n,
            "role": ["fg"] * n,
            "split": ["train"] * n,
            "image": _strings("/data/aisegment/clip_img/1803{g:05d}/clip_00000000/{k:08d}.jpg", ks),
            "width": [600] * n,
            "height": [800] * n,
            "sha256": sha,
            "group": _strings("1803{g:05d}", ks),
            "alpha": _strings(
                "/data/aisegment/matting/1803{g:05d}/matting_00000000/{k:08d}.png", ks
            ),
            "coarse": [False] * n,
            "category": [None] * n,
            "io": [None] * n,
            "tags": [[]] * n,
            "extra": ["{}"] * n,
        }
    else:
        cats = [f"category_{k % 365:03d}" for k in ks.tolist()]
        ids = [f"data_large-{c}-{k:08d}" for c, k in zip(cats, ks.tolist(), strict=True)]
        cols = {
            "id": ids,
            "source": ["places365"] * n,
            "role": ["bg"] * n,
            "split": ["train"] * n,
            "image": [
                f"/data/places365/data_large/{c[0]}/{c}/{k:08d}.jpg"
                for c, k in zip(cats, ks.tolist(), strict=True)
            ],
            "width": [683] * n,
            "height": [512] * n,
            "sha256": sha,
            "group": ids,
            "alpha": [None] * n,
            "coarse": [False] * n,
            "category": cats,
            "io": [1 + k % 2 for k in ks.tolist()],
            "tags": [[]] * n,
            "extra": ['{"layout": "data_large"}'] * n,
        }
    return pa.Table.from_pydict(cols, schema=manifest_schema())


def synthetic_plan(shards: int, out: str):
    """A :class:`~matdata.planning.CompactPlan` of ``shards`` shards of FG_PER_SHARD
    foregrounds x K backgrounds drawn from N_BG (digests are placeholders)."""
    import numpy as np

    from matdata.build_config import BuildConfig
    from matdata.builder import SourceRef
    from matdata.planning import CompactPlan

    n_fg = shards * FG_PER_SHARD
    rng = np.random.default_rng(0)
    picks = rng.integers(0, N_BG, size=(n_fg, K), dtype=np.int64)
    used = np.unique(picks)
    cfg = BuildConfig(fg=("aisegment",), bg=("places365",), out=out, per_fg=K, size=(512, 512))
    plan = CompactPlan(
        cfg,
        ["aisegment"],
        np.zeros(n_fg, dtype=np.int32),
        _table("fg", np.arange(n_fg)),
        picks,
        rng.integers(0, 2**63, size=(n_fg, K), dtype=np.int64),
        np.zeros(n_fg, dtype=bool),
        ["places365"],
        np.zeros(N_BG, dtype=np.int32),
        used,
        np.arange(len(used), dtype=np.int64),
        _table("bg", used),
        [
            ("train", i, np.arange(i * FG_PER_SHARD, (i + 1) * FG_PER_SHARD, dtype=np.int64))
            for i in range(shards)
        ],
        {
            "aisegment": SourceRef("aisegment", "aisegment", "/data/aisegment", {}),
            "places365": SourceRef("places365", "places365", "/data/places365", {}),
        },
        False,
    )
    plan.digests = [f"{i:064x}" for i in range(shards)]
    return plan


def _status_mb(field: str) -> float:
    """``VmRSS`` or ``VmHWM`` (peak) of this process from /proc, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> float:
    """Reset this process's peak RSS to its current RSS (Linux ``clear_refs``); that RSS."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def child(n: int, mode: str) -> None:
    import contextlib

    # this module by its importable name, so that workers import the task function and
    # result class by reference as they do a pipeline's
    from benchmarks import worker_memory as me
    from matdata.planning import TaskList
    from pipelines.runner import run_shards, staged_tasks

    with tempfile.TemporaryDirectory() as out:
        plan = TaskList(me.synthetic_plan(n, out))
        base = _reset_peak()  # the driver's peak from here on: the runner's costs
        t0 = time.perf_counter()
        with staged_tasks(plan, out) if mode == "file" else contextlib.nullcontext(plan) as tasks:
            staged = time.perf_counter() - t0
            size = os.path.getsize(tasks.path) / 2**20 if mode == "file" else 0.0
            res = run_shards(tasks, me._touch, label="b", workers=2, progress=False)
        assert len(res) == n and sum(r.samples for r in res) == n * FG_PER_SHARD * K
    peak = _status_mb("VmHWM")
    out_d = {
        "file_mb": size,
        "driver_base": base,
        "driver_peak": peak,
        "worker_peak": max(r.rss_mb for r in res),
        "stage_s": staged,
        "seconds": time.perf_counter() - t0,
    }
    print(json.dumps(out_d))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", default="100,1400", help="comma-separated shard counts")
    ap.add_argument("--modes", default="file,scatter", help="file, scatter or both")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(int(a.child[0]), a.child[1])
        return
    sizes = [int(s) for s in a.shards.split(",")]
    modes = a.modes.split(",")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    rows: dict[tuple[str, int], dict] = {}
    print(f"load average {os.getloadavg()[0]:.1f}; {FG_PER_SHARD * K} samples per shard")
    print(
        f"{'mode':8} {'shards':>7} {'samples':>8} {'worker peak MB':>15} {'driver: plan MB':>16}"
        f" {'run peak +MB':>13} {'file MB':>8} {'stage s':>8} {'s':>6}"
    )
    for n in sizes:
        for mode in modes:
            cmd = [sys.executable, __file__, "--child", str(n), mode]
            got = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            r = json.loads(got.stdout.strip().splitlines()[-1])
            rows[(mode, n)] = r
            print(
                f"{mode:8} {n:7d} {n * FG_PER_SHARD * K:8d} {r['worker_peak']:15.0f} "
                f"{r['driver_base']:16.0f} {r['driver_peak'] - r['driver_base']:13.0f} "
                f"{r['file_mb']:8.1f} "
                f"{r['stage_s']:8.1f} "
                f"{r['seconds']:6.1f}",
                flush=True,
            )
    lo, hi = min(sizes), max(sizes)
    for mode in modes:
        grow = rows[(mode, hi)]["worker_peak"] - rows[(mode, lo)]["worker_peak"]
        print(f"{mode}: worker peak at {hi} shards - at {lo} shards = {grow:+.0f} MB", end=" ")
        print("-> FLAT" if grow <= 15 else "-> GROWS")
        d_lo, d_hi = (
            rows[(mode, n)]["driver_peak"] - rows[(mode, n)]["driver_base"] for n in (lo, hi)
        )
        print(f"{mode}: driver's peak above its plan during the run: {d_lo:+.0f} -> {d_hi:+.0f} MB")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
