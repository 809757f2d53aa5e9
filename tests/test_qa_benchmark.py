"""`benchmarks/qa_throughput.py` runs end to end on a tiny dataset and prints its verdict:
the scan against a floor that decodes with the scan's own decode function."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_qa_throughput_prints_ratio_breakdown_and_load():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "benchmarks/qa_throughput.py", "--samples", "12", "--size", "160",
         "--repeat", "1", "--band-sample", "5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=True,
    ).stdout  # fmt: skip
    text = " ".join(out.split())
    assert "decode (floor)" in text and "qa scan (band on <= 5)" in text
    for step in ("decode (the floor's)", "halo score", "unknown band", "edge views"):
        assert step in text, step
    m = re.search(r"decodes: ([0-9.]+)x CPU time .* load average [0-9.]+, [0-9.]+, [0-9.]+", text)
    assert m and float(m.group(1)) > 0.5, text[-400:]
