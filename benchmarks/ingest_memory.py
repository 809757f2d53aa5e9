"""Peak memory of ``matdata ingest`` at 1,000 vs 10,000 items: it must stay flat.

Makes small demo-sized portraits (192x256 JPEG + RGBA matte PNG) in the AISegment layout
in a temporary directory, then ingests each size in a fresh child process and reads the
child's peak RSS (``resource.getrusage``).  The peer in the same run is an in-memory scan
(``matdata.catalog.scan_source``: every Item kept in a list), which grows with the source.

    python benchmarks/ingest_memory.py                 # 1000 and 10000 items
    python benchmarks/ingest_memory.py --sizes 200,2000

The verdict compares the streamed ingest's peak RSS growth (large minus small) with a
bound of 25 MB; the figures are printed as a rich table.
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

W, H = 192, 256  # the demo source's foreground size
GROUP_SIZE = 500  # portraits per shoot group folder
DISTINCT = 40  # distinct images, written repeatedly (decode cost is what matters)


def make_tree(root: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    jpgs, pngs = [], []
    yy, xx = np.mgrid[0:H, 0:W]
    for i in range(DISTINCT):
        img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
        r = ((xx - W / 2) ** 2 / (W * 0.35) ** 2 + (yy - H * 0.6) ** 2 / (H * 0.45) ** 2) ** 0.5
        alpha = np.clip((1.0 - r) * 8 * 255 + i, 0, 255).astype(np.uint8)
        b = io.BytesIO()
        Image.fromarray(img).save(b, "JPEG", quality=85)
        jpgs.append(b.getvalue())
        b = io.BytesIO()
        Image.fromarray(np.dstack([img, alpha]), "RGBA").save(b, "PNG", compress_level=1)
        pngs.append(b.getvalue())
    for k in range(n):
        group = f"18031{k // GROUP_SIZE:05d}"
        stem = f"{group}-{k:08d}"
        clip = root / "clip_img" / group / f"clip_{k // 100:08d}"
        mat = root / "matting" / group / f"matting_{k // 100:08d}"
        clip.mkdir(parents=True, exist_ok=True)
        mat.mkdir(parents=True, exist_ok=True)
        (clip / f"{stem}.jpg").write_bytes(jpgs[k % DISTINCT])
        (mat / f"{stem}.png").write_bytes(pngs[k % DISTINCT])


def child(mode: str, root: str, out: str) -> None:
    """Run in a fresh process: ingest (or in-memory scan) and print peak RSS as JSON."""
    import resource

    import pyarrow.parquet  # noqa: F401 - count imports in the baseline, not the scan

    import matdata.sources.aisegment  # noqa: F401
    from matdata.catalog import scan_source
    from matdata.ingest import ingest

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if mode == "stream":
        res = ingest("aisegment", root, name="bench", out=out, register=False)
        usable = res.usable
    else:
        items, _ = scan_source("aisegment", root)
        usable = len(items)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"base_mb": base, "peak_mb": peak, "seconds": dt, "usable": usable}))


def run_child(mode: str, root: Path, out: Path) -> dict:
    env = {**os.environ, "MATDATA_CATALOG": str(out / "catalog"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(root), str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--bound-mb", type=float, default=25.0)
    ap.add_argument("--child", nargs=3, metavar=("MODE", "ROOT", "OUT"))
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return

    from rich.console import Console
    from rich.table import Table

    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory(prefix="matdata-bench-") as tmp:
        for n in sizes:
            root = Path(tmp) / f"aiseg-{n}"
            t0 = time.perf_counter()
            make_tree(root, n)
            print(f"made {n} portraits in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
            for mode in ("stream", "in-memory"):
                results[(mode, n)] = run_child(mode, root, Path(tmp) / f"out-{mode}-{n}")
                assert results[(mode, n)]["usable"] == n

    table = Table(title="ingest peak RSS (aisegment layout, 192x256, fresh process each)")
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
    for mode in ("stream", "in-memory"):
        a, b = results[(mode, lo)], results[(mode, hi)]
        con.print(
            f"{mode}: peak {hi}/{lo} items = {b['peak_mb'] / a['peak_mb']:.3f}x, "
            f"growth {b['peak_mb'] - a['peak_mb']:+.1f} MB for {hi - lo} more items"
        )
    growth = results[("stream", hi)]["peak_mb"] - results[("stream", lo)]["peak_mb"]
    verdict = "FLAT" if growth <= args.bound_mb else "GROWS"
    con.print(f"streamed ingest: {verdict} (growth {growth:+.1f} MB, bound {args.bound_mb} MB)")
    if verdict != "FLAT":
        sys.exit(1)


if __name__ == "__main__":
    main()
