"""Build with 2 workers vs 1 worker: shard-phase wall rate, and whether the runner keeps
the workers fed (issue 15: target >= 1.75x on the 2-core machine).

Inputs as in ``build_throughput.py`` (600x800 JPEG + PNG alpha foregrounds, 683x512 JPEG
backgrounds, 512x512 output, Parquet, K backgrounds per foreground).  Each round plans the
build once per worker count and runs its shard phase exactly as ``matdata build`` does
(:func:`pipelines.build.build_job`, :func:`pipelines.runner.run_shards`, a fresh
LocalCluster of 1-thread worker processes); 1 and 2 workers alternate, several rounds,
medians.  Per run, from :class:`~pipelines.runner.RunStats`:

* **wall rate**: samples / wall time of the shard phase (after the cluster started);
  scaling = 2-worker rate / 1-worker rate - the issue's figure, but on a machine that
  other jobs share it mostly measures their load;
* **utilisation**: summed time the workers spent inside tasks / (workers x wall): 1.0
  when the runner kept every worker busy from the first submit to the last result.  The
  rest, split: before a worker's first task (shipping the plan, first submit), between
  tasks (a worker waiting for its next task: the runner's doing) and after a worker's
  last task (the tail: task granularity);
* **runner-limited scaling** = 2 x utilisation(2) / utilisation(1): the scaling if a
  task took as long with 2 workers as with 1;
* **task slowdown** = task time per sample with 2 workers / with 1 (contention for the
  cores: other jobs, the driver, memory bandwidth); scaling = runner-limited / slowdown;
* **CPU share while busy** = task CPU time / task wall time: below 1.0 a worker was
  waiting for a core inside its tasks;
* **task CPU per sample**, 2 vs 1 worker: what sharing the machine's caches and memory
  costs; with the runner-limited scaling it estimates the scaling on 2 idle cores;
* **driver CPU**: CPU seconds of the driver process (client + in-process scheduler) per
  second of the shard phase - what the driver takes from the two cores.

Usage: ``python benchmarks/build_scaling.py [--fg 16] [--per-fg 10] [--per-shard 10]
[--rounds 3]``.  Quote the load average it prints next to its figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import tempfile
import time
from pathlib import Path


def _throughput_module():
    """``benchmarks/build_throughput.py`` (its inputs and config), loaded by path."""
    path = Path(__file__).with_name("build_throughput.py")
    spec = importlib.util.spec_from_file_location("build_throughput", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def shard_phase(cfg, workers: int) -> dict[str, float]:
    """Plan ``cfg``, prepare its output, run the shard phase on ``workers`` workers."""
    from matdata.builder import prepare_build
    from pipelines.build import build_job, prepare_output
    from pipelines.runner import RunStats, run_shards

    plan = prepare_build(cfg)
    prepare_output(plan)
    job = build_job(plan)
    stats = RunStats()
    res = run_shards(job.tasks, job.fn, label="b", workers=workers, progress=False, stats=stats)
    samples = sum(r.samples for r in res)
    busy, cpu = sum(stats.busy.values()), sum(stats.task_cpu.values())
    return {
        "samples": samples,
        "wall": stats.seconds,
        "rate": samples / stats.seconds,
        "util": stats.utilisation,
        "task_per_sample": busy / samples,
        "cpu_per_sample": cpu / samples,
        "cpu_share": cpu / busy if busy else 0.0,
        "driver_cpu": stats.driver_cpu / stats.seconds,
        # shares of workers x wall: before the first task, between tasks, after the last
        "ramp": stats.ramp / (stats.workers * stats.seconds),
        "gaps": stats.gaps / (stats.workers * stats.seconds),
        "tail": stats.tail / (stats.workers * stats.seconds),
        "workers_seen": len(stats.busy),
        "indexed": float(stats.indexed),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fg", type=int, default=16, help="foregrounds")
    ap.add_argument("--per-fg", type=int, default=10)
    ap.add_argument("--per-shard", type=int, default=10, help="samples per shard")
    ap.add_argument("--quality", type=int, default=95)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    bt = _throughput_module()

    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="matdata-scaling-") as tmp:
        root = Path(tmp)
        bt.make_inputs(root, args.fg, args.fg * args.per_fg)
        for r in range(args.rounds):
            for w in (1, 2) if r % 2 == 0 else (2, 1):  # alternate which goes first
                cfg = bt.make_cfg(root, root / f"out{w}-{r}", args.fg, args.per_fg, args.quality)
                cfg.samples_per_shard = args.per_shard
                t0 = time.perf_counter()
                got = shard_phase(cfg, w)
                runs[w].append(got)
                loads.append(os.getloadavg()[0])
                print(
                    f"round {r} workers {w}: {got['rate']:.1f} samples/s, utilisation "
                    f"{got['util']:.2f} (idle: ramp {got['ramp']:.3f} gaps {got['gaps']:.3f} "
                    f"tail {got['tail']:.3f}), task {1000 * got['task_per_sample']:.0f} ms/sample, "
                    f"CPU share {got['cpu_share']:.2f}, driver CPU {got['driver_cpu']:.2f}, "
                    f"{time.perf_counter() - t0:.0f} s (load {loads[-1]:.1f})",
                    flush=True,
                )

    def med(w: int, k: str) -> float:
        return statistics.median(x[k] for x in runs[w])

    scaling = statistics.median(
        b["rate"] / a["rate"] for a, b in zip(runs[1], runs[2], strict=True)
    )
    runner = statistics.median(
        2 * b["util"] / a["util"] for a, b in zip(runs[1], runs[2], strict=True)
    )
    slowdown = statistics.median(
        b["task_per_sample"] / a["task_per_sample"] for a, b in zip(runs[1], runs[2], strict=True)
    )
    n = int(runs[1][0]["samples"])
    print(
        f"\nbuild scaling, {n} samples in shards of {args.per_shard}, medians of "
        f"{args.rounds} rounds (load average {min(loads):.1f}-{max(loads):.1f}, "
        f"cpus={os.cpu_count()})"
    )
    rows = [
        ("wall rate, samples/s", "rate", ".1f"),
        ("utilisation (worker busy / workers x wall)", "util", ".2f"),
        ("  idle before a worker's first task", "ramp", ".3f"),
        ("  idle between tasks", "gaps", ".3f"),
        ("  idle after a worker's last task", "tail", ".3f"),
        ("task time per sample, ms", "task_per_sample", ".0f"),
        ("task CPU time per sample, ms", "cpu_per_sample", ".0f"),
        ("CPU share while busy (task CPU / task wall)", "cpu_share", ".2f"),
        ("driver CPU per wall second", "driver_cpu", ".2f"),
    ]
    print(f"{'':46} {'1 worker':>9} {'2 workers':>9}")
    for label, k, fmt in rows:
        scale = 1000 if k.endswith("per_sample") else 1
        a, b = med(1, k) * scale, med(2, k) * scale
        print(f"{label:46} {a:9{fmt}} {b:9{fmt}}")
    print(f"scaling, 2 vs 1 worker (wall rate): {scaling:.2f}x (target >= 1.75x)")
    print(f"runner-limited scaling, 2 x util(2) / util(1): {runner:.2f}x")
    print(f"task slowdown with 2 workers (contention): {slowdown:.2f}x")
    cpu = statistics.median(
        b["cpu_per_sample"] / a["cpu_per_sample"] for a, b in zip(runs[1], runs[2], strict=True)
    )
    print(f"task CPU per sample, 2 vs 1 worker: {cpu:.2f}x (cache / memory contention)")
    print(
        f"estimate for 2 idle cores (runner-limited / CPU ratio): {runner / cpu:.2f}x "
        "(assumes each worker gets a whole core while busy)"
    )


if __name__ == "__main__":
    main()
