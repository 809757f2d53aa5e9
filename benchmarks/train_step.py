"""Training step time of modnet.train against a bare forward+backward floor, same run.

The floor is ``model(x, False)`` + a plain MSE on the matte + ``backward()``: the least any
MODNet training step can cost.  The full step is :meth:`modnet.train.Trainer.train_step`
(MODNet's three losses, ignore masking, gradient clipping, AdamW, LR scheduler, AMP on
CUDA).  The ratio full / floor is the trainer's overhead.  Runs on CPU and, when one is
available, on CUDA.

    python benchmarks/train_step.py [--size 512 --batch 4 --hr 32 --steps 5 --device all]

``--thread-plan`` instead compares the CPU thread settings of ``matdata train`` as a user
runs it (a subprocess on a small demo dataset, ``OMP_NUM_THREADS`` unset): the default
plan (:mod:`matdata.threads`) against every ``--threads 1..cores``, first under an
emulated shared machine (``--busy`` busy-loop processes, default one per usable core,
started by the benchmark and stopped after), then without them.  Each setting's figure is
the median ``step_time`` of ``metrics.jsonl`` (steps after the first, loader start-up
excluded), rounds interleaved; the verdict is default / best (target: within 1.1x).

    python benchmarks/train_step.py --thread-plan [--size 64 --batch 4 --hr 8 --steps 4
        --rounds 3 --busy N --run-timeout 150]

A run slower than ``--run-timeout`` is stopped and shown as ``>=`` that figure.
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


# ------------------------------------------------------------ thread plan vs best setting


def _busy_loops(n: int) -> list:
    """``n`` processes spinning in pure Python (an emulated shared machine)."""
    import subprocess
    import sys

    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(0, n))]


def _stop(procs: list) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def _cli_env() -> dict[str, str]:
    """The user's environment without thread pins, this tree first on the path."""
    import os

    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.pop(k, None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["COLUMNS"] = "200"
    return env


def _demo_data(root: str, size: int) -> str:
    import subprocess
    import sys

    out = f"{root}/demo"
    cmd = [sys.executable, "-m", "matdata", "build", "--fg", "demo", "--bg", "demo",
           "--out", out, "--size", str(size), "--per-fg", "2", "--workers", "1",
           "--samples-per-shard", "16", "--no-progress"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, env=_cli_env())
    return out


def _train_steps(
    data: str, run: str, threads: int | None, args: argparse.Namespace
) -> tuple[list[float], bool]:
    """``step_time`` of the steps of one ``matdata train`` run (seconds) and whether it
    finished within ``args.run_timeout`` (else it is stopped, with its process group, and
    the steps logged so far are returned)."""
    import json
    import os
    import signal
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "matdata", "train", "--data", data, "--out", run,
           "--steps", str(args.steps), "--image-size", str(args.size),
           "--batch-size", str(args.batch), "--hr-channels", str(args.hr),
           "--val-every", "0", "--val-limit", "4", "--log-every", "1", "--ckpt-every", "0",
           "--device", "cpu"]  # fmt: skip
    if threads is not None:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_cli_env(),
        start_new_session=True,  # its loader workers too, to stop them all on a timeout
    )  # fmt: skip
    finished = True
    try:
        _, err = proc.communicate(timeout=args.run_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        finished = False
    if finished and proc.returncode != 0:
        raise SystemExit(f"matdata train failed: {err.strip()[-500:]}")
    try:
        with open(f"{run}/metrics.jsonl") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        rows = []
    return [r["step_time"] for r in rows if r.get("kind") == "train"], finished


def thread_plan_bench(args: argparse.Namespace) -> None:
    """Default thread plan vs the best ``--threads`` of ``matdata train``, same load."""
    import os
    import tempfile

    from rich.console import Console
    from rich.table import Table

    from matdata import threads

    cores = threads.usable_cores()
    busy = cores if args.busy is None else args.busy
    default_plan = threads.plan()
    settings: list[int | None] = [None, *range(1, cores + 1)]
    loads = [busy, 0] if busy else [0]
    console = Console()
    with tempfile.TemporaryDirectory(prefix="matdata-threads-") as tmp:
        data = _demo_data(tmp, max(args.size, 64))
        for extra in loads:
            procs = _busy_loops(extra)
            try:
                times: dict[int | None, list[float]] = {s: [] for s in settings}
                cut: set[int | None] = set()  # settings whose run hit --run-timeout
                load = []
                for r in range(args.rounds):
                    for s in settings:
                        run = f"{tmp}/run-{extra}-{r}-{s}"
                        steps, done = _train_steps(data, run, s, args)
                        times[s] += steps[1:]  # the first step includes the loader start-up
                        if not done:
                            cut.add(s)
                            times[s].append(args.run_timeout)  # at least that slow
                        load.append(os.getloadavg()[0])
            finally:
                _stop(procs)
            med = {s: statistics.median(v) for s, v in times.items()}
            best = min((s for s in settings if s is not None), key=lambda s: med[s])
            table = Table(
                title=f"matdata train on CPU, {args.size}px batch {args.batch} hr {args.hr}: "
                f"{extra} busy-loop process(es) added, load average "
                f"{min(load):.1f}-{max(load):.1f} on {cores} core(s) "
                f"(median step of {args.rounds} round(s) x {args.steps - 1} steps)"
            )
            for col in ("setting", "torch threads", "loader workers", "s per step", "vs best"):
                table.add_column(col, justify="left" if col == "setting" else "right")
            for s in settings:
                p = threads.plan(s)
                name = "default (no --threads)" if s is None else f"--threads {s}"
                more = ">= " if s in cut else ""
                table.add_row(
                    name, str(p.torch), str(p.loader_workers), f"{more}{med[s]:.3f}",
                    f"{more}{med[s] / med[best]:.2f}x",
                )  # fmt: skip
            console.print(table)
            ratio = med[None] / med[best]
            same = threads.plan(best) == default_plan
            verdict = "OK" if ratio <= 1.1 else "MISSED"
            if same and ratio > 1.1:
                verdict = "OK: the same plan, so the difference is run-to-run noise"
            console.print(
                f"default ({default_plan.describe()}) vs best (--threads {best}"
                f"{', the same plan' if same else ''}): {ratio:.2f}x (target <= 1.1x: {verdict})"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=0, help="default 512 (--thread-plan: 128)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--hr", type=int, default=0, help="default 32 (--thread-plan: 16)")
    ap.add_argument("--steps", type=int, default=0, help="default 5 (--thread-plan: 6)")
    ap.add_argument("--device", default="all", help="cpu | cuda | all")
    ap.add_argument("--no-amp", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument(
        "--thread-plan", action="store_true", help="default vs best --threads of matdata train"
    )
    ap.add_argument("--rounds", type=int, default=3, help="--thread-plan: rounds")
    ap.add_argument("--busy", type=int, default=None, help="--thread-plan: busy loops (cores)")
    ap.add_argument(
        "--run-timeout", type=float, default=150.0, help="--thread-plan: seconds per train run"
    )
    args = ap.parse_args()
    small = args.thread_plan  # subprocess runs of a small model
    args.size = args.size or (64 if small else 512)
    args.hr = args.hr or (8 if small else 32)
    args.steps = args.steps or (4 if small else 5)
    if args.thread_plan:
        return thread_plan_bench(args)
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
