"""Peak memory of parsing COCO's ``instances_train2017.json``: it must stay flat (issue 11).

Writes synthetic ``annotations/instances_train2017.json`` files in the official key order
(info, licenses, images, annotations, categories) with COCO-like records (polygon
segmentations of 20 points, so ~480 bytes per annotation: 120k images + 900k annotations
is ~440 MB, like the real 448 MB file) at two sizes, then measures each in a fresh child
process (peak RSS from ``resource.getrusage``):

* ``parse``: :func:`matdata.sources.coco.parse_instances` alone (the three ijson passes);
* ``scan``: the whole :meth:`CocoSource.scan` over a ROOT whose image folder is empty,
  outcomes counted and dropped: parsing, the person filter for every image and one
  (failing) file open per remaining image - what ingest does before decoding pixels.
  The images are not on disk, so no decoding is measured (decoding is per image, in a
  bounded window of threads, and does not depend on the JSON's size).
* ``scan+folder`` (``--folder``): the same scan over a ROOT whose image folder holds an
  (empty) file for every listed image and three unlisted files: the folder is walked for
  files the JSON does not list (streamed, not listed into memory: 118k names for
  train2017) and every image is opened (each is then a decode reject).

The peer in the same run is ``json.load`` of the same file (what a naive reader does).

    python benchmarks/coco_ingest_memory.py                  # 10k/75k vs 120k/900k
    python benchmarks/coco_ingest_memory.py --sizes 2000,20000
    python benchmarks/coco_ingest_memory.py --sizes 2000,20000 --folder --no-peer
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ANN_PER_IMAGE = 7.5  # 900k / 120k
CATEGORY_IDS = [1, 2, 3, 4, 6, 8, 18, 44, 62, 67]


def write_instances(path: Path, n_images: int, n_ann: int, seed: int = 0) -> None:
    """Stream a synthetic COCO instances file to ``path``."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write('{"info": {"year": 2017, "version": "1.0", "description": "synthetic"}, ')
        f.write('"licenses": [{"url": "http://x", "id": 1, "name": "x"}], "images": [')
        for i in range(n_images):
            iid = 9 + 3 * i
            rec = (
                f'{{"license": 1, "file_name": "{iid:012d}.jpg", "coco_url": '
                f'"http://images.cocodataset.org/train2017/{iid:012d}.jpg", "height": 480, '
                f'"width": 640, "date_captured": "2013-11-14 17:02:52", "flickr_url": '
                f'"http://farm7.staticflickr.com/6116/6255196340_da26cf2c9e_z.jpg", '
                f'"id": {iid}}}'
            )
            f.write(("," if i else "") + rec)
        f.write('], "annotations": [')
        for a in range(n_ann):
            iid = 9 + 3 * rng.randrange(n_images)
            pts = ", ".join(f"{rng.uniform(0, 640):.2f}" for _ in range(40))
            cat = rng.choice(CATEGORY_IDS)
            rec = (
                f'{{"segmentation": [[{pts}]], "area": 702.10575, "iscrowd": 0, '
                f'"image_id": {iid}, "bbox": [473.07, 395.93, 38.65, 28.67], '
                f'"category_id": {cat}, "id": {a + 1}}}'
            )
            f.write(("," if a else "") + rec)
        cats = ", ".join(
            f'{{"supercategory": "s", "id": {c}, "name": "{"person" if c == 1 else f"c{c}"}"}}'
            for c in CATEGORY_IDS
        )
        f.write(f'], "categories": [{cats}]}}')


def _image_folder(root: Path, n_images: int) -> None:
    """``ROOT-folder``: ROOT's annotations (linked) and a train2017/ folder with an empty
    file per listed image (the names :func:`write_instances` lists) and three unlisted."""
    folder_root = root.with_name(root.name + "-folder")
    images = folder_root / "train2017"
    if (images / "unlisted-2.jpg").exists():
        return
    images.mkdir(parents=True, exist_ok=True)
    if not (folder_root / "annotations").exists():
        (folder_root / "annotations").symlink_to(root / "annotations")
    for i in range(n_images):
        (images / f"{9 + 3 * i:012d}.jpg").touch()
    for i in range(3):
        (images / f"unlisted-{i}.jpg").touch()


def child(mode: str, root: str) -> None:
    import resource

    import numpy as np  # noqa: F401

    from matdata.sources.coco import CocoSource, parse_instances

    path = str(Path(root) / "annotations" / "instances_train2017.json")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    info: dict = {}
    if mode == "parse":
        ix = parse_instances(path, "train2017")
        info = {"images": len(ix), "index_mb": ix.nbytes() / 1e6}
    elif mode in ("scan", "scan+folder"):
        if mode == "scan+folder":
            root = str(Path(root).with_name(Path(root).name + "-folder"))
        src = CocoSource(root, workers=1)
        outcomes = {"items": 0, "rejects": 0}
        for x in src.scan():
            outcomes["rejects" if type(x).__name__ == "Reject" else "items"] += 1
        info = {**outcomes, "filtered": src.filtered}
    else:  # json.load, the peer
        with open(path) as f:
            doc = json.load(f)
        info = {"images": len(doc["images"])}
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"base_mb": base, "peak_mb": peak, "seconds": dt, **info}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,120000", help="image counts, comma-separated")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--no-peer", action="store_true", help="skip json.load (it takes GBs)")
    ap.add_argument("--folder", action="store_true", help="also scan+folder (see above)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    from rich.console import Console
    from rich.table import Table

    work = Path(args.workdir or tempfile.mkdtemp(prefix="coco-memory-"))
    sizes = [int(s) for s in args.sizes.split(",")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    table = Table(title="COCO instances_train2017.json: peak RSS (fresh process each)")
    for col in ("images", "annotations", "JSON size", "what", "RSS after imports", "peak RSS",
                "peak - imports", "time"):  # fmt: skip
        table.add_column(col, justify="right")
    peaks: dict[tuple[int, str], float] = {}
    for n in sizes:
        root = work / f"coco-{n}"
        ann = root / "annotations" / "instances_train2017.json"
        n_ann = int(n * ANN_PER_IMAGE)
        if not ann.exists():
            t0 = time.perf_counter()
            write_instances(ann, n, n_ann)
            print(f"wrote {ann} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        (root / "train2017").mkdir(exist_ok=True)
        if args.folder:
            _image_folder(root, n)
        modes = ["parse", "scan"] + (["scan+folder"] if args.folder else [])
        modes += [] if args.no_peer else ["json.load"]
        for mode in modes:
            r = subprocess.run(
                [sys.executable, __file__, "--child", mode, str(root)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            d = json.loads(r.stdout.strip().splitlines()[-1])
            peaks[(n, mode)] = d["peak_mb"]
            table.add_row(
                f"{n:,}",
                f"{n_ann:,}",
                f"{ann.stat().st_size / 1e6:.0f} MB",
                mode,
                f"{d['base_mb']:.0f} MB",
                f"{d['peak_mb']:.0f} MB",
                f"{d['peak_mb'] - d['base_mb']:.0f} MB",
                f"{d['seconds']:.1f} s",
            )
    Console().print(table)
    if len(sizes) >= 2:
        a, b = sizes[0], sizes[-1]
        for mode in ("parse", "scan") + (("scan+folder",) if args.folder else ()):
            grow = peaks[(b, mode)] - peaks[(a, mode)]
            verdict = "FLAT" if grow <= 15 else "GROWS"
            print(f"{mode}: peak RSS {peaks[(b, mode)]:.0f} MB at {b:,} images vs "
                  f"{peaks[(a, mode)]:.0f} MB at {a:,} (+{grow:.0f} MB): {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
