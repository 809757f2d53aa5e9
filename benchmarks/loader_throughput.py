"""Training loader throughput (samples/s per worker) against pure decoding of the same shards.

Throughput is measured in samples per CPU-second of one process (the loader's own process
with ``workers=0``, the worker processes together otherwise), so a busy shared machine does
not distort the ratio much; wall-clock samples/s are shown too.  With workers the ratio is
the steady state (a run of 1 epoch subtracted from one of ``1 + --epochs``: training streams
with its workers alive for the whole run), and the workers' start-up is shown apart, in
CPU-s per worker and amortised over the longer run.  Each figure is the median of
``--repeats`` interleaved rounds.  Peer in the same run: reading every record of the
split and decoding its image (JPEG) and alpha (PNG) with the same decoders, nothing else.
The loader additionally does the shuffle, the random resized crop, flip, colour jitter,
the on-the-fly trimap (:func:`matdata.trimap.make_trimap`) and the batch tensors (with
workers, in shared memory, which the benchmark releases after each batch as the trainer's
``prepare_batch`` does, so the workers reuse it).  Target: >= 0.8x pure decoding.

    python benchmarks/loader_throughput.py [--data DIR] [--samples 160 --src 512 --size 512]
        [--stages]

``--stages`` also times the steps of one training sample on the same records (CPU ms per
sample, best of the rounds): decoding, the crop (resize + flip + jitter) of image and
alpha, and the trimap, as :meth:`modnet.data.MattingStream._fill` runs them.

Without ``--data`` a synthetic dataset (smooth photo-like images, soft-edged alphas) is
written to a temporary folder with :class:`matdata.shards.ShardWriter`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np


def synthetic_dataset(root: str, samples: int, src: int, fmt: str) -> None:
    import cv2

    from matdata.imageio import encode_jpeg, encode_png
    from matdata.schema import Record
    from matdata.shards import ShardWriter, write_index

    rng = np.random.default_rng(0)
    infos = []
    per_shard = max(1, samples // 4)
    for idx, start in enumerate(range(0, samples, per_shard)):
        with ShardWriter(root, "train", idx, formats=(fmt,)) as w:
            for i in range(start, min(samples, start + per_shard)):
                low = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
                img = cv2.resize(low, (src, src), interpolation=cv2.INTER_CUBIC)
                img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
                yy, xx = np.mgrid[:src, :src]
                d = np.hypot(yy - src * 0.55, (xx - src / 2) * 1.4) - src * 0.3
                alpha = np.clip(128 - d * 40, 0, 255).astype(np.uint8)
                meta = {"split": "train", "fg": f"f{i}", "bg": f"b{i}", "seed": i}
                w.write(Record(f"s{i:05d}", encode_jpeg(img, 95), encode_png(alpha), meta))
            infos += w.close()
    write_index(root, infos, config={}, sources={}, rejects={})


def _cpu() -> float:
    return time.process_time()


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _proc_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of a live process from ``/proc`` (None if unreadable)."""
    import os

    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pure_decode(data: str, fmt: str | None) -> tuple[int, float, float]:
    """``(samples, wall s, CPU s)`` of reading + decoding image and alpha of the split."""
    from matdata.imageio import fast_decode_jpeg, fast_decode_png_gray
    from matdata.shards import iter_records

    t, c = time.perf_counter(), _cpu()
    n = 0
    for rec in iter_records(data, "train", fmt):
        fast_decode_jpeg(rec.image)
        fast_decode_png_gray(rec.alpha)
        n += 1
    return n, time.perf_counter() - t, _cpu() - c


