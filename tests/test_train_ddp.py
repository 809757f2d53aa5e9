"""Two CPU processes train together with DDP (gloo, torchrun on loopback), each on its own
disjoint part of the split."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from train_check import assert_metrics_match, independent_val_metrics

from matdata.imageio import encode_jpeg, encode_png
from matdata.schema import Record
from matdata.shards import ShardWriter, write_index

BATCH = 4


def _record(i: int, split: str, size: int = 72) -> Record:
    rng = np.random.default_rng(i)
    img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    r = size / 4 + (i % 5)
    alpha = np.clip((r - np.hypot(yy - size / 2, xx - size / 2)) * 60 + 128, 0, 255)
    meta = {"split": split, "fg": f"f{i}", "bg": f"b{i}", "seed": i, "coarse": i % 7 == 0}
    return Record(
        key=f"{split}{i:04d}",
        image=encode_jpeg(img, 90),
        alpha=encode_png(alpha.astype(np.uint8)),
        meta=meta,
    )


def _dataset(root: Path) -> dict[str, set[str]]:
    keys: dict[str, set[str]] = {}
    infos = []
    n = 0
    for split, counts in (("train", [10, 9, 5]), ("val", [6])):
        for idx, c in enumerate(counts):
            with ShardWriter(str(root), split, idx, formats=("webdataset",)) as w:
                for _ in range(c):
                    rec = _record(n, split)
                    w.write(rec)
                    keys.setdefault(split, set()).add(rec.key)
                    n += 1
                infos += w.close()
    write_index(str(root), infos, config={}, sources={}, rejects={})
    return keys


def test_two_gloo_processes_train_on_disjoint_shards(tmp_path: Path) -> None:
    keys = _dataset(tmp_path / "data")
    per_rank = len(keys["train"]) // 2  # 12: three batches of 4 = one epoch per rank
    steps = per_rank // BATCH
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # as documented: torchrun --nproc-per-node N -m matdata train ...
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "matdata", "train", "--data", str(tmp_path / "data"), "--out", str(run),
        "--hr-channels", "8",
        "--steps", str(steps), "--batch-size", str(BATCH), "--image-size", "64",
        "--device", "cpu", "--workers", "1", "--record-keys", "--val-every", "0",
        "--log-every", "1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    seen = []
    for rank in (0, 1):
        lines = (run / f"keys.rank{rank}.jsonl").read_text().splitlines()
        batches = [json.loads(ln) for ln in lines]
        assert [b["step"] for b in batches] == list(range(steps))
        seen.append([k for b in batches for k in b["keys"]])
    assert all(len(s) == per_rank == len(set(s)) for s in seen)
    assert not set(seen[0]) & set(seen[1]), "ranks trained on the same samples"
    assert set(seen[0]) | set(seen[1]) == keys["train"], "one epoch must cover the split"

    log = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [d["step"] for d in log if d["kind"] == "train"] == list(range(1, steps + 1))
    vals = [d for d in log if d["kind"] == "val"]
    # validation is split across the ranks and reduced: every val sample counted once
    assert vals and all(v["samples"] == len(keys["val"]) for v in vals)
    assert all(np.isfinite(v["loss"]) for v in vals)
    # the reduced metrics are the final model's on the whole val split: one process
    # recomputing them independently from the checkpoint agrees
    want = independent_val_metrics(run / "last.pt", tmp_path / "data", 64, BATCH, 8)
    assert_metrics_match(vals[-1], want)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["step"] == steps and ckpt["data_position"]["world"] == 2
