"""A harmonize shard task with decode/encode threads overlapping the network writes the same
bytes, records, counts and rejects as the sequential task (harmonization/dataset.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from harmonization import build_network
from harmonization.dataset import HarmonizeTask, harmonize_shard, io_threads_for
from harmonization.harmonizers import load_harmonizer
from harmonization.weights import deterministic_state_dict
from matdata.imageio import encode_jpeg, encode_png
from matdata.schema import Record
from matdata.shards import ShardWriter, list_shards, write_index


def _dataset(root: Path) -> None:
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:48, :64]
    with ShardWriter(str(root), "train", 0, formats=("parquet", "webdataset")) as w:
        for i in range(9):
            img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            alpha = np.clip((14 + i - np.hypot(yy - 24, xx - 32)) * 40 + 128, 0, 255)
            alpha = alpha.astype(np.uint8)
            png = encode_png(alpha)
            if i == 2:
                png = encode_png(np.zeros_like(alpha))  # empty mask: kept as it is
            elif i == 3:
                png = encode_png(np.full_like(alpha, 255))  # full mask
            elif i == 5:
                png = b"\x89PNG not really"  # undecodable: a reject
            elif i == 7:
                png = encode_png(alpha[:40])  # size mismatch: a reject
            meta = {"split": "train", "fg": f"f{i}", "bg": f"b{i}", "seed": i}
            w.write(Record(key=f"k{i:03d}", image=encode_jpeg(img, 90), alpha=png, meta=meta))
        infos = w.close()
    write_index(str(root), infos, config={}, sources={}, rejects={})


@pytest.mark.parametrize("threads", [1, 3])
def test_overlapped_shard_task_writes_the_same_bytes(tmp_path: Path, threads: int) -> None:
    src = tmp_path / "src"
    _dataset(src)
    weights = tmp_path / "issam.pth"
    torch.save(deterministic_state_dict(build_network("issam256")), weights)
    shard = next(s for s in list_shards(str(src)) if s.format == "parquet")
    base = HarmonizeTask(
        src=str(src), out=str(tmp_path / "seq"), shard=shard, model="issam256",
        checkpoint=str(weights), checkpoint_sha256="x", params={"size": 32}, device="cpu",
        batch_size=2, formats=("parquet", "webdataset"), jpeg_quality=90, io_threads=0,
    )  # fmt: skip
    seen: list[tuple[str, int]] = []
    seq = harmonize_shard(base, progress=lambda n: seen.append(("seq", n)))
    over = harmonize_shard(
        dataclasses.replace(base, out=str(tmp_path / "over"), io_threads=threads),
        progress=lambda n: seen.append(("over", n)),
    )
    assert seq.counts == over.counts == {"harmonized": 5, "empty": 1, "full": 1, "rejected": 2}
    assert [r.to_dict() for r in seq.rejects] == [r.to_dict() for r in over.rejects]
    assert [s.to_dict() for s in seq.shards] == [s.to_dict() for s in over.shards]
    seq_dir = tmp_path / "seq"
    files = sorted(p.relative_to(seq_dir) for p in seq_dir.rglob("*") if p.is_file())
    assert any(f.suffix == ".parquet" for f in files) and any(f.suffix == ".tar" for f in files)
    for f in files:
        assert (tmp_path / "seq" / f).read_bytes() == (tmp_path / "over" / f).read_bytes(), f
    # progress: every written record reported once, batch by batch
    assert sum(n for k, n in seen if k == "seq") == sum(n for k, n in seen if k == "over") == 7


def test_io_threads_default_only_for_a_network_on_a_gpu(tmp_path: Path) -> None:
    assert io_threads_for(load_harmonizer("none")) == 0
    weights = deterministic_state_dict(build_network("issam256"))
    assert io_threads_for(load_harmonizer("issam256", weights, "cpu", size=32)) == 0