def loader(
    data: str, fmt: str | None, size: int, batch: int, workers: int, epochs: int = 1
) -> tuple[int, float, float]:
    """``(samples, wall s, CPU s)`` of ``epochs`` whole epochs through the training loader.

    ``workers=0``: CPU time of this process (the first batch included: with a shuffle
    buffer larger than the split it reads every record of the epoch).
    ``workers>0``: CPU time of the worker processes, their start-up included.  They start
    from a forkserver, so they are not children of this process and ``RUSAGE_CHILDREN``
    never sees them: their ``/proc`` CPU times are read after every batch (the last
    reading, after the last batch, counts).  Without ``/proc`` it falls back to
    ``RUSAGE_CHILDREN`` (right for forked workers only).
    """
    from modnet.data import MattingStream, StreamConfig, make_loader, release_batch

    cfg = StreamConfig(image_size=(size, size), batch_size=batch, fmt=fmt, seed=0)
    stream = MattingStream(data, cfg, epochs=epochs, rank=0, world=1)
    dl = make_loader(stream, workers=workers)
    n = 0
    if workers == 0:
        t, c = time.perf_counter(), _cpu()
        for b in dl:
            n += b["image"].shape[0]
            release_batch(b)  # done with it, as the trainer's prepare_batch is
        return n, time.perf_counter() - t, _cpu() - c
    t, c = time.perf_counter(), _children_cpu()
    it = iter(dl)
    pids = [p.pid for p in getattr(it, "_workers", [])]  # DataLoader internals
    seen: dict[int, float] = {}
    for b in it:
        n += b["image"].shape[0]
        release_batch(b)  # done with it, as the trainer's prepare_batch is
        for pid in pids:
            cpu = _proc_cpu(pid)
            if cpu is not None:
                seen[pid] = cpu
    del it  # exhausted: workers are joined
    if pids and len(seen) == len(pids):
        return n, time.perf_counter() - t, sum(seen.values())
    return n, time.perf_counter() - t, _children_cpu() - c


