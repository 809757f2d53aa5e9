"""Build throughput vs the codec floor, 1 -> 2 worker scaling, and worker memory vs size.

The build-vs-floor ratios here are by shard-task time (in this process, or summed over a
Dask build's tasks): they leave out what a user's ``matdata build`` costs besides its
tasks, and its inputs are a folder of grey PNG mattes.  Issue 15's measure is end to
end (the build as a subprocess, marginal time of 1,000 more composites, AISegment RGBA
mattes): ``benchmarks/build_e2e.py``.  This script remains the one for the 2-worker
scaling and the worker-memory rows.

Inputs are AISegment-sized: 600x800 foregrounds (JPEG + PNG alpha, the demo generator's
portraits with soft hair) and Places-sized backgrounds (683x512 JPEG scenes), written to
a temporary folder and read through the ``folder`` source, as a real build reads files.
Output 512x512, K backgrounds per foreground, Parquet.

Measured in the same run:

* **codec floor** (one core, in this process): decode every input once (fg JPEG + alpha
  PNG, bg JPEG) and encode every output (512x512 JPEG composite at the build's quality +
  PNG alpha) - the least any build must do.  Floor rate = samples / that time.
* **same shard tasks in this process** (no Dask), by task wall time and by CPU time; the
  CPU-time ratio (build CPU time vs the floor's CPU time, measured back to back in each
  round) is the figure that stays put when other jobs share the machine.
* **interleaved**: the same, with the floor of each shard task (its inputs decoded once,
  its outputs encoded) measured right before the task, summed over tasks: the ratio least
  disturbed by other jobs on a shared machine.
* **build, 1 worker**: composites/s per worker = samples / summed shard-task time (the
  worker's busy time, without cluster start-up); target >= 0.8x the floor rate.
* **build, 2 workers**: scaling = shard-phase wall rate with 2 workers / with 1 worker;
  target >= 1.7x (needs 2 idle cores).
* **peak worker memory** as the number of foregrounds grows (it should stay flat: a worker
  holds one shard's records at a time, never the dataset).

Backgrounds default to ``fg * K`` so that, as with Places365's 1.8M scenes, a background
is used about once (the floor decodes each distinct one once; so does the build, but a
small pool reused across shards would be decoded again for each use).

Usage: ``python benchmarks/build_throughput.py [--fg 8] [--per-fg 10] [--bg N]``
(the defaults are a small run of a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _scene(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A photo-like background: smooth colour fields, edges, fine texture."""
    import cv2

    low = rng.random((max(2, h // 64), max(2, w // 64), 3)).astype(np.float32)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC) * 200 + 20
    for _ in range(6):  # a few hard-edged objects
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
        x1, y1 = x0 + int(rng.integers(20, w // 3)), y0 + int(rng.integers(20, h // 3))
        cv2.rectangle(img, (x0, y0), (x1, y1), rng.random(3).tolist(), -1)
        img[y0:y1, x0:x1] *= 255
    img += rng.normal(0, 6, img.shape).astype(np.float32)  # sensor-like texture
    return np.clip(img, 0, 255).astype(np.uint8)


def make_inputs(root: Path, n_fg: int, n_bg: int, quality: int = 92) -> None:
    from matdata.imageio import encode_jpeg, encode_png
    from matdata.sources.demo import demo_foreground_layers

    (root / "fg" / "images").mkdir(parents=True)
    (root / "fg" / "alphas").mkdir(parents=True)
    (root / "bg").mkdir(parents=True)
    for i in range(n_fg):
        _, alpha, photo = demo_foreground_layers(i, size=(600, 800), seed=1)
        (root / "fg" / "images" / f"p{i:05d}.jpg").write_bytes(encode_jpeg(photo, quality))
        (root / "fg" / "alphas" / f"p{i:05d}.png").write_bytes(encode_png(alpha))
    rng = np.random.default_rng(0)
    for j in range(n_bg):
        (root / "bg" / f"s{j:05d}.jpg").write_bytes(encode_jpeg(_scene(rng, 683, 512), quality))


def codec_floor(root: Path, n_fg: int, per_fg: int, quality: int) -> tuple[float, int, float]:
    """Seconds to decode every input once + encode every output; number of outputs; the
    CPU seconds of the same (this process: robust to other load on a shared machine)."""
    import cv2

    from matdata.imageio import decode_alpha, decode_image

    cv2.setNumThreads(1)
    fgs = sorted((root / "fg" / "images").glob("*.jpg"))[:n_fg]
    bgs = sorted((root / "bg").glob("*.jpg"))
    t0, c0 = time.perf_counter(), time.process_time()
    decoded = []
    for f in fgs:
        rgb = decode_image(f.read_bytes(), f.name)
        a = decode_alpha((root / "fg" / "alphas" / (f.stem + ".png")).read_bytes(), f.name)
        decoded.append((rgb, a))
    bg_px = [decode_image(b.read_bytes(), b.name) for b in bgs]
    t_dec, c_dec = time.perf_counter() - t0, time.process_time() - c0
    # outputs to encode: realistic 512x512 content, prepared outside the timed part
    outs = [
        _floor_output(rgb, a, bg_px[(i * per_fg + k) % len(bg_px)])
        for i, (rgb, a) in enumerate(decoded)
        for k in range(per_fg)
    ]
    t_enc, c_enc = _encode_all(outs, quality)
    return t_dec + t_enc, len(outs), c_dec + c_enc


def _floor_output(rgb: np.ndarray, a: np.ndarray, bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A realistic 512x512 composite + alpha for the floor to encode (made untimed)."""
    import cv2

    bg = cv2.resize(bg[:, 85:597], (512, 512))
    img, al = cv2.resize(rgb[:600], (512, 512)), cv2.resize(a[:600], (512, 512))
    m = al[:, :, None].astype(np.float32) / 255
    return (img * m + bg * (1 - m)).astype(np.uint8), al


def _encode_all(outs: list[tuple[np.ndarray, np.ndarray]], quality: int) -> tuple[float, float]:
    """Encode every output as the build does; return (wall, CPU) seconds."""
    from matdata.imageio import encode_jpeg, encode_png

    t0, c0 = time.perf_counter(), time.process_time()
    for img, al in outs:
        encode_jpeg(img, quality)
        encode_png(al)
    return time.perf_counter() - t0, time.process_time() - c0


def make_cfg(root: Path, out: Path, n_fg: int, per_fg: int, quality: int):
    from matdata.build_config import BuildConfig

    # the first n_fg foregrounds, as a folder of symlinks (no copies)
    sub = root / f"fg{n_fg}"
    if not sub.exists():
        for d in ("images", "alphas"):
            (sub / d).mkdir(parents=True)
            for p in sorted((root / "fg" / d).iterdir())[:n_fg]:
                (sub / d / p.name).symlink_to(p)
    return BuildConfig(
        fg=f"folder:{sub}",
        bg=f"folder:{root / 'bg'}",
        out=str(out),
        per_fg=per_fg,
        size=(512, 512),
        formats=("parquet",),
        samples_per_shard=per_fg * 2,
        jpeg_quality=quality,
        fg_options={"val_fraction": 0.0, "verify": "probe"},
        bg_options={"role": "bg", "val_fraction": 0.0, "verify": "probe"},
    )


def build(root: Path, out: Path, n_fg: int, per_fg: int, workers: int, quality: int):
    from rich.console import Console

    from pipelines.build import run_build

    cfg = make_cfg(root, out, n_fg, per_fg, quality)
    return run_build(cfg, workers=workers, progress=False, console=Console(quiet=True))


def in_process(root: Path, out: Path, n_fg: int, per_fg: int, quality: int) -> tuple[float, float]:
    """Samples/s of the same shard tasks run here, one after another, without Dask: by
    task (wall) time and by CPU time of this process."""
    from matdata.builder import prepare_build, run_shard
    from pipelines.build import prepare_output

    plan = prepare_build(make_cfg(root, out, n_fg, per_fg, quality))
    prepare_output(plan)
    results, cpu = [], 0.0
    for t in plan.tasks:
        c0 = time.process_time()
        results.append(run_shard(t))
        cpu += time.process_time() - c0
    n = sum(r.samples for r in results)
    return n / sum(r.seconds for r in results), n / cpu


def _task_floor(task, quality: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the codec floor of one shard task: decode its foregrounds
    (image + alpha) and its distinct backgrounds once, encode one 512x512 JPEG + PNG
    alpha per sample (outputs prepared outside the timed part)."""

    from matdata.imageio import decode_alpha, decode_image

    t0, c0 = time.perf_counter(), time.process_time()
    fgs = {}
    for i, it in task.fg_items.items():
        rgb = decode_image(Path(it.image).read_bytes(), it.image)
        fgs[i] = (rgb, decode_alpha(Path(it.alpha).read_bytes(), it.alpha))
    bgs = {
        j: decode_image(Path(it.image).read_bytes(), it.image) for j, it in task.bg_items.items()
    }
    t_dec, c_dec = time.perf_counter() - t0, time.process_time() - c0
    outs = [_floor_output(*fgs[fi], bgs[bi]) for fi, bi, *_ in task.pairs]
    t_enc, c_enc = _encode_all(outs, quality)
    return t_dec + t_enc, c_dec + c_enc


def interleaved(root: Path, out: Path, n_fg: int, per_fg: int, quality: int) -> tuple[float, float]:
    """Build rate / floor rate by wall and by CPU time, with the floor of each shard task
    measured right before the task itself (both see the same load on a shared machine)."""
    from matdata.builder import prepare_build, run_shard
    from pipelines.build import prepare_output

    plan = prepare_build(make_cfg(root, out, n_fg, per_fg, quality))
    prepare_output(plan)
    fw = fc = bw = bc = 0.0
    for t in plan.tasks:
        w, c = _task_floor(t, quality)
        fw, fc = fw + w, fc + c
        t0, c0 = time.perf_counter(), time.process_time()
        run_shard(t)
        bw, bc = bw + time.perf_counter() - t0, bc + time.process_time() - c0
    return fw / bw, fc / bc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fg", type=int, default=8, help="foregrounds (largest size)")
    ap.add_argument(
        "--bg", type=int, default=None, help="backgrounds (default fg * per-fg, like Places)"
    )
    ap.add_argument("--per-fg", type=int, default=10)
    ap.add_argument("--quality", type=int, default=95)
    ap.add_argument("--rounds", type=int, default=3, help="floor / in-process repetitions")
    args = ap.parse_args()
    if args.bg is None:
        args.bg = args.fg * args.per_fg

    from rich.console import Console
    from rich.table import Table

    console = Console()
    with tempfile.TemporaryDirectory(prefix="matdata-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        make_inputs(root, args.fg, args.bg)
        console.print(
            f"inputs: {args.fg} fg 600x800, {args.bg} bg 683x512 ({time.perf_counter() - t0:.1f} s)"
        )
        # the machine may be shared: alternate floor and in-process build 3 times and
        # keep the medians, then the Dask builds, then the floor again (best floor kept)
        floors, inprocs, floors_cpu, inprocs_cpu = [], [], [], []
        for r in range(args.rounds):
            floor_s, n, floor_c = codec_floor(root, args.fg, args.per_fg, args.quality)
            floors.append(n / floor_s)
            floors_cpu.append(n / floor_c)
            out0 = root / f"out0-{r}"
            rate, rate_cpu = in_process(root, out0, args.fg, args.per_fg, args.quality)
            inprocs.append(rate)
            inprocs_cpu.append(rate_cpu)
        inter = [
            interleaved(root, root / f"inter-{r}", args.fg, args.per_fg, args.quality)
            for r in range(args.rounds)
        ]
        inproc = statistics.median(inprocs)
        # CPU-time ratio per round (floor and build measured back to back), then the median
        cpu_ratio = statistics.median(b / f for b, f in zip(inprocs_cpu, floors_cpu, strict=True))
        s1 = build(root, root / "out1", args.fg, args.per_fg, 1, args.quality)
        s2 = build(root, root / "out2", args.fg, args.per_fg, 2, args.quality)
        floor_s, n, _ = codec_floor(root, args.fg, args.per_fg, args.quality)
        floors.append(n / floor_s)
        floor_rate = statistics.median(floors)
        per_worker = s1.samples_written / s1.task_seconds
        wall1 = s1.samples_written / s1.shard_seconds
        wall2 = s2.samples_written / s2.shard_seconds
        same = (root / "out1" / "dataset.json").read_bytes() == (
            root / "out2" / "dataset.json"
        ).read_bytes()

        mem = []
        for n_fg in sorted({max(1, args.fg // 4), max(1, args.fg // 2), args.fg}):
            s = build(root, root / f"mem{n_fg}", n_fg, args.per_fg, 1, args.quality)
            mem.append((n_fg * args.per_fg, s.peak_rss_mb))

    t = Table(
        title=f"build throughput, 512x512 output, K={args.per_fg}, {n} samples, "
        f"cpus={os.cpu_count()}",
        title_justify="left",
    )
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("ratio", justify="right")
    t.add_column("target", justify="right")
    t.add_row(
        f"codec floor (decode inputs once + encode outputs), 1 core, median of {len(floors)}",
        f"{floor_rate:.1f} samples/s",
        "1.00x",
        "",
    )
    t.add_row(
        f"same shard tasks in this process, no Dask, median of {len(inprocs)}",
        f"{inproc:.1f} samples/s",
        f"{inproc / floor_rate:.2f}x floor",
        "",
    )
    t.add_row(
        "same, by CPU time (floor's CPU time likewise), median of per-round ratios",
        f"{statistics.median(inprocs_cpu):.1f} samples/s",
        f"{cpu_ratio:.2f}x floor",
        "",
    )
    t.add_row(
        f"same, interleaved per shard with its own floor, wall, median of {len(inter)}",
        "",
        f"{statistics.median(x[0] for x in inter):.2f}x floor",
        "",
    )
    t.add_row(
        f"same, interleaved per shard with its own floor, CPU, median of {len(inter)}",
        "",
        f"{statistics.median(x[1] for x in inter):.2f}x floor",
        "",
    )
    t.add_row(
        "build, 1 worker, per-worker rate (task time)",
        f"{per_worker:.1f} samples/s",
        f"{per_worker / floor_rate:.2f}x floor",
        ">= 0.80x",
    )
    t.add_row("build, 1 worker, shard-phase wall rate", f"{wall1:.1f} samples/s", "", "")
    t.add_row(
        "build, 2 workers, shard-phase wall rate",
        f"{wall2:.1f} samples/s",
        f"{wall2 / wall1:.2f}x 1 worker",
        ">= 1.70x",
    )
    t.add_row("dataset.json identical for 1 and 2 workers", str(same), "", "True")
    t.add_row(
        "end-to-end (incl. planning + cluster start), 1 worker", f"{s1.seconds:.1f} s", "", ""
    )
    for samples, rss in mem:
        t.add_row(
            f"peak worker RSS, {samples} samples",
            f"{rss:.0f} MiB",
            f"{rss / mem[0][1]:.2f}x smallest",
            "flat",
        )
    console.print(t)


if __name__ == "__main__":
    main()
