"""Peak memory and time of build *planning* at dataset scale (issue 15).

Writes synthetic manifests (no images: planning reads only manifests) - a Places-sized
background manifest of 1.8M rows and AISegment-like foreground manifests of 1,000 and
34,000 rows - then runs :func:`matdata.builder.prepare_build` with ``--per-fg 10`` in a
fresh child process per size and reads the child's peak RSS (``resource.getrusage``).
``prepare_build`` resolves the sources, filters, draws every foreground's backgrounds,
fetches the rows used and materialises every shard task once (to hash the plan), so this
is everything ``matdata build`` does before the first shard runs.

    python benchmarks/plan_memory.py                      # 1k and 34k fg over 1.8M bg
    python benchmarks/plan_memory.py --bg 200000 --fg 1000,5000
    python benchmarks/plan_memory.py --fg 1 --per-fg 1000000  # one foreground, K = 10^6

Printed: the child's RSS after imports, its peak RSS, the peak minus the imports, and
the planning time; the verdict compares the 34k plan's peak with the 1k plan's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_CATEGORIES = 365


def write_manifest(path: Path, role: str, n: int, seed: int = 0) -> None:
    """A manifest of ``n`` synthetic rows written in batches with realistic field sizes."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from matdata.sources.base import MANIFEST_VERSION, manifest_schema

    kind = "aisegment" if role == "fg" else "places365"
    meta = {"kind": kind, "root": f"/data/{kind}", "options": {}, "name": kind}
    schema = manifest_schema().with_metadata(
        {
            b"matdata_manifest_version": str(MANIFEST_VERSION).encode(),
            b"matdata_source": json.dumps(meta, sort_keys=True).encode(),
        }
    )
    rng = np.random.default_rng(seed)
    cats = [f"category_{i:03d}" for i in range(N_CATEGORIES)]
    with pq.ParquetWriter(str(path), schema) as w:
        for lo in range(0, n, 2048):
            ks = range(lo, min(n, lo + 2048))
            rows = []
            for k in ks:
                sha = f"{rng.integers(0, 2**63):016x}" * 4
                if role == "fg":
                    g = f"18031{k // 500:05d}"
                    fid = f"{g}-{k:08d}"
                    rows.append(
                        {
                            "id": fid,
                            "source": kind,
                            "role": "fg",
                            "split": "val" if (k // 500) % 20 == 0 else "train",
                            "image": f"/data/aisegment/clip_img/{g}/clip_00000000/{fid}.jpg",
                            "width": 600,
                            "height": 800,
                            "sha256": sha,
                            "group": g,
                            "alpha": f"/data/aisegment/matting/{g}/matting_00000000/{fid}.png",
                            "coarse": False,
                            "category": None,
                            "io": None,
                            "tags": [],
                            "extra": "{}",
                        }
                    )
                else:
                    c = cats[k % N_CATEGORIES]
                    split = "val" if k % 50 == 0 else "train"
                    layout = "val_large" if split == "val" else "data_large"
                    bid = f"{layout}-{c}-{k:08d}"
                    rows.append(
                        {
                            "id": bid,
                            "source": kind,
                            "role": "bg",
                            "split": split,
                            "image": f"/data/places365/{layout}/{c[0]}/{c}/{k:08d}.jpg",
                            "width": 683,
                            "height": 512,
                            "sha256": sha,
                            "group": bid,
                            "alpha": None,
                            "coarse": False,
                            "category": c,
                            "io": 1 + k % 2,
                            "tags": [],
                            "extra": json.dumps({"layout": layout}),
                        }
                    )
            w.write_table(pa.Table.from_pylist(rows, schema=schema))


def child(fg: str, bg: str, per_fg: int) -> None:
    import resource

    import numpy as np  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from matdata.build_config import BuildConfig
    from matdata.builder import prepare_build

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as out:
        cfg = BuildConfig(fg=(fg,), bg=(bg,), out=out, per_fg=per_fg, size=(512, 512))
        t0 = time.perf_counter()
        plan = prepare_build(cfg)
        dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "base_mb": base,
                "peak_mb": peak,
                "seconds": dt,
                "samples": plan.samples,
                "shards": len(plan.tasks),
                "bg_used": int(len(plan.compact.bg_used)),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bg", type=int, default=1_800_000, help="background rows")
    ap.add_argument("--fg", default="1000,34000", help="foreground rows, comma-separated")
    ap.add_argument("--per-fg", type=int, default=10)
    ap.add_argument("--workdir", default=None, help="where the manifests go (default: tmp)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    from rich.console import Console
    from rich.table import Table

    work = Path(args.workdir or tempfile.mkdtemp(prefix="plan-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    bg = work / f"bg-{args.bg}.manifest.parquet"
    t0 = time.perf_counter()
    if not bg.exists():
        write_manifest(bg, "bg", args.bg, seed=1)
    sizes = [int(s) for s in args.fg.split(",")]
    for n in sizes:
        p = work / f"fg-{n}.manifest.parquet"
        if not p.exists():
            write_manifest(p, "fg", n, seed=2)
    print(f"manifests ready in {time.perf_counter() - t0:.0f} s under {work}", file=sys.stderr)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    table = Table(title=f"build planning, K={args.per_fg}, {args.bg:,} backgrounds")
    for col in ("foregrounds", "samples", "shards", "bgs used", "RSS after imports",
                "peak RSS", "peak - imports", "planning time"):  # fmt: skip
        table.add_column(col, justify="right")
    got = []
    for n in sizes:
        fg = work / f"fg-{n}.manifest.parquet"
        r = subprocess.run(
            [sys.executable, __file__, "--child", str(fg), str(bg), str(args.per_fg)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        d = json.loads(r.stdout.strip().splitlines()[-1])
        got.append(d)
        table.add_row(
            f"{n:,}",
            f"{d['samples']:,}",
            str(d["shards"]),
            f"{d['bg_used']:,}",
            f"{d['base_mb']:.0f} MB",
            f"{d['peak_mb']:.0f} MB",
            f"{d['peak_mb'] - d['base_mb']:.0f} MB",
            f"{d['seconds']:.1f} s",
        )
    Console().print(table)
    if len(got) >= 2:
        a, b = got[0], got[-1]
        print(
            f"peak RSS {b['peak_mb']:.0f} MB for {sizes[-1]:,} fg vs {a['peak_mb']:.0f} MB "
            f"for {sizes[0]:,} fg (+{b['peak_mb'] - a['peak_mb']:.0f} MB); "
            f"planning {b['seconds']:.1f} s vs {a['seconds']:.1f} s"
        )


if __name__ == "__main__":
    main()
