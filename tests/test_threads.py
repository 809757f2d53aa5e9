"""matdata.threads: the cores a torch command plans for (affinity capped by a cgroup quota)."""

from __future__ import annotations

import os

import pytest

from matdata import threads


@pytest.mark.parametrize(
    "files,want",
    [
        ({"cpu.max": "max 100000\n"}, None),  # v2, no quota
        ({"cpu.max": "200000 100000\n"}, 2),
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: rounded up
        ({"cpu.max": "50000 100000\n"}, 1),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
        ({"cpu.max": "garbage"}, None),
        ({}, None),
    ],
)
def test_cgroup_cpu_limit(tmp_path, files: dict[str, str], want: int | None) -> None:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert threads.cgroup_cpu_limit(str(tmp_path)) == want


def test_quota_caps_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda root="": 1)
    assert threads.usable_cores() == 1
    assert threads.plan() == threads.ThreadPlan(cores=1, torch=1, loader_workers=0)
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda root="": 10**6)
    assert threads.usable_cores() == len(os.sched_getaffinity(0))