def stage_times(data: str, fmt: str | None, size: int) -> dict[str, float]:
    """CPU seconds per step summed over the split, for the training steps of a sample."""
    import numpy as np

    from matdata.imageio import fast_decode_jpeg, fast_decode_png_gray
    from matdata.shards import iter_records
    from matdata.trimap import make_trimap, random_trimap_params
    from modnet.augment import AugmentConfig, crop_into, random_crop_box

    aug = AugmentConfig()
    out_img = np.empty((size, size, 3), np.uint8)
    out_a = np.empty((size, size), np.uint8)
    out_t = np.empty((size, size), np.uint8)
    t = dict.fromkeys(("decode JPEG", "decode PNG", "crop image", "crop alpha", "trimap"), 0.0)
    for i, rec in enumerate(iter_records(data, "train", fmt)):
        c0 = _cpu()
        image = fast_decode_jpeg(rec.image)
        c1 = _cpu()
        alpha = fast_decode_png_gray(rec.alpha)
        c2 = _cpu()
        rng = np.random.default_rng([0, 0, 0, i])
        box = random_crop_box(*alpha.shape, rng, 1.0, aug.scale, aug.ratio)
        flip = bool(rng.random() < aug.flip)
        jitter = tuple(
            float(rng.uniform(1 - a, 1 + a)) for a in (aug.brightness, aug.contrast, aug.saturation)
        )
        params = random_trimap_params(rng, aug.trimap_rel_range)
        c3 = _cpu()
        crop_into(image, box, out_img, flip, jitter)
        c4 = _cpu()
        crop_into(alpha, box, out_a, flip)
        c5 = _cpu()
        make_trimap(out_a, params, out=out_t)
        c6 = _cpu()
        for k, dt in zip(t, (c1 - c0, c2 - c1, c4 - c3, c5 - c4, c6 - c5), strict=True):
            t[k] += dt
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="a built dataset (default: a synthetic one)")
    ap.add_argument("--format", default=None, help="parquet | webdataset")
    ap.add_argument("--samples", type=int, default=160)
    ap.add_argument("--src", type=int, default=512, help="synthetic image side")
    ap.add_argument("--size", type=int, default=512, help="training crop side")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="*", default=[0, 2])
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    ap.add_argument(
        "--epochs", type=int, default=3, help="extra epochs of the longer run with workers"
    )
    ap.add_argument("--stages", action="store_true", help="also time the steps of a sample")
    args = ap.parse_args()

    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    tmp = None
    data = args.data
    if data is None:
        tmp = tempfile.TemporaryDirectory(prefix="matdata-bench-")
        data = tmp.name
        synthetic_dataset(data, args.samples, args.src, args.format or "parquet")

    from rich.console import Console
    from rich.table import Table

    # Interleaved rounds, median of each: the machine may be shared.  The ratio uses CPU
    # time (samples per CPU-second of one process), which contention distorts less.
    # With workers, each round runs the loader for 1 and for 1 + --epochs epochs: the
    # difference is the steady state (worker start-up cancels); the longer run alone is
    # the start-up amortised over its epochs.
    runs: dict[str, list[tuple[int, float, float]]] = {}
    names = ["decode", *(f"w{w}" for w in args.workers)]
    for _ in range(args.repeats):
        for name in names:
            if name == "decode":
                runs.setdefault(name, []).append(pure_decode(data, args.format))
                continue
            w = int(name[1:])
            for epochs in (1, 1 + args.epochs):
                got = loader(data, args.format, args.size, args.batch, w, epochs)
                runs.setdefault(f"{name}e{epochs}", []).append(got)

    def per_cpu(key: str) -> float:
        return statistics.median(n / max(c, 1e-9) for n, _, c in runs[key])

    def wall(key: str) -> float:
        return statistics.median(n / max(t, 1e-9) for n, t, _ in runs[key])

    def steady(name: str) -> tuple[float, float]:
        """(samples per worker CPU-s, start-up CPU-s per worker) from the two run lengths."""
        lo, hi = runs[f"{name}e1"], runs[f"{name}e{1 + args.epochs}"]
        rates = [(b[0] - a[0]) / max(b[2] - a[2], 1e-9) for a, b in zip(lo, hi, strict=True)]
        rate = statistics.median(rates)
        start = statistics.median(a[2] - a[0] / rate for a in lo) / max(1, int(name[1:]))
        return rate, start

    table = Table(
        title=f"loader vs pure decode ({'given data' if args.data else f'{args.src} px'}, "
        f"crop {args.size}, batch {args.batch}; median of {args.repeats} interleaved rounds)"
    )
    cols = ("pipeline", "wall samples/s", "samples per worker CPU-s", "vs decode")
    for col in (
        *cols,
        f"with start-up over {1 + args.epochs} epochs",
        "start-up CPU-s per process",
    ):
        table.add_column(col, justify="left" if col == "pipeline" else "right")
    ref = per_cpu("decode")
    rates: dict[str, float] = {}
    for name in names:
        if name == "decode":
            rates[name] = ref
            table.add_row("pure decode (image + alpha)", f"{wall(name):.1f}", f"{ref:.1f}",
                          "1.00x", "", "")  # fmt: skip
            continue
        rate, start = steady(name)
        rates[name] = rate
        long = f"{name}e{1 + args.epochs}"
        table.add_row(
            f"MattingStream + DataLoader (workers={name[1:]}), steady",
            f"{wall(long):.1f}",
            f"{rate:.1f}",
            f"{rate / ref:.2f}x",
            f"{per_cpu(long):.1f} ({per_cpu(long) / ref:.2f}x)",
            f"{start:.2f}",
        )
    Console(width=160).print(table)
    if args.stages:
        from matdata.shards import iter_records

        stages: dict[str, float] = {}
        for _ in range(args.repeats):
            got = stage_times(data, args.format, args.size)
            stages = {k: min(v, stages.get(k, v)) for k, v in got.items()}
        count = sum(1 for _ in iter_records(data, "train", args.format))
        st = Table(title="steps of one training sample (CPU ms per sample, best of rounds)")
        st.add_column("step")
        st.add_column("ms", justify="right")
        for k, v in stages.items():
            st.add_row(k, f"{1000 * v / count:.3f}")
        for name in names:
            label = "whole: pure decode" if name == "decode" else f"whole: loader, {name}"
            st.add_row(label, f"{1000 / rates[name]:.3f}")
        Console(width=160).print(st)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
