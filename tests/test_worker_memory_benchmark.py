"""`benchmarks/worker_memory.py` runs at a tiny scale: its synthetic plan's tasks read
back from the task file as the plan's own, and both modes run on a real LocalCluster."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from matdata.planning import TaskList

ROOT = Path(__file__).resolve().parents[1]
FG_PER_SHARD, K = 24, 10  # the script's shard shape


def test_synthetic_plan_round_trips(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import worker_memory

    assert (worker_memory.FG_PER_SHARD, worker_memory.K) == (FG_PER_SHARD, K)
    tasks = TaskList(worker_memory.synthetic_plan(3, str(tmp_path / "out")))
    tf = tasks.to_file(str(tmp_path / "tasks.arrows"))
    assert list(tf) == list(tasks) and tf.total_samples == 3 * FG_PER_SHARD * K


def test_worker_memory_runs_both_modes(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "benchmarks/worker_memory.py", "--shards", "2,3"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    for mode in ("file", "scatter"):
        assert re.search(rf"^{mode}\s+3\s+{3 * FG_PER_SHARD * K}\s+\d+", out.stdout, re.M)
        assert re.search(rf"^{mode}: worker peak at 3 shards - at 2 shards = ", out.stdout, re.M)
