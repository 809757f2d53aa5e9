"""Sizes and load times of a dataset's index files at full scale (340k samples, 1,400 shards).

Synthesises, without building anything, the files a K=10 build over AISegment's 34k
portraits leaves: ``dataset.json`` (:func:`matdata.shards.write_index`: one entry per
shard, both formats, so 2 x ``--shards`` entries) and a rejects file
(:func:`matdata.rejects.write_rejects`, ``--rejects`` rows, as a Places365 ingest with a
few percent of broken files gives).  Then times, in this process (CPU time, robust on a
busy machine; best of ``--repeat``):

* ``read_index``: parse + JSON-schema validation (:mod:`matdata.index_schema`);
* ``list_shards``: the same plus one validated :class:`~matdata.shards.ShardInfo` per entry;
* ``read_rejects``: the rejects file back as objects.

    python benchmarks/index_scale.py [--samples 340000] [--shards 1400] [--rejects 36000]

Prints sizes (bytes per sample / per shard / per reject) and times as a rich table.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import tempfile
import time
from pathlib import Path


def cpu_best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        c0 = time.process_time()
        fn()
        best = min(best, time.process_time() - c0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=340_000)
    ap.add_argument("--shards", type=int, default=1400)
    ap.add_argument("--rejects", type=int, default=36_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from matdata.rejects import Reject, read_rejects, write_rejects
    from matdata.shards import ShardInfo, list_shards, read_index, write_index

    per = args.samples // args.shards
    shards = []
    for fmt, ext in (("parquet", "parquet"), ("webdataset", "tar")):
        for i in range(args.shards):
            split = "val" if i % 20 == 0 else "train"
            n = per + (1 if i < args.samples - per * args.shards else 0)
            sha = hashlib.sha256(f"{fmt}{i}".encode()).hexdigest()
            path = f"{fmt}/{split}/{split}-{i:06d}.{ext}"
            shards.append(ShardInfo(path, split, fmt, i, n, n * 60_000, sha))
    rejects = [
        Reject(
            "places365",
            f"/data/places365/data_large/{chr(97 + k % 26)}/category_{k % 365:03d}/{k:08d}.jpg",
            ("truncated", "not_an_image", "too_small")[k % 3],
            "image file is truncated (decoded 412 of 683 rows)",
        )
        for k in range(args.rejects)
    ]
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="matdata-index-scale-") as tmp:
        ds = Path(tmp) / "ds"
        ds.mkdir()
        c0 = time.process_time()
        write_index(
            str(ds),
            shards,
            config={"k": 10, "size": 512, "seed": 0, "fg_estimator": "blur-fusion"},
            sources={"aisegment": {"items": 34_000}, "places365": {"items": 1_800_000}},
            rejects={"places365": {"truncated": args.rejects}},
        )
        t_write = time.process_time() - c0
        size = (ds / "dataset.json").stat().st_size
        rows.append(("dataset.json write", f"{size / 1e6:.2f} MB", f"{t_write * 1e3:.0f} ms"))
        t = cpu_best(lambda: read_index(str(ds)), args.repeat)
        rows.append(("dataset.json read_index (parse + schema)", "", f"{t * 1e3:.0f} ms"))
        t = cpu_best(lambda: list_shards(str(ds)), args.repeat)
        rows.append(("dataset.json list_shards (+ ShardInfo each)", "", f"{t * 1e3:.0f} ms"))
        rp = str(Path(tmp) / "x.rejects.parquet")
        c0 = time.process_time()
        write_rejects(rp, rejects)
        t_write = time.process_time() - c0
        rsize = os.path.getsize(rp)
        rows.append(("rejects write", f"{rsize / 1e6:.2f} MB", f"{t_write * 1e3:.0f} ms"))
        t = cpu_best(lambda: read_rejects(rp), args.repeat)
        rows.append(("rejects read_rejects", "", f"{t * 1e3:.0f} ms"))

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = Table(
        title=f"index files at {args.samples} samples, {args.shards} shards x 2 formats, "
        f"{args.rejects} rejects (CPU time, best of {args.repeat})"
    )
    for col in ("file / step", "size", "CPU time"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(*r)
    con = Console(width=120)
    con.print(table)
    con.print(
        f"dataset.json: {size / (2 * args.shards):.0f} B per shard entry, "
        f"{size / args.samples:.2f} B per sample; rejects: {rsize / args.rejects:.0f} B per "
        f"reject; peak RSS of this process {peak:.0f} MB"
    )


if __name__ == "__main__":
    main()
