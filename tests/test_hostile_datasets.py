"""A hostile-input corpus for the dataset readers and writers (issue 9, sections 2, 3, 5, 6).

Every case is generated here: traversal split names, absolute and ``..`` shard paths,
a flipped byte, malformed ``dataset.json`` variants, a garbage Parquet shard, a manifest
with a traversal split, a held or stale output lock, an undecodable record, a checkpoint
that cannot be written.  Each runs through the affected commands as users run them (a
subprocess), and each must end in one clear error line: no traceback, nothing written
outside the output directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_cli

from matdata.imageio import encode_jpeg, encode_png
from matdata.schema import Record
from matdata.shards import ShardWriter, write_index

TRAIN = [
    "--backbone", "mobilenetv2", "--hr-channels", "8", "--batch-size", "2", "--image-size",
    "64", "--device", "cpu", "--warmup", "0", "--val-every", "0", "--workers", "0",
    "--log-every", "1",
]  # fmt: skip


def _record(i: int) -> Record:
    rng = np.random.default_rng(i)
    return Record(
        key=f"fg-{i:04d}__bg__000",
        image=encode_jpeg(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8), 90),
        alpha=encode_png(rng.integers(0, 256, (40, 36), dtype=np.uint8)),
        meta={"split": "train", "fg": {"id": str(i)}, "bg": {"id": "b"}, "seed": i},
    )


def _make_dataset(root: Path, records: list[Record] | None = None) -> Path:
    """Two Parquet shards of four records each (split train)."""
    recs = records or [_record(i) for i in range(8)]
    infos = []
    for index in range(2):
        with ShardWriter(str(root), "train", index, formats="parquet") as w:
            for rec in recs[4 * index : 4 * index + 4]:
                w.write(rec)
            infos += w.close()
    write_index(str(root), infos, config={"jpeg_quality": 90}, sources={}, rejects={})
    return root


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_dataset(tmp_path_factory.mktemp("clean") / "ds")


@pytest.fixture
def sandbox(tmp_path: Path, clean: Path) -> Path:
    """``tmp/a/b/ds``: a copy of the clean dataset two levels down, so that an escape
    through ``..`` lands inside ``tmp`` where :func:`_outside` sees it."""
    ds = tmp_path / "a" / "b" / "ds"
    shutil.copytree(clean, ds)
    (tmp_path / "cwd").mkdir()
    return tmp_path


def _index(ds: Path) -> dict:
    return json.loads((ds / "dataset.json").read_text())


def _edit(ds: Path, fn) -> None:
    index = _index(ds)
    fn(index)
    (ds / "dataset.json").write_text(json.dumps(index))


def _run(args: list[str], sandbox: Path) -> subprocess.CompletedProcess:
    return run_cli(args, cwd=sandbox / "cwd", timeout=300)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _one_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit != 0, no traceback, exactly one ``error:`` line containing every needle."""
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text
    assert "Traceback" not in text, text
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, text
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def _outside(sandbox: Path, before: set[str], *outputs: str) -> list[str]:
    """Files created in the sandbox outside the given output folders."""
    new = _files(sandbox) - before
    return sorted(f for f in new if not any(f.startswith(o + "/") for o in outputs))


# ------------------------------------------------------------- malformed dataset.json

MALFORMED = {
    "shards_string": (lambda ix: ix.update(shards="parquet/train-00000.parquet"), "shards"),
    "null_entry": (lambda ix: ix["shards"].insert(1, None), "shards[1]"),
    "missing_sha256": (lambda ix: ix["shards"][0].pop("sha256"), "sha256"),
    "samples_text": (lambda ix: ix.update(samples="abc"), "samples"),
    "traversal_split": (lambda ix: ix["shards"][0].update(split="../../../x"), "split"),
    "absolute_path": (lambda ix: ix["shards"][0].update(path="/etc/hostname"), "path"),
    "dotdot_path": (lambda ix: ix["shards"][1].update(path="../outside/evil.tar"), "path"),
    "quality_text": (lambda ix: ix["config"].update(jpeg_quality="abc"), "config.jpeg_quality"),
}


