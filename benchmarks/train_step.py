"""Training step time of modnet.train against a bare forward+backward floor, same run.

The floor is ``model(x, False)`` + a plain MSE on the matte + ``backward()``: the least any
MODNet training step can cost.  The full step is :meth:`modnet.train.Trainer.train_step`
(MODNet's three losses, ignore masking, gradient clipping, AdamW, LR scheduler, AMP on
CUDA).  The ratio full / floor is the trainer's overhead.  Runs on CPU and, when one is
available, on CUDA.

    python benchmarks/train_step.py [--size 512 --batch 4 --hr 32 --steps 5 --device all]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _batch(b: int, s: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    alpha = torch.rand(b, 1, s, s, generator=g)
    trimap = torch.where(alpha < 0.2, 0.0, torch.where(alpha > 0.8, 1.0, 0.5))
    batch = {
        "image": torch.rand(b, 3, s, s, generator=g) * 2 - 1,
        "alpha": alpha,
        "trimap": trimap,
        "ignore": torch.zeros_like(alpha),
        "coarse": torch.zeros(b, dtype=torch.bool),
    }
    return {k: v.to(device) for k, v in batch.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, steps: int, device: torch.device) -> list[float]:
    fn()  # warm-up (allocations, cudnn autotune)
    fn()
    out = []
    for _ in range(steps):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t)
    return out


def bench(device_name: str, size: int, batch: int, hr: int, steps: int, amp: bool) -> dict:
    from modnet.train import TrainConfig, Trainer

    device = torch.device(device_name)
    cfg = TrainConfig(
        data="unused", out="unused", hr_channels=hr, image_size=size, batch_size=batch,
        device=device_name, amp=amp, steps=1000,
    )  # fmt: skip
    trainer = Trainer.__new__(Trainer)  # the step only needs model/optimizer/scheduler/scaler
    _init_step_only(trainer, cfg, device)
    data = _batch(batch, size, device)

    def floor() -> None:
        trainer.model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=trainer.use_amp):
            _, _, matte = trainer.model(data["image"], False)
        torch.nn.functional.mse_loss(matte.float(), data["alpha"]).backward()

    def full() -> None:
        trainer.train_step(data)

    t_floor = _time(floor, steps, device)
    t_full = _time(full, steps, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "device": f"{device_name} ({name})",
        "floor": statistics.median(t_floor),
        "full": statistics.median(t_full),
    }


def _init_step_only(trainer, cfg, device: torch.device) -> None:
    from modnet import build_modnet
    from modnet.train import DistInfo, lr_factor

    torch.manual_seed(0)
    trainer.cfg = cfg
    trainer.dist = DistInfo()
    trainer.device = device
    trainer.use_amp = bool(cfg.amp and device.type == "cuda")
    trainer.model = trainer.net = build_modnet(cfg.backbone, cfg.hr_channels).to(device)
    trainer.opt = torch.optim.AdamW(trainer.model.parameters(), lr=1e-3)
    trainer.sched = torch.optim.lr_scheduler.LambdaLR(
        trainer.opt, lambda s: lr_factor(s, cfg.steps, 10, "cosine")
    )
    trainer.scaler = torch.amp.GradScaler(device.type, enabled=trainer.use_amp)
    trainer.step = 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--hr", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="all", help="cpu | cuda | all")
    ap.add_argument("--no-amp", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]

    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"MODNet mobilenetv2 hr={args.hr} train step, batch {args.batch} at "
        f"{args.size}x{args.size} (median of {args.steps})"
    )
    for col in ("device", "fwd+bwd floor s", "train_step s", "full / floor", "samples/s"):
        table.add_column(col, justify="right" if col != "device" else "left")
    for dev in devices:
        r = bench(dev, args.size, args.batch, args.hr, args.steps, not args.no_amp)
        table.add_row(
            r["device"],
            f"{r['floor']:.3f}",
            f"{r['full']:.3f}",
            f"{r['full'] / r['floor']:.2f}x",
            f"{args.batch / r['full']:.1f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
