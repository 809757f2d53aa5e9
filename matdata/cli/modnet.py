"""``matdata train``, ``predict``, ``evaluate`` and ``adapt``."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from matdata.cli.app import (
    DeviceOpt,
    _fail,
    app,
    console,
    out,
)

# ==== train / evaluate / predict (issue 5) ============================================


@app.command("train")
def train_cmd(
    data: Annotated[
        str | None, typer.Option("--data", help="A built dataset (matdata build --out DIR).")
    ] = None,
    out_dir: Annotated[str | None, typer.Option("--out", help="Run directory.")] = None,
    backbone: Annotated[
        str | None,
        typer.Option("--backbone", help="mobilenetv2 | resnet18 | pvt  \\[default: mobilenetv2]"),
    ] = None,
    hr_channels: Annotated[
        int | None, typer.Option("--hr-channels", help="\\[default: 32]")
    ] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", help="Optimizer steps.  \\[default: 1000]")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Batch size per process.  \\[default: 8]")
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option("--image-size", help="Training crop side (multiple of 32).  \\[default: 512]"),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="auto | cpu | cuda  \\[default: auto]")
    ] = None,
    optimizer: Annotated[
        str | None, typer.Option("--optimizer", help="adamw | sgd  \\[default: adamw]")
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option("--lr", help="Base learning rate.  \\[default: 1e-3 adamw, 1e-2 sgd]"),
    ] = None,
    schedule: Annotated[
        str | None, typer.Option("--schedule", help="cosine | step | constant  \\[default: cosine]")
    ] = None,
    warmup: Annotated[
        int | None, typer.Option("--warmup", help="Warm-up steps.  \\[default: min(500, steps/20)]")
    ] = None,
    clip_grad: Annotated[
        float | None, typer.Option("--clip-grad", help="Max grad norm, 0 = off.  \\[default: 1.0]")
    ] = None,
    amp: Annotated[
        bool | None, typer.Option("--amp/--no-amp", help="Mixed precision (CUDA).")
    ] = None,
    val_every: Annotated[
        int | None, typer.Option("--val-every", help="Steps between validations.  \\[default: 500]")
    ] = None,
    val_batches: Annotated[int | None, typer.Option("--val-batches", help="0 = all.")] = None,
    ckpt_every: Annotated[
        int | None,
        typer.Option("--ckpt-every", help="Steps between checkpoints.  \\[default: 1000]"),
    ] = None,
    log_every: Annotated[
        int | None, typer.Option("--log-every", help="Steps between log lines.  \\[default: 10]")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", help="DataLoader workers per process.  \\[default: 2]"),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of weights and data order.  \\[default: 0]")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="parquet | webdataset (default: preferred)")
    ] = None,
    shuffle_buffer: Annotated[
        int | None, typer.Option("--shuffle-buffer", help="\\[default: 256]")
    ] = None,
    recompose: Annotated[
        float | None,
        typer.Option("--recompose", help="Probability of a new background (needs fg/bg layers)."),
    ] = None,
    init: Annotated[
        str | None, typer.Option("--init", help="Start from released or own MODNet weights.")
    ] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Checkpoint (or run dir) to continue exactly.")
    ] = None,
    record_keys: Annotated[bool | None, typer.Option("--record-keys", hidden=True)] = None,
) -> None:
    """Train MODNet on a built dataset (CPU, one GPU, or several with torchrun)."""
    from modnet.train import resolve_config, train

    overrides = dict(
        data=data, out=out_dir, backbone=backbone, hr_channels=hr_channels, steps=steps,
        batch_size=batch_size, image_size=image_size, device=device, optimizer=optimizer, lr=lr,
        schedule=schedule, warmup=warmup, clip_grad=clip_grad, amp=amp, val_every=val_every,
        val_batches=val_batches, ckpt_every=ckpt_every, log_every=log_every, workers=workers,
        seed=seed, fmt=fmt, shuffle_buffer=shuffle_buffer, recompose=recompose, init=init,
        record_keys=record_keys,
    )  # fmt: skip
    if resume and not out_dir:
        overrides["out"] = None  # keep the checkpoint's run directory
    cfg = resolve_config(overrides, resume)
    summary = train(cfg, resume)
    if int(os.environ.get("RANK", "0")) == 0:
        from rich.table import Table

        table = Table(title=f"train {cfg.out}", show_header=True)
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_row("steps", f"{summary['start_step']} -> {summary['step']}")
        for k, v in (summary.get("train") or {}).items():
            table.add_row(f"train {k}", f"{v:.5g}")
        for k, v in (summary.get("val") or {}).items():
            table.add_row(f"val {k}", f"{v:.5g}")
        out.print(table)


def _modnet_progress(label: str, enabled: bool = True):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not enabled,
    )


def _nan_to_none(obj):
    """JSON has no NaN: undefined metrics (an empty region) are written as null."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj


CheckpointOpt = Annotated[
    str,
    typer.Option(
        "--checkpoint", "-c", help="MODNet weights: a released .ckpt or a `matdata train` one."
    ),
]
RefSizeOpt = Annotated[
    int, typer.Option("--ref-size", help="MODNet's reference size (short side, then /32).")
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
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 4,
    ref_size: RefSizeOpt = 512,
    truncate: Annotated[
        bool,
        typer.Option(
            "--truncate",
            help="Write floor(255 a) like the official MODNet demo, instead of rounding.",
        ),
    ] = False,
    progress_bar: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Predict alpha mattes (PNG, the input's resolution) with a MODNet checkpoint.

    The float matte is written as round(255 a) (``--truncate``: floor, as the official
    demo does: up to 1 lower)."""
    from collections import Counter
    from pathlib import Path as _Path

    from rich.table import Table

    from matdata.errors import ImageDecodeError
    from matdata.imageio import encode_png, load_image
    from matdata.storage import atomic_write_bytes, join, makedirs
    from modnet.inference import (
        alpha_to_uint8,
        encode_rgba_png,
        iter_predictions,
        list_images,
        load_checkpoint_model,
    )
    from modnet.inference import (
        cutout as make_cutout,
    )

    files = list_images(images)
    if not files:
        _fail("no image files found in " + ", ".join(images))
    stems = Counter(_Path(f).stem for f in files)
    dupes = sorted(s for s, n in stems.items() if n > 1)
    if dupes:
        _fail(f"several inputs are named {dupes[0]!r} (outputs would collide); predict them apart")
    loaded = load_checkpoint_model(checkpoint, device)
    makedirs(out_dir)
    skipped: Counter[str] = Counter()

    def _inputs():
        for f in files:
            try:
                yield f, load_image(f)
            except ImageDecodeError as exc:
                skipped[exc.reason] += 1
                console.print(f"[yellow]skipped[/] {exc.one_line()}", highlight=False)

    written = 0
    with _modnet_progress("predict", progress_bar) as bar:
        task = bar.add_task("predict", total=len(files))
        for f, rgb, alpha in iter_predictions(
            loaded.model, _inputs(), batch_size=batch_size, ref_size=ref_size
        ):
            stem = _Path(f).stem
            a8 = alpha_to_uint8(alpha, truncate)
            atomic_write_bytes(join(out_dir, f"{stem}.png"), encode_png(a8))
            if cutout:
                rgba = make_cutout(rgb, a8)
                atomic_write_bytes(join(out_dir, f"{stem}.cutout.png"), encode_rgba_png(rgba))
            written += 1
            bar.update(task, completed=written + sum(skipped.values()))
    table = Table(title=f"predict -> {out_dir}")
    table.add_column("item")
    table.add_column("value", justify="right")
    table.add_row("model", f"{loaded.config['backbone']} hr={loaded.config['hr_channels']}")
    table.add_row("device", str(next(loaded.model.parameters()).device))
    table.add_row("alpha mattes", str(written))
    for reason, n in sorted(skipped.items()):
        table.add_row(f"skipped ({reason})", str(n))
    out.print(table)
    if not written:
        raise typer.Exit(1)


@app.command("adapt")
def adapt_cmd(
    images: Annotated[list[str], typer.Argument(help="Unlabelled images or folders (recursive).")],
    checkpoint: CheckpointOpt,
    out_dir: Annotated[str, typer.Option("--out", "-o", help="Run directory (soc.pt).")],
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimizer steps.")] = 500,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 1,
    image_size: Annotated[
        int, typer.Option("--image-size", help="Square side (multiple of 32).")
    ] = 512,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 1e-5,
    device: DeviceOpt = "auto",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    progress_bar: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """SOC: adapt a trained MODNet to unlabelled images of a new domain (MODNet Sec. 4)."""
    from rich.table import Table

    from modnet.soc import SOCConfig, adapt

    cfg = SOCConfig(
        checkpoint=checkpoint, images=tuple(images), out=out_dir, steps=steps,
        batch_size=batch_size, image_size=image_size, lr=lr, device=device, seed=seed,
    )  # fmt: skip
    with _modnet_progress("adapt", progress_bar) as bar:
        task = bar.add_task("adapt", total=steps)
        summary = adapt(cfg, lambda step, row: bar.update(task, completed=step))
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