#: A second command per case (every reader goes through the same validation; ``verify``
#: runs for every case).  harmonize gets the cases of issue 9 that wrote outside --out.
OTHER = {
    "absolute_path": "harmonize",
    "dotdot_path": "qa",
    "missing_sha256": "inspect",
    "null_entry": "qa",
    "quality_text": "harmonize",
    "samples_text": "inspect",
    "shards_string": "qa",
    "traversal_split": "harmonize",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_index_is_one_line_everywhere(sandbox: Path, case: str) -> None:
    """verify and one of inspect / qa / harmonize: one line naming the field, nothing
    written outside the outputs (train: see test_train_refuses_malformed_index)."""
    ds = sandbox / "a" / "b" / "ds"
    edit, field = MALFORMED[case]
    _edit(ds, edit)
    (sandbox / "a" / "outside").mkdir()
    (sandbox / "a" / "outside" / "evil.tar").write_bytes(b"x" * 1024)
    before = _files(sandbox)
    other = {
        "inspect": ["inspect", str(ds)],
        "qa": ["qa", str(ds), "--out", str(sandbox / "report"), "--in-process", "--no-progress"],
        "harmonize": ["harmonize", str(ds), "--out", str(sandbox / "h"), "-m", "reinhard",
                      "-w", "1", "--no-progress"],
    }[OTHER[case]]  # fmt: skip
    for args in (["verify", str(ds)], other):
        _one_error(_run(args, sandbox), "dataset.json", field)
    assert _outside(sandbox, before, "report", "h") == []


def test_garbage_rejects_table_is_one_line(sandbox: Path) -> None:
    ds = sandbox / "a" / "b" / "ds"
    (ds / "rejects.parquet").write_bytes(b"PAR1 not really")
    proc = _run(["qa", str(ds), "--out", str(sandbox / "r"), "--in-process", "--no-progress"],
                sandbox)  # fmt: skip
    _one_error(proc, "rejects.parquet", "not a readable rejects table")


def test_train_refuses_malformed_index(sandbox: Path) -> None:
    ds = sandbox / "a" / "b" / "ds"
    _edit(ds, MALFORMED["absolute_path"][0])
    before = _files(sandbox)
    proc = _run(["train", "--data", str(ds), "--out", str(sandbox / "run"), "--steps", "1",
                 *TRAIN], sandbox)  # fmt: skip
    _one_error(proc, "dataset.json", "/etc/hostname")
    assert _outside(sandbox, before, "run") == []


def test_symlinked_shard_outside_the_dataset_is_refused(sandbox: Path) -> None:
    ds = sandbox / "a" / "b" / "ds"
    secret = sandbox / "secret.parquet"
    shutil.copy(ds / "parquet" / "train-00000.parquet", secret)
    (ds / "parquet" / "train-00000.parquet").unlink()
    (ds / "parquet" / "train-00000.parquet").symlink_to(secret)
    _one_error(_run(["verify", str(ds)], sandbox), "resolves outside")


# --------------------------------------------------------------------- shard contents


def _flip(path: Path, at: int = 200) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _rehash(ds: Path, i: int) -> None:
    """Record shard ``i``'s current bytes in dataset.json (a consistent but bad file)."""
    path = ds / _index(ds)["shards"][i]["path"]
    data = path.read_bytes()

    def fix(ix: dict) -> None:
        ix["shards"][i].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())

    _edit(ds, fix)


def test_flipped_byte_stops_harmonize_and_no_verify_records_what_was_read(sandbox: Path) -> None:
    ds = sandbox / "a" / "b" / "ds"
    shard = ds / "parquet" / "train-00001.parquet"
    _flip(shard)
    proc = _run(["harmonize", str(ds), "--out", str(sandbox / "h"), "-m", "reinhard", "-w", "1",
                 "--no-progress"], sandbox)  # fmt: skip
    _one_error(proc, "parquet/train-00001.parquet", "does not match")
    assert not (sandbox / "h" / "dataset.json").exists()
    assert not (sandbox / "h" / "parquet" / "train-00001.parquet").exists()
    # --no-verify: used, and the provenance holds the hash of the bytes actually read
    proc = _run(["harmonize", str(ds), "--out", str(sandbox / "h"), "-m", "reinhard", "-w", "1",
                 "--no-progress", "--no-verify"], sandbox)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    source = _index(sandbox / "h")["harmonization"]["source_dataset"]["shards"]
    assert source[1] == hashlib.sha256(shard.read_bytes()).hexdigest()
    assert source[1] != _index(ds)["shards"][1]["sha256"]
    assert source[0] == _index(ds)["shards"][0]["sha256"]


def test_garbage_parquet_is_one_line(sandbox: Path) -> None:
    ds = sandbox / "a" / "b" / "ds"
    rng = np.random.default_rng(0)
    (ds / "parquet" / "train-00000.parquet").write_bytes(rng.bytes(3000))
    _rehash(ds, 0)  # the hash matches: only parsing can catch it
    proc = _run(["verify", str(ds)], sandbox)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "train-00000.parquet: not a readable Parquet file" in proc.stderr
    proc = _run(["qa", str(ds), "--out", str(sandbox / "r"), "--in-process", "--no-progress",
                 "--fail-on", "unreadable_shard"], sandbox)  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    proc = _run(["train", "--data", str(ds), "--out", str(sandbox / "run"), "--steps", "4",
                 *TRAIN], sandbox)  # fmt: skip
    _one_error(proc, "parquet/train-00000.parquet", "corrupt")


