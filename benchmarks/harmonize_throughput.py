"""Harmonizer throughput at 600x800: images/s and the share of time in the network.

Every harmonizer matdata wraps, including the backboned iDIH models (HRNet / DeepLab);
``--models`` picks a subset, ``--device`` and ``--batch`` the device and the network
batch (on a GPU use ``--batch 32`` or more and ``--images`` a multiple of it).

Per image the loop does what a ``matdata harmonize`` worker does: decode the JPEG
composite and PNG alpha, harmonize (resize down, network, paste-back), encode a JPEG.
For networks the forward pass is timed separately (synchronised on CUDA), so the table
shows how much of the time is the network versus resizing, paste-back and I/O.  The
``none`` harmonizer is the floor (pure I/O) in the same run.  Networks use the
deterministic stand-in weights (speed does not depend on the values).

    python benchmarks/harmonize_throughput.py [--images 4] [--device cpu|cuda] [--batch 1]
    python benchmarks/harmonize_throughput.py --network-only [--device cuda --batch 32]
    python benchmarks/harmonize_throughput.py --end-to-end --device cuda --batch 32 \\
        --images 256 --models idih256,rainnet [--io-threads N]

``--end-to-end`` runs the shard task of ``matdata harmonize``
(:func:`harmonization.dataset.harmonize_shard`: read, decode, network, encode, write a
Parquet shard) on one shard of ``--images`` 800x600 composites, sequentially
(``io_threads=0``) and with decode/encode overlapping the network (``--io-threads``,
default as ``matdata harmonize`` picks), against the network-only throughput of the same
harmonizer (its ``_forward`` on a resident batch at the network size, autocast as used),
interleaved over ``--repeats`` rounds, best of each.  Target (issue 15): end to end
>= 0.8x network-only at batch >= 32 on a GPU.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from harmonization import build_network, load_harmonizer
from harmonization.weights import deterministic_state_dict
from matdata.imageio import encode_jpeg, encode_png, fast_decode_jpeg, fast_decode_png_gray

ALL_MODELS = (
    "none", "reinhard", "idih256", "issam256", "dih256", "rainnet", "rainnet512",
    "hrnet18s_idih256", "hrnet18_idih256", "hrnet18_v2p_idih256", "hrnet32_idih256",
    "deeplab_r34_idih256",
)  # fmt: skip


def make_inputs(n: int, h: int = 600, w: int = 800) -> list[tuple[bytes, bytes]]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3)).astype(np.uint8), (0, 0), 3)
        alpha = np.zeros((h, w), np.uint8)
        cv2.ellipse(alpha, (w // 2 + 10 * i, h // 2), (w // 5, h // 3), 0, 0, 360, 255, -1)
        out.append((encode_jpeg(img, 95), encode_png(cv2.GaussianBlur(alpha, (7, 7), 2))))
    return out


def bench(name: str, inputs, device: str, batch: int) -> dict[str, float]:
    params = {}
    ckpt = None
    n_params = 0
    if name not in ("none", "reinhard"):
        net = build_network(name)
        n_params = sum(p.numel() for p in net.parameters())
        ckpt = deterministic_state_dict(net)
        params = {"batch_size": batch}
    h = load_harmonizer(name, ckpt, device, **params)
    net_time = [0.0]
    if hasattr(h, "_forward"):
        inner = h._forward

        def timed(*a):
            if h.device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            r = inner(*a)
            if h.device.type == "cuda":
                torch.cuda.synchronize()
            net_time[0] += time.perf_counter() - t
            return r

        h._forward = timed
    # warm-up (first call allocates; on CUDA, cudnn autotune)
    img, a = fast_decode_jpeg(inputs[0][0]), fast_decode_png_gray(inputs[0][1])
    h(img, a.astype(np.float32) / 255)
    net_time[0] = 0.0
    t0 = time.perf_counter()
    for start in range(0, len(inputs), batch):
        chunk = inputs[start : start + batch]
        imgs = [fast_decode_jpeg(j) for j, _ in chunk]
        masks = [fast_decode_png_gray(p).astype(np.float32) / 255 for _, p in chunk]
        for o in h.batch(imgs, masks):
            encode_jpeg(o, 95)
    total = time.perf_counter() - t0
    return {"ips": len(inputs) / total, "total": total, "net": net_time[0], "params": n_params}


def conv_gmacs(net: torch.nn.Module, x: torch.Tensor, m: torch.Tensor) -> float:
    """Multiply-accumulates of the convolutions and linear layers in one forward."""
    total = [0]

    def hook(mod, inp, out) -> None:
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total[0] += out.numel() * k
        elif isinstance(mod, torch.nn.ConvTranspose2d):
            total[0] += inp[0].numel() * mod.out_channels * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, torch.nn.Linear):
            total[0] += out.numel() * mod.in_features

    handles = [mod.register_forward_hook(hook) for mod in net.modules()]
    with torch.inference_mode():
        net(x, m)
    for h in handles:
        h.remove()
    return total[0] / 1e9


def network_only(names: list[str], device: str, batch: int, repeats: int) -> None:
    """Bare forward passes at 256x256, interleaved, best of ``repeats``, vs idih256.

    Interleaving makes the ratios robust to a machine shared with other work."""
    names = ["idih256", *[n for n in names if n not in ("none", "reinhard", "idih256")]]
    names = [n for n in names if not n.startswith("rainnet")]  # RainNet takes a binary mask
    dev = torch.device(device)
    nets = {n: build_network(n).eval().to(dev) for n in names}
    x = torch.randn(batch, 3, 256, 256, device=dev)
    m = torch.rand(batch, 1, 256, 256, device=dev)
    best = dict.fromkeys(names, float("inf"))
    with torch.inference_mode():
        for n in names:  # warm-up
            nets[n](x, m)
        for _ in range(repeats):
            for n in names:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                nets[n](x, m)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                best[n] = min(best[n], time.perf_counter() - t)
    table = Table(
        title=f"network forward at 256x256, batch {batch}, device {device}, best of {repeats}, "
        f"torch threads {torch.get_num_threads()}"
    )
    for col in ("network", "params (M)", "conv GMAC/image", "ms/batch", "images/s", "vs idih256"):
        table.add_column(col, justify="left" if col == "network" else "right", no_wrap=True)
    for n in names:
        params = sum(p.numel() for p in nets[n].parameters()) / 1e6
        gmac = conv_gmacs(nets[n], x[:1], m[:1])
        table.add_row(
            n, f"{params:.2f}", f"{gmac:.2f}", f"{1000 * best[n]:.0f}",
            f"{batch / best[n]:.1f}", f"{best[n] / best['idih256']:.1f}x",
        )  # fmt: skip
    Console(width=140).print(table)


def end_to_end(
    names: list[str], device: str, batch: int, images: int, repeats: int, threads: int | None
) -> None:
    """Shard task sequential vs overlapped vs network-only, images/s (module docstring)."""
    import dataclasses
    import os
    import tempfile
    from pathlib import Path

    from harmonization.dataset import HarmonizeTask, harmonize_shard, io_threads_for
    from matdata.schema import Record
    from matdata.shards import ShardWriter, list_shards, write_index

    tmp = Path(tempfile.mkdtemp(prefix="harmonize_e2e_"))
    with ShardWriter(str(tmp / "src"), "train", 0, formats=("parquet",)) as w:
        for i, (jpg, png) in enumerate(make_inputs(images)):
            meta = {"split": "train", "fg": f"f{i}", "bg": f"b{i}", "seed": i}
            w.write(Record(key=f"k{i:05d}", image=jpg, alpha=png, meta=meta))
        infos = w.close()
    write_index(str(tmp / "src"), infos, config={}, sources={}, rejects={})
    shard = list_shards(str(tmp / "src"))[0]
    dev = torch.device(device)
    rows = []
    for name in [n for n in names if n not in ("none", "reinhard")]:
        weights = tmp / f"{name}.pth"
        torch.save(deterministic_state_dict(build_network(name)), weights)
        h = load_harmonizer(name, str(weights), device, batch_size=batch)
        auto = io_threads_for(h)
        n_threads = auto if threads is None else threads
        base = HarmonizeTask(
            src=str(tmp / "src"), out="", shard=shard, model=name, checkpoint=str(weights),
            checkpoint_sha256=None, params={"batch_size": batch}, device=device,
            batch_size=batch, formats=("parquet",), jpeg_quality=95, io_threads=0,
        )  # fmt: skip
        hh, ww = h.size
        x = torch.rand(batch, 3, hh, ww, device=dev)
        m = (torch.rand(batch, hh, ww, device=dev) > 0.5).float()
        best = {"seq": float("inf"), "overlap": float("inf"), "net": float("inf")}

        def sync() -> None:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)

        for r in range(repeats + 1):  # round 0 warms up (weights load, cudnn autotune)
            for mode, io in (("seq", 0), ("overlap", n_threads)):
                task = dataclasses.replace(base, out=str(tmp / f"{name}-{mode}-{r}"), io_threads=io)
                sync()
                t = time.perf_counter()
                harmonize_shard(task)
                sync()
                if r:
                    best[mode] = min(best[mode], (time.perf_counter() - t) / images)
            sync()
            t = time.perf_counter()
            for _ in range(max(1, images // batch)):
                h._forward(x, m)
            sync()
            if r:
                best["net"] = min(
                    best["net"], (time.perf_counter() - t) / (max(1, images // batch) * batch)
                )
        rows.append((name, n_threads, auto, best))
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    table = Table(
        title=f"harmonize shard task vs network only, {images} images 800x600, batch {batch}, "
        f"device {device}, best of {repeats} (load average {load})"
    )
    cols = ("harmonizer", "io threads", "network img/s", "sequential img/s", "overlapped img/s")
    for col in (*cols, "sequential / network", "overlapped / network"):
        table.add_column(col, justify="left" if col == "harmonizer" else "right", no_wrap=True)
    for name, n_threads, auto, b in rows:
        table.add_row(
            name, f"{n_threads} (auto {auto})", f"{1 / b['net']:.2f}", f"{1 / b['seq']:.2f}",
            f"{1 / b['overlap']:.2f}", f"{b['net'] / b['seq']:.2f}x",
            f"{b['net'] / b['overlap']:.2f}x",
        )  # fmt: skip
    Console(width=160).print(table)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--models", default=",".join(ALL_MODELS))
    ap.add_argument(
        "--network-only",
        action="store_true",
        help="time only the bare forward passes, interleaved, relative to idih256",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--end-to-end",
        action="store_true",
        help="the harmonize shard task (sequential and overlapped) vs network-only",
    )
    ap.add_argument("--io-threads", type=int, default=None, help="with --end-to-end")
    args = ap.parse_args()
    if args.end_to_end:
        end_to_end(
            args.models.split(","), args.device, args.batch, args.images, args.repeats,
            args.io_threads,
        )  # fmt: skip
        return
    if args.network_only:
        network_only(args.models.split(","), args.device, args.batch, args.repeats)
        return
    inputs = make_inputs(args.images)
    dev = args.device
    table = Table(
        title=f"harmonizers at 800x600, {args.images} images, device {dev}, batch {args.batch}, "
        f"torch threads {torch.get_num_threads()}"
    )
    cols = ("harmonizer", "params (M)", "images/s", "ms/image", "network ms", "network share")
    for col in (*cols, "vs none"):
        table.add_column(col, justify="left" if col == "harmonizer" else "right", no_wrap=True)
    floor = None
    for name in args.models.split(","):
        r = bench(name, inputs, dev, args.batch)
        floor = floor or r["ips"]
        share = r["net"] / r["total"] if r["net"] else 0.0
        table.add_row(
            name,
            f"{r['params'] / 1e6:.2f}" if r["params"] else "-",
            f"{r['ips']:.2f}",
            f"{1000 * r['total'] / args.images:.0f}",
            f"{1000 * r['net'] / args.images:.0f}" if r["net"] else "-",
            f"{100 * share:.0f}%" if r["net"] else "-",
            f"{r['ips'] / floor:.2f}x",
        )
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
