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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--models", default=",".join(ALL_MODELS))
    args = ap.parse_args()
    inputs = make_inputs(args.images)
    dev = args.device
    table = Table(
        title=f"harmonizers at 800x600, {args.images} images, device {dev}, batch {args.batch}, "
        f"torch threads {torch.get_num_threads()}"
    )
    cols = ("harmonizer", "params (M)", "images/s", "ms/image", "network ms", "network share")
    for col in (*cols, "vs none"):
        table.add_column(col, justify="left" if col == "harmonizer" else "right")
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
    Console().print(table)


if __name__ == "__main__":
    main()