@pytest.mark.slow
def test_train_verifies_while_streaming_and_skips_bad_records(sandbox: Path) -> None:
    ds = sandbox / "a" / "b" / "ds"
    # a flipped byte: refused with the shard's name
    flipped = sandbox / "flipped"
    shutil.copytree(ds, flipped)
    _flip(flipped / "parquet" / "train-00000.parquet", at=-200)
    proc = _run(["train", "--data", str(flipped), "--out", str(sandbox / "r0"), "--steps", "8",
                 *TRAIN], sandbox)  # fmt: skip
    _one_error(proc, "parquet/train-00000.parquet", "does not match", "--no-verify")
    # an undecodable record: skipped and listed; past --max-bad-records training stops
    recs = [_record(i) for i in range(8)]
    recs[5].image = recs[5].image[:60]  # a truncated JPEG
    bad = _make_dataset(sandbox / "bad", recs)
    proc = _run(["train", "--data", str(bad), "--out", str(sandbox / "r1"), "--steps", "4",
                 "--max-bad-records", "0", *TRAIN], sandbox)  # fmt: skip
    _one_error(proc, "undecodable", "--max-bad-records 0")
    run = sandbox / "r2"
    proc = _run(["train", "--data", str(bad), "--out", str(run), "--steps", "4", *TRAIN], sandbox)
    assert proc.returncode == 0, proc.stderr
    listed = [json.loads(x) for x in (run / "bad_records.jsonl").read_text().splitlines()]
    assert [(b["key"], b["shard"]) for b in listed] == [
        (recs[5].key, "parquet/train-00001.parquet")
    ]
    assert listed[0]["reason"] and listed[0]["detail"]
    # a checkpoint that cannot be written (files capped at 1 MB, like a full disk): one
    # line, and the previous checkpoint is unchanged and no temporary is left
    last = (run / "last.pt").read_bytes()
    code = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20)); "
        "from matdata.cli import main; sys.argv[0] = 'matdata'; main()"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
    proc = subprocess.run(
        [sys.executable, "-c", code, "train", "--resume", str(run), "--steps", "6"],
        capture_output=True, text=True, timeout=300, env=env, cwd=sandbox / "cwd",
    )  # fmt: skip
    _one_error(proc, "could not write checkpoint", "previous checkpoint is unchanged")
    assert (run / "last.pt").read_bytes() == last
    assert not [p for p in run.rglob(".tmp-*")]


# -------------------------------------------------------------------- builds and locks


def test_manifest_with_traversal_split_is_refused(sandbox: Path) -> None:
    from matdata.sources.base import ManifestWriter
    from matdata.sources.demo import DemoSource

    items = [x for x in DemoSource("").scan() if getattr(x, "role", "") == "fg"][:3]
    manifest = sandbox / "evil.manifest.parquet"
    w = ManifestWriter(str(manifest), meta={"kind": "demo", "root": "", "options": {}})
    for it in items:
        w.write(type(it)(**{**it.__dict__, "split": "../../../escaped"}))
    w.close()
    before = _files(sandbox)
    proc = _run(["build", "--fg", str(manifest), "--bg", "demo", "--out", str(sandbox / "out"),
                 "--size", "32", "--per-fg", "1", "-w", "1", "--no-progress"], sandbox)  # fmt: skip
    _one_error(proc, "evil.manifest.parquet", "../../../escaped", "not a valid split")
    assert _outside(sandbox, before, "out") == []


def _holder_lock(out: Path, pid: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    holder = {"job": "build", "host": socket.gethostname(), "pid": pid, "started": 1e9}
    (out / ".matdata.lock").write_text(json.dumps(holder))


def test_second_writer_is_refused_and_a_stale_lock_is_replaced(sandbox: Path) -> None:
    ds = sandbox / "a" / "b" / "ds"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        # an output another (live) build holds: refused, its temporaries untouched
        out = sandbox / "out"
        _holder_lock(out, live.pid)
        (out / "parquet").mkdir()
        (out / "parquet" / ".tmp-1234-train-00000.parquet").write_bytes(b"in progress")
        for args in (
            ["build", "--fg", "demo", "--bg", "demo", "--out", str(out), "--size", "32",
             "--per-fg", "1", "-w", "1", "--no-progress", "--overwrite"],
            ["harmonize", str(ds), "--out", str(out), "-m", "reinhard", "-w", "1"],
            ["qa", str(ds), "--out", str(out), "--in-process", "--no-progress"],
        ):  # fmt: skip
            _one_error(_run(args, sandbox), "is being written by build", f"pid {live.pid}")
        assert (out / "parquet" / ".tmp-1234-train-00000.parquet").read_bytes() == b"in progress"
    finally:
        live.kill()
        live.wait()
    # the holder is gone: its lock is stale, replaced with a warning, released at the end
    report = sandbox / "report"
    _holder_lock(report, live.pid)
    proc = _run(["qa", str(ds), "--out", str(report), "--in-process", "--no-progress"], sandbox)
    assert proc.returncode == 0, proc.stderr
    assert "stale lock" in proc.stderr
    assert (report / "summary.json").exists() and not (report / ".matdata.lock").exists()
