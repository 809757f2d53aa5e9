"""The build on a real dask.distributed cluster (separate scheduler and worker processes on
loopback), and resume after a build killed mid-way (SIGKILL of the whole process group)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from matdata.build_config import BuildConfig
from matdata.builder import prepare_build, run_shard, sample_key
from matdata.shards import iter_records, list_temporaries, read_index, verify
from pipelines.runner import TASKS_NAME

CLI = [sys.executable, "-c", "from matdata.cli import main; main()"]
DEMO = ["--fg", "demo", "--bg", "demo", "--fg-option", "n_fg=6", "--fg-option", 'size="48x64"']


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def dask_cluster(tmp_path: Path):
    """``dask scheduler`` + ``dask worker --nworkers 2`` as subprocesses on 127.0.0.1."""
    from distributed import Client

    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    logs = open(tmp_path / "dask.log", "wb")  # noqa: SIM115 - closed below
    dask = [sys.executable, "-m", "dask"]
    sched = subprocess.Popen(
        [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=logs,
        stderr=subprocess.STDOUT,
    )
    worker = None
    try:
        worker = subprocess.Popen(
            [*dask, "worker", addr, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"]
            + ["--host", "127.0.0.1", "--memory-limit", "1GB"],
            stdout=logs,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,  # workers share nothing with the test but the output directory
        )
        with Client(addr, timeout=60) as c:
            c.wait_for_workers(2, timeout=90)
        yield addr
    finally:
        if worker is not None:
            _stop(worker)
        _stop(sched)
        logs.close()


def test_build_on_external_scheduler(dask_cluster: str, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    args = [*DEMO, "--out", str(out), "--per-fg", "2", "--size", "64", "--format", "both"]
    args += ["--samples-per-shard", "3", "--trimap", "--no-progress"]
    r = subprocess.run(
        [*CLI, "build", *args, "--scheduler", dask_cluster],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    assert re.search(r"workers\s*│\s*2", r.stdout)
    assert verify(str(out)) == []
    index = read_index(str(out))
    assert index["samples"] == 12
    # the same shards, byte for byte, as the shard tasks run here without any Dask
    cfg = BuildConfig(
        fg="demo",
        bg="demo",
        out=str(tmp_path / "local"),
        per_fg=2,
        size=(64, 64),
        formats=("parquet", "webdataset"),
        samples_per_shard=3,
        trimap=True,
        fg_options={"n_fg": 6, "size": "48x64"},
    )
    local = [s for t in prepare_build(cfg).tasks for s in run_shard(t).shards]
    assert sorted((s.path, s.sha256) for s in local) == sorted(
        (s["path"], s["sha256"]) for s in index["shards"]
    )


def _visible_shards(out: Path) -> list[Path]:
    return [
        p
        for sub in ("parquet", "webdataset")
        for p in sorted((out / sub).glob("*"))
        if not p.name.startswith(".")
    ]


def test_resume_after_kill(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "ds"
    # 48 samples in 12 shards (one foreground each) on one single-threaded worker, which
    # SIGKILLs the whole process group (CLI, fork server, workers) right after its 5th
    # shard's marker (a test hook, see matdata.testhooks): exactly 5 shards are complete
    cmd = [*CLI, "build", "--fg", "demo", "--bg", "demo", "--fg-option", "n_fg=12"]
    cmd += ["--out", str(out), "--per-fg", "4", "--size", "256", "--format", "both"]
    cmd += ["--samples-per-shard", "4", "--workers", "1", "--no-progress"]
    env = {**os.environ, "MATDATA_TEST_KILL_AFTER_SHARDS": "5"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env=env,
    )  # fmt: skip
    parts = out / ".parts"
    try:
        assert proc.wait(180) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)

    done = sorted(p for p in parts.glob("*-*.json") if not p.name.startswith("."))
    assert len(done) == 5, f"{len(done)} shards complete at kill time"
    assert not (out / "dataset.json").exists()
    assert (out / TASKS_NAME).exists()  # the killed run's task file: the rerun replaces it
    for p in _visible_shards(out):  # every visible shard is complete, never partial
        if p.suffix == ".parquet":
            assert pq.ParquetFile(p).metadata.num_rows == 4
        else:
            with tarfile.open(p) as tar:
                assert len(tar.getmembers()) == 4 * 3  # jpg, alpha.png, json per sample
    before = {p.name: p.read_bytes() for p in _visible_shards(out)}

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    m = re.search(r"written / resumed\s*│\s*(\d+) / (\d+)", r.stdout)
    assert m and int(m.group(2)) >= len(done) and int(m.group(1)) + int(m.group(2)) == 12
    assert verify(str(out)) == [] and list_temporaries(str(out)) == []
    assert not (out / TASKS_NAME).exists()  # removed when the run ends
    cfg = BuildConfig(
        fg="demo",
        bg="demo",
        out=str(out),
        per_fg=4,
        size=(256, 256),
        formats=("parquet", "webdataset"),
        samples_per_shard=4,
        fg_options={"n_fg": 12},
    )
    plan = prepare_build(cfg)
    expected = sorted(
        sample_key(t.fg_items[p[0]].id, t.bg_items[p[1]].id, p[2])
        for t in plan.tasks
        for p in t.pairs
    )
    for fmt in ("parquet", "webdataset"):
        keys = sorted(r.key for r in iter_records(str(out), fmt=fmt))
        assert keys == expected  # every sample exactly once
    # shards complete before the kill were kept; the rest are identical to what they'd be
    for name in before:
        assert (
            out / ("parquet" if name.endswith(".parquet") else "webdataset") / name
        ).read_bytes() == before[name]
