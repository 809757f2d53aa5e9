"""`benchmarks/plan_memory.py` runs at a tiny scale: its synthetic manifests pass the same
path checks a real build applies (an earlier version had its paths outside the recorded
source root, so every row was refused and the script failed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_plan_memory_plans_every_foreground(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "benchmarks/plan_memory.py", "--bg", "2000", "--fg", "20",
         "--per-fg", "2", "--workdir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    row = re.search(r"│\s+20 │\s+40 │", out.stdout)
    assert row, out.stdout[-2000:]
