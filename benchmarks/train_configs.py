"""Training speed options of `matdata train` against a bare fp32 forward+backward, one run.

The floor is the same MODNet as a bare fp32 loop at ``--floor-batch`` (default 8):
``zero_grad``, ``model(x, False)``, a plain MSE on the matte, ``backward()`` - no optimizer,
no MODNet losses.  Each configuration is a real :class:`modnet.train.Trainer` (built on a
tiny dataset written here; its ``train_step`` gets in-memory batches, so the loader is not
measured: see ``loader_throughput.py`` and the ``data_time`` of ``matdata train``'s
``metrics.jsonl``).  Floor and configurations are timed in interleaved rounds; the figure
is the median step time per configuration, reported as samples/s and as ratios to the
floor's samples/s and to ``today`` (the defaults before these options: fp16 AMP on CUDA,
fp32 on the CPU, unfused AdamW, batch 8).

    python benchmarks/train_configs.py --device cuda                 # GPU session, 512 px
    python benchmarks/train_configs.py --device cpu --size 128 --floor-batch 2 --steps 2

Configurations (``--configs``, comma list; default every one that applies to the device):
``today``, ``fp32``, ``fp16`` (CUDA), ``bf16``, ``channels_last``, ``fused``, ``compile``
(CUDA unless listed), ``batchx2``, ``batchx4`` (2x and 4x the floor batch), ``best``
(bf16 + channels_last + fused + compile at 4x batch) and ``best_eager`` (the same without
compile).  The ``loss vs fp32`` column compares the warm-up losses (same start weights
and batch; from the second on after updates, so fused kernels show) with ``fp32``'s: a
faster configuration must compute the same thing.  On CPU, ``--threads`` sets torch's
threads for every part alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: name -> (options for resolve_config, batch multiple of the floor batch)
CONFIGS: dict[str, tuple[dict[str, Any], int]] = {
    "today": ({"fused": False}, 1),
    "fp32": ({"precision": "fp32", "fused": False}, 1),
    "fp16": ({"precision": "fp16", "fused": False}, 1),
    "bf16": ({"precision": "bf16", "fused": False}, 1),
    "channels_last": ({"channels_last": True, "fused": False}, 1),
    "fused": ({"fused": True}, 1),
    "compile": ({"compile": True, "fused": False}, 1),
    "batchx2": ({"fused": False}, 2),
    "batchx4": ({"fused": False}, 4),
    "best_eager": ({"precision": "bf16", "channels_last": True, "fused": True}, 4),
    "best": ({"precision": "bf16", "channels_last": True, "fused": True, "compile": True}, 4),
}
CUDA_ONLY = {"fp16"}
CPU_OPT_IN = {"compile", "best"}  # compiling MODNet on a small CPU takes minutes


def _tiny_dataset(root: Path) -> None:
    """Four train records and one val record: enough for a Trainer to start (the steps get
    in-memory batches)."""
    from matdata.imageio import encode_jpeg, encode_png
    from matdata.schema import Record
    from matdata.shards import ShardWriter, write_index

    infos = []
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 1)):
        with ShardWriter(str(root), split, 0, formats=("webdataset",)) as w:
            for i in range(n):
                img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
                alpha = rng.integers(0, 256, (64, 64), dtype=np.uint8)
                meta = {"split": split, "fg": f"f{i}", "bg": f"b{i}", "seed": i, "coarse": False}
                rec = Record(f"{split}{i}", encode_jpeg(img, 90), encode_png(alpha), meta=meta)
                w.write(rec)
            infos += w.close()
    write_index(str(root), infos, config={}, sources={}, rejects={})


def _raw_batch(b: int, s: int) -> dict[str, torch.Tensor]:
    """A loader-shaped batch (uint8 NHWC image, uint8 masks), as the stream yields it."""
    g = torch.Generator().manual_seed(0)
    alpha = torch.randint(0, 256, (b, s, s), generator=g, dtype=torch.uint8)
    return {
        "image": torch.randint(0, 256, (b, s, s, 3), generator=g, dtype=torch.uint8),
        "alpha": alpha,
        "trimap": torch.where(alpha < 50, 0, torch.where(alpha > 200, 255, 128)).to(torch.uint8),
        "ignore": torch.zeros_like(alpha),
        "coarse": torch.zeros(b, dtype=torch.bool),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Case:
    """One timed thing: a callable doing a step of ``batch`` samples."""

    def __init__(self, name: str, batch: int, step: Any, note: str = "") -> None:
        self.name, self.batch, self.step, self.note = name, batch, step, note
        self.times: list[float] = []
        self.losses: list[float] = []  # of the warm-up steps (same batch, same start weights)


def _floor(device: torch.device, hr: int, batch: int, size: int) -> _Case:
    from modnet import build_modnet

    torch.manual_seed(0)
    model = build_modnet("mobilenetv2", hr, log=None).to(device).train()
    x = (torch.rand(batch, 3, size, size) * 2 - 1).to(device)
    alpha = torch.rand(batch, 1, size, size).to(device)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        _, _, matte = model(x, False)
        torch.nn.functional.mse_loss(matte, alpha).backward()

    return _Case("floor (bare fp32 fwd+bwd)", batch, step)


def _trainer_case(
    name: str, options: dict[str, Any], batch: int, args: argparse.Namespace, data: Path
) -> _Case:
    from modnet.train import Trainer, resolve_config

    cfg = resolve_config(
        dict(data=str(data), out=str(data.parent / f"run-{name}"), hr_channels=args.hr,
             image_size=args.size, batch_size=batch, device=args.device, workers=0,
             threads=args.threads or None, warmup=0, steps=10**6, **options)
    )  # fmt: skip
    trainer = Trainer(cfg)
    prepared = trainer._to_device(_raw_batch(batch, args.size))

    def step() -> float:
        return trainer.train_step(prepared)["total"]

    opts = trainer.speed_options()
    note = (
        f"{opts['precision']}{' NHWC' if opts['channels_last'] else ''}"
        f"{' fused' if opts['fused_optimizer'] else ''}{' compiled' if opts['compile'] else ''}"
    )
    case = _Case(name, batch, step, note)
    case.trainer = trainer  # type: ignore[attr-defined]
    return case


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--floor-batch", type=int, default=8)
    ap.add_argument("--hr", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per case per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps (compile happens here)")
    ap.add_argument("--configs", default="", help="comma list (default: all that apply)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: as train)")
    ap.add_argument("--json", default="", help="also write the figures to this file")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in args.configs.split(",") if n] or [
        n for n in CONFIGS if (device.type == "cuda" or n not in CUDA_ONLY | CPU_OPT_IN)
    ]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown configuration(s) {unknown}; known: {', '.join(CONFIGS)}")

    tmp = Path(tempfile.mkdtemp(prefix="train_configs_"))
    _tiny_dataset(tmp / "data")
    cases = [_floor(device, args.hr, args.floor_batch, args.size)]
    for name in names:
        opts, mult = CONFIGS[name]
        t = time.perf_counter()
        case = _trainer_case(name, opts, args.floor_batch * mult, args, tmp / "data")
        for _ in range(args.warmup):
            case.losses.append(case.step())
        _sync(device)
        case.note += f" (set-up + warm-up {time.perf_counter() - t:.1f} s)"
        cases.append(case)
    for _ in range(max(1, args.warmup)):
        cases[0].step()
    for _ in range(args.rounds):  # interleaved: every case sees the same machine state
        for case in cases:
            for _ in range(args.steps):
                _sync(device)
                t = time.perf_counter()
                case.step()
                _sync(device)
                case.times.append(time.perf_counter() - t)

    from rich.console import Console
    from rich.table import Table

    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{os.cpu_count()}"
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    table = Table(
        title=f"matdata train step vs bare fp32 fwd+bwd, MODNet mobilenetv2 hr={args.hr}, "
        f"{args.size}x{args.size}, {dev}, median of {args.rounds}x{args.steps} "
        f"(load average {load})"
    )
    cols = ("case", "batch", "s/step", "samples/s", "vs floor", "vs today", "loss vs fp32")
    for col in (*cols, "as run"):
        table.add_column(col, justify="left" if col in ("case", "as run") else "right")
    rate = {c.name: c.batch / statistics.median(c.times) for c in cases}
    floor = rate[cases[0].name]
    today = rate.get("today")
    ref = next((c for c in cases if c.name == "fp32"), None)

    def loss_diff(c: _Case) -> str:
        """Largest relative difference of the warm-up losses from fp32's (same batch
        size only): rounding of precision / layout / kernels, not speed."""
        if ref is None or c.batch != ref.batch or not c.losses or c is ref:
            return "-"
        d = max(abs(a - b) / abs(b) for a, b in zip(c.losses, ref.losses, strict=False))
        return f"{d:.1e}"

    rows = []
    for c in cases:
        r = rate[c.name]
        rows.append(
            {"case": c.name, "batch": c.batch, "step_s": statistics.median(c.times),
             "samples_per_s": r, "vs_floor": r / floor,
             "vs_today": r / today if today else None, "as_run": c.note,
             "losses": c.losses}
        )  # fmt: skip
        table.add_row(
            c.name, str(c.batch), f"{statistics.median(c.times):.4f}", f"{r:.1f}",
            f"{r / floor:.2f}x", f"{r / today:.2f}x" if today else "-", loss_diff(c), c.note,
        )  # fmt: skip
    Console(width=200).print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": dev, "load": load, "rows": rows}))


if __name__ == "__main__":
    main()
