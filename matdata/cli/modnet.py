"""``matdata train``, ``predict``, ``evaluate`` and ``adapt``."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from matdata.cli.app import (
    DeviceOpt,
    ProgressOpt,
    app,
    command_progress,
    console,
    out,
)

# ==== train / evaluate / predict (issue 5) ============================================


@app.command("train")
def train_cmd(
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            metavar="DIR",
            help="A built dataset (matdata build --out DIR); repeat to mix several.",
        ),
    ] = None,
    data_weights: Annotated[
        str | None,
        typer.Option(
            "--data-weights",
            help="Mixing weights NAME=W,... (NAME = a --data folder name).  "
            "\\[default: proportional to train sizes]",
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help="matting (MODNet) | segmentation (pretrain the backbone on coarse masks).  "
            "\\[default: matting]",
        ),
    ] = None,
    backbone_weights: Annotated[
        str | None,
        typer.Option(
            "--backbone-weights",
            help="Checkpoint holding a pretrained backbone (torchvision, smp, UNet/DeepLab, "
            "mobilenetv2_human_seg, MODNet, or a --task segmentation run).",
        ),
    ] = None,
    out_dir: Annotated[str | None, typer.Option("--out", help="Run directory.")] = None,
    backbone: Annotated[
        str | None,
        typer.Option("--backbone", help="mobilenetv2 | resnet18 | pvt  \\[default: mobilenetv2]"),
    ] = None,
    hr_channels: Annotated[
        int | None, typer.Option("--hr-channels", min=1, max=512, help="\\[default: 32]")
    ] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", min=1, help="Optimizer steps.  \\[default: 1000]")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", min=1, max=4096, help="Batch size per process.  \\[default: 8]"
        ),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            "--image-size",
            min=32,
            max=4096,
            help="Training crop side (multiple of 32).  \\[default: 512]",
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="auto | cpu | cuda  \\[default: auto]")
    ] = None,
    optimizer: Annotated[
        str | None, typer.Option("--optimizer", help="adamw | sgd  \\[default: adamw]")
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr",
            min=0.0,
            max=10.0,
            help="Base learning rate, > 0.  \\[default: 1e-3 adamw, 1e-2 sgd]",
        ),
    ] = None,
    schedule: Annotated[
        str | None, typer.Option("--schedule", help="cosine | step | constant  \\[default: cosine]")
    ] = None,
    warmup: Annotated[
        int | None,
        typer.Option("--warmup", min=0, help="Warm-up steps.  \\[default: min(500, steps/20)]"),
    ] = None,
    clip_grad: Annotated[
        float | None,
        typer.Option("--clip-grad", min=0.0, help="Max grad norm, 0 = off.  \\[default: 1.0]"),
    ] = None,
    loss_weights: Annotated[
        str | None,
        typer.Option(
            "--loss-weights",
            help="Semantic,detail,matte loss weights.  \\[default: 10,10,1]",
        ),
    ] = None,
    amp: Annotated[
        bool | None, typer.Option("--amp/--no-amp", help="Mixed precision (CUDA).")
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision",
            help="Autocast dtype: fp32 | fp16 (GradScaler, CUDA) | bf16 (CPU too).  --amp = "
            "fp16 on CUDA; giving both, they must agree.  \\[default: as --amp]",
        ),
    ] = None,
    channels_last: Annotated[
        bool | None,
        typer.Option(
            "--channels-last/--no-channels-last", help="Model and images in NHWC memory order."
        ),
    ] = None,
    compile_model: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile",
            help="torch.compile the model (slow first step; falls back to eager with a warning).",
        ),
    ] = None,
    fused: Annotated[
        bool | None,
        typer.Option(
            "--fused/--no-fused",
            help="Fused optimizer kernels.  \\[default: on CUDA, off on the CPU]",
        ),
    ] = None,
    val_every: Annotated[
        int | None,
        typer.Option("--val-every", min=0, help="Steps between validations.  \\[default: 500]"),
    ] = None,
    val_batches: Annotated[
        int | None, typer.Option("--val-batches", min=0, help="Batches per validation, 0 = all.")
    ] = None,
    val_limit: Annotated[
        int | None,
        typer.Option(
            "--val-limit",
            min=0,
            help="Samples per validation pass (the first one too), 0 = the whole val split.  "
            "\\[default: 128]",
        ),
    ] = None,
    ckpt_every: Annotated[
        int | None,
        typer.Option("--ckpt-every", min=0, help="Steps between checkpoints.  \\[default: 1000]"),
    ] = None,
    log_every: Annotated[
        int | None,
        typer.Option("--log-every", min=1, help="Steps between log lines.  \\[default: 10]"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=0,
            max=64,
            help="DataLoader workers per process.  \\[default: min(2, cores - 1)]",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            max=1024,
            help="torch threads of this process (OpenCV and loader workers use 1 each).  "
            "\\[default: $OMP_NUM_THREADS, else cores - loader workers]",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", min=0, help="Seed of weights and data order.  \\[default: 0]"),
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="parquet | webdataset (default: preferred)")
    ] = None,
    shuffle_buffer: Annotated[
        int | None, typer.Option("--shuffle-buffer", min=0, max=1_000_000, help="\\[default: 256]")
    ] = None,
    recompose: Annotated[
        float | None,
        typer.Option(
            "--recompose",
            min=0.0,
            max=1.0,
            help="Probability of a new background (needs fg/bg layers).",
        ),
    ] = None,
    init: Annotated[
        str | None, typer.Option("--init", help="Start from released or own MODNet weights.")
    ] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Checkpoint (or run dir) to continue exactly.")
    ] = None,
    record_keys: Annotated[bool | None, typer.Option("--record-keys", hidden=True)] = None,
    verify: Annotated[
        bool | None,
        typer.Option(
            "--verify/--no-verify",
            help="Refuse a shard whose bytes differ from its sha256 (hashed as read).  "
            "\\[default: verify]",
        ),
    ] = None,
    max_bad_records: Annotated[
        int | None,
        typer.Option(
            "--max-bad-records",
            help="Undecodable records skipped (listed in RUN/bad_records.jsonl) before "
            "training stops.  \\[default: 10]",
        ),
    ] = None,
) -> None:
    """Train MODNet on built datasets (CPU, one GPU, or several with torchrun).

    With --task segmentation, pretrain the backbone on coarse masks instead; the run's
    checkpoint then serves --backbone-weights.
    """
    from modnet.losses import parse_loss_weights
    from modnet.mixing import parse_weights
    from modnet.train import resolve_config, train

    data_arg: str | list[str] | None = None
    if data:
        data_arg = data[0] if len(data) == 1 else list(data)
    overrides = dict(
        data=data_arg, data_weights=parse_weights(data_weights), task=task,
        backbone_weights=backbone_weights, out=out_dir, backbone=backbone,
        hr_channels=hr_channels, steps=steps,
        batch_size=batch_size, image_size=image_size, device=device, optimizer=optimizer, lr=lr,
        schedule=schedule, warmup=warmup, clip_grad=clip_grad, amp=amp, val_every=val_every,
        val_batches=val_batches, ckpt_every=ckpt_every, log_every=log_every, workers=workers,
        seed=seed, fmt=fmt, shuffle_buffer=shuffle_buffer, recompose=recompose, init=init,
        record_keys=record_keys, verify=verify, max_bad_records=max_bad_records,
        val_limit=val_limit, threads=threads, precision=precision, channels_last=channels_last,
        compile=compile_model, fused=fused,
        loss_weights=parse_loss_weights(loss_weights) if loss_weights is not None else None,
    )  # fmt: skip
    if resume and not out_dir:
        overrides["out"] = None  # keep the checkpoint's run directory
    notes: list[str] = []
    cfg = resolve_config(overrides, resume, notes)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if main_rank:
        for note in notes:
            console.print(f"[yellow]resume changes[/] {note}", highlight=False, soft_wrap=True)
    summary = train(cfg, resume)
    if main_rank:
        from rich.table import Table

        table = Table(title=f"train {cfg.out}", show_header=True)
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_row("steps", f"{summary['start_step']} -> {summary['step']}")
        for d in summary.get("datasets") or []:
            sizes = " ".join(f"{k} {v}" for k, v in sorted(d["splits"].items()))
            table.add_row(f"data {d['name']}", f"weight {d['weight']:.3g}, {sizes}")
        for k, v in (summary.get("train") or {}).items():
            table.add_row(f"train {k}", f"{v:.5g}")
        for k, v in (summary.get("val") or {}).items():
            if v == v:  # NaN: undefined (e.g. matting metrics of a coarse-only val split)
                table.add_row(f"val {k}", f"{v:.5g}")
        out.print(table)


def _apply_threads(n: int | None) -> None:
    """torch/OpenCV thread pools of a one-process torch command (:mod:`matdata.threads`)."""
    from matdata import threads

    threads.apply(threads.plan(n, loader_workers=0))


CheckpointOpt = Annotated[
    str,
    typer.Option(
        "--checkpoint", "-c", help="MODNet weights: a released .ckpt or a `matdata train` one."
    ),
]
RefSizeOpt = Annotated[
    int,
    typer.Option(
        "--ref-size", min=32, max=8192, help="MODNet's reference size (short side, then /32)."
    ),
]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, max=1024)]
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", min=1, max=1024, help="torch threads (default: the usable cores)."),
]


@app.command("predict")
def predict_cmd(
    images: Annotated[list[str], typer.Argument(help="Image files or folders (recursive).")],
    checkpoint: CheckpointOpt,
    out_dir: Annotated[str, typer.Option("--out", "-o", help="Folder for the alpha PNGs.")],
    cutout: Annotated[
        bool, typer.Option("--cutout", help="Also write RGBA cut-outs (NAME.cutout.png).")
    ] = False,
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 4,
    ref_size: RefSizeOpt = 512,
    n_threads: ThreadsOpt = None,
    truncate: Annotated[
        bool,
        typer.Option(
            "--truncate",
            help="Write floor(255 a) like the official MODNet demo, instead of rounding.",
        ),
    ] = False,
    progress_bar: ProgressOpt = True,
) -> None:
    """Predict alpha mattes (PNG, the input's resolution) with a MODNet checkpoint.

    The float matte is written as round(255 a) (``--truncate``: floor, as the official
    demo does: up to 1 lower)."""
    from rich.table import Table

    from modnet.predict import predict_images

    _apply_threads(n_threads)
    with command_progress("predict", progress_bar, unit="images") as bar:
        res = predict_images(
            images, checkpoint, out_dir, cutout=cutout, device=device, batch_size=batch_size,
            ref_size=ref_size, truncate=truncate, on_progress=bar.update,
            on_skip=lambda exc: console.print(f"[yellow]skipped[/] {exc.one_line()}",
                                              highlight=False),
        )  # fmt: skip
    table = Table(title=f"predict -> {out_dir}")
    table.add_column("item")
    table.add_column("value", justify="right")
    table.add_row("model", f"{res.backbone} hr={res.hr_channels}")
    table.add_row("device", res.device)
    table.add_row("alpha mattes", str(res.written))
    for reason, n in res.skipped.items():
        table.add_row(f"skipped ({reason})", str(n))
    out.print(table)
    if not res.written:
        raise typer.Exit(1)


@app.command("adapt")
def adapt_cmd(
    images: Annotated[list[str], typer.Argument(help="Unlabelled images or folders (recursive).")],
    checkpoint: CheckpointOpt,
    out_dir: Annotated[str, typer.Option("--out", "-o", help="Run directory (soc.pt).")],
    steps: Annotated[
        int, typer.Option("--steps", min=1, max=10_000_000, help="Optimizer steps.")
    ] = 500,
    batch_size: BatchOpt = 1,
    image_size: Annotated[
        int,
        typer.Option("--image-size", min=32, max=4096, help="Square side (multiple of 32)."),
    ] = 512,
    lr: Annotated[
        float, typer.Option("--lr", min=0.0, max=10.0, help="Adam learning rate, > 0.")
    ] = 1e-5,
    device: DeviceOpt = "auto",
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    n_threads: ThreadsOpt = None,
    progress_bar: ProgressOpt = True,
) -> None:
    """SOC: adapt a trained MODNet to unlabelled images of a new domain (MODNet Sec. 4)."""
    from rich.table import Table

    from modnet.soc import SOCConfig, adapt

    _apply_threads(n_threads)
    cfg = SOCConfig(
        checkpoint=checkpoint, images=tuple(images), out=out_dir, steps=steps,
        batch_size=batch_size, image_size=image_size, lr=lr, device=device, seed=seed,
    )  # fmt: skip
    with command_progress("adapt", progress_bar, unit="steps", total=steps) as bar:
        summary = adapt(cfg, lambda step, _row: bar.update(step))
    table = Table(title=f"SOC adaptation {out_dir}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("images / rejected", f"{summary['images']} / {summary['rejected']}")
    table.add_row("steps", str(summary["steps"]))
    for k in ("soc_semantic", "soc_detail", "total"):
        table.add_row(
            f"{k} first -> last", f"{summary['first'][k]:.4g} -> {summary['last'][k]:.4g}"
        )
    table.add_row("checkpoint", summary["checkpoint"])
    out.print(table)
