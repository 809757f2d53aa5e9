"""Peak memory of ``matdata ingest`` at 10,000 vs 200,000 items: it must stay flat.

Makes small portraits (JPEG + RGBA matte PNG, 48x64 by default: pixels do not matter for
memory, the number of items does) in the AISegment layout in a temporary directory, as
hard links to a few distinct files, then ingests each size in a fresh child process and
reads the child's peak RSS (``resource.getrusage``).  The peer in the same run is an
in-memory scan (``matdata.catalog.scan_source``: every Item kept in a list), which grows
with the source (``--no-peer`` skips it).

    python benchmarks/ingest_memory.py                 # 10000 and 200000 items
    python benchmarks/ingest_memory.py --sizes 1000,20000 --px 192x256
    python benchmarks/ingest_memory.py --layout folder-bg   # a folder of backgrounds

The verdict compares the streamed ingest's peak RSS growth (largest minus smallest size)
with a bound of 15 MB (the issue's target), and also prints the growth per 1,000 items
and what it extrapolates to at 200,000 items; exit code 1 when the bound is exceeded.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

W, H = 48, 64  # small portraits (``--px``): memory depends on the item count
GROUP_SIZE = 500  # portraits per shoot group folder
#: ``--layout``: source kind and options ingested
KINDS = {"aisegment": ("aisegment", {}), "folder-bg": ("folder", {"role": "bg"})}
DISTINCT = 40  # distinct images, written repeatedly (decode cost is what matters)


def make_tree(root: Path, n: int, layout: str = "aisegment") -> None:
    import numpy as np
    from PIL import Image

    blobs = root.parent / f"{root.name}-blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    jpgs, pngs = [], []
    yy, xx = np.mgrid[0:H, 0:W]
    for i in range(DISTINCT):
        img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
        r = ((xx - W / 2) ** 2 / (W * 0.35) ** 2 + (yy - H * 0.6) ** 2 / (H * 0.45) ** 2) ** 0.5
        alpha = np.clip((1.0 - r) * 8 * 255 + i, 0, 255).astype(np.uint8)
        b = io.BytesIO()
        Image.fromarray(img).save(b, "JPEG", quality=85)
        jpgs.append(blobs / f"{i}.jpg")
        jpgs[-1].write_bytes(b.getvalue())
        b = io.BytesIO()
        Image.fromarray(np.dstack([img, alpha]), "RGBA").save(b, "PNG", compress_level=1)
        pngs.append(blobs / f"{i}.png")
        pngs[-1].write_bytes(b.getvalue())
    if layout == "folder-bg":  # a folder of backgrounds, 1,000 per sub-folder
        for k in range(n):
            d = root / f"scenes_{k // 1000:04d}"
            d.mkdir(parents=True, exist_ok=True)
            os.link(jpgs[k % DISTINCT], d / f"scene_{k:08d}.jpg")
        return
    for k in range(n):
        group = f"18031{k // GROUP_SIZE:05d}"
        stem = f"{group}-{k:08d}"
        clip = root / "clip_img" / group / f"clip_{k // 100:08d}"
        mat = root / "matting" / group / f"matting_{k // 100:08d}"
        clip.mkdir(parents=True, exist_ok=True)
        mat.mkdir(parents=True, exist_ok=True)
        os.link(jpgs[k % DISTINCT], clip / f"{stem}.jpg")  # hard links: no disk per item
        os.link(pngs[k % DISTINCT], mat / f"{stem}.png")


def child(mode: str, root: str, out: str, layout: str = "aisegment") -> None:
    """Run in a fresh process: ingest (or in-memory scan) and print peak RSS as JSON."""
    import resource

    import pyarrow.parquet  # noqa: F401 - count imports in the baseline, not the scan

    import matdata.sources.aisegment  # noqa: F401
    import matdata.sources.folder  # noqa: F401
    from matdata.catalog import scan_source
    from matdata.ingest import ingest

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if mode == "stream":
        kind, opts = KINDS[layout]
        res = ingest(kind, root, name="bench", out=out, options=opts, register=False)
        usable = res.usable
    else:
        kind, opts = KINDS[layout]
        items, _ = scan_source(kind, root, opts)
        usable = len(items)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"base_mb": base, "peak_mb": peak, "seconds": dt, "usable": usable}))


def run_child(mode: str, root: Path, out: Path, layout: str) -> dict:
    env = {**os.environ, "MATDATA_CATALOG": str(out / "catalog"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(root), str(out), "--layout", layout],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    global W, H
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,200000")
    ap.add_argument("--bound-mb", type=float, default=15.0)
    ap.add_argument("--px", default=f"{W}x{H}", help="portrait size WxH (default %(default)s)")
    ap.add_argument("--no-peer", action="store_true", help="skip the in-memory peer scan")
    ap.add_argument("--layout", choices=sorted(KINDS), default="aisegment")
    ap.add_argument("--child", nargs=3, metavar=("MODE", "ROOT", "OUT"))
    args = ap.parse_args()
    if args.child:
        child(*args.child, layout=args.layout)
        return

    from rich.console import Console
    from rich.table import Table

    W, H = (int(v) for v in args.px.lower().split("x"))
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = ("stream",) if args.no_peer else ("stream", "in-memory")
    results: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory(prefix="matdata-bench-") as tmp:
        for n in sizes:
            root = Path(tmp) / f"aiseg-{n}"
            t0 = time.perf_counter()
            make_tree(root, n, args.layout)
            print(f"made {n} portraits in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
            for mode in modes:
                results[(mode, n)] = run_child(
                    mode, root, Path(tmp) / f"out-{mode}-{n}", args.layout
                )
                assert results[(mode, n)]["usable"] == n

    table = Table(title=f"ingest peak RSS ({args.layout} layout, {W}x{H}, fresh process each)")
    for col in ("mode", "items", "baseline MB", "peak MB", "scan growth MB", "s", "items/s"):
        table.add_column(col, justify="right")
    for (mode, n), r in results.items():
        table.add_row(
            mode,
            str(n),
            f"{r['base_mb']:.1f}",
            f"{r['peak_mb']:.1f}",
            f"{r['peak_mb'] - r['base_mb']:.1f}",
            f"{r['seconds']:.1f}",
            f"{n / r['seconds']:.0f}",
        )
    con = Console()
    con.print(table)
    lo, hi = min(sizes), max(sizes)
    for mode in modes:
        a, b = results[(mode, lo)], results[(mode, hi)]
        con.print(
            f"{mode}: peak {hi}/{lo} items = {b['peak_mb'] / a['peak_mb']:.3f}x, "
            f"growth {b['peak_mb'] - a['peak_mb']:+.1f} MB for {hi - lo} more items"
        )
    growth = results[("stream", hi)]["peak_mb"] - results[("stream", lo)]["peak_mb"]
    per_k = growth / (hi - lo) * 1000
    verdict = "FLAT" if growth <= args.bound_mb else "GROWS"
    con.print(
        f"streamed ingest: {verdict} (growth {growth:+.1f} MB from {lo} to {hi} items, "
        f"bound {args.bound_mb} MB; {per_k:+.3f} MB per 1,000 items, "
        f"{per_k * 190:+.1f} MB extrapolated from 10,000 to 200,000)"
    )
    if verdict != "FLAT":
        sys.exit(1)


if __name__ == "__main__":
    main()
