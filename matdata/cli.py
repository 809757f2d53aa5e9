"""The ``matdata`` command line: the only module that wires core, pipelines, harmonization
and modnet together.

Commands are thin: parse options, call one library function, print a rich summary.  Heavy
modules (torch, dask, pyarrow...) are imported inside the commands so ``matdata --help``
stays instant.  Any :class:`~matdata.errors.MatdataError` becomes one red line and exit
code 1; set ``MATDATA_DEBUG=1`` for the full traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from matdata import __version__
from matdata.errors import ConfigError, MatdataError

app = typer.Typer(
    name="matdata",
    help="Build, harmonize, QA and train on trimap-free portrait-matting datasets.",
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)
out = Console()


def _version(value: bool) -> None:
    if value:
        out.print(f"matdata {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False,
) -> None:
    if verbose:
        import logging

        from rich.logging import RichHandler

        logger = logging.getLogger("matdata")
        logger.setLevel(logging.DEBUG)
        logger.addHandler(RichHandler(console=console, show_path=False))


# Shared option aliases ---------------------------------------------------------------
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", "-w", help="Local Dask workers (default: one per core)."),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        envvar="MATDATA_SCHEDULER",
        help="Address of an existing Dask cluster (tcp://HOST:PORT); default: a local one.",
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for every random choice.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N")]


def _fail(message: str) -> None:
    raise ConfigError(message)


# ==== ingest (issue 2) ================================================================


def _parse_source_options(pairs: list[str] | None) -> dict:
    """``["k=v", ...]`` -> dict; values parsed as JSON when they are JSON (numbers, lists)."""
    import json

    opts: dict = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            _fail(f"--option {pair!r} is not KEY=VALUE")
        try:
            opts[key.strip()] = json.loads(value)
        except ValueError:
            opts[key.strip()] = value
    return opts


@app.command("ingest")
def ingest_cmd(
    kind: Annotated[
        str, typer.Argument(help="aisegment | supervisely | places365 | folder | demo")
    ],
    root: Annotated[
        str, typer.Argument(help="Dataset root: a local path or an fsspec URL (not for demo).")
    ] = "",
    name: Annotated[
        str | None, typer.Option("--name", help="Catalog name to register (default: KIND).")
    ] = None,
    out_dir: Annotated[
        str | None,
        typer.Option("--out", help="Where to write the manifest (default: the catalog dir)."),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="Source option KEY=VALUE, repeatable (e.g. -o io=outdoor -o verify=probe).",
        ),
    ] = None,
    progress_bar: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = True,
) -> None:
    """Scan a source once: write a Parquet manifest + rejects and register it by NAME."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from matdata.ingest import ingest

    if not root and kind != "demo":
        _fail(f"ingest {kind} needs a ROOT path")
    opts = _parse_source_options(option)
    with Progress(
        SpinnerColumn(),
        TextColumn(f"[bold]ingest {kind}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not progress_bar,
    ) as bar:
        task = bar.add_task("scan", total=None)

        def _update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        res = ingest(kind, root, name=name, out=out_dir, options=opts, progress=_update)

    table = Table(
        title=f"ingest {res.name} ({res.kind})", caption=res.root or None, title_justify="left"
    )
    table.add_column("", style="bold")
    table.add_column("count", justify="right")
    table.add_row("found", str(res.found))
    table.add_row("usable", f"[green]{res.usable}[/]")
    table.add_row("rejected", f"[red]{res.rejected}[/]" if res.rejected else "0")
    for reason, n in res.by_reason.items():
        table.add_row(f"  {reason}", str(n))
    if res.filtered:
        table.add_row("filtered out (options)", str(res.filtered))
    for split, n in res.by_split.items():
        table.add_row(f"split {split}", str(n))
    for role, n in res.by_role.items():
        table.add_row(f"role {role}", str(n))
    out.print(table)
    out.print(f"manifest: {res.manifest}", soft_wrap=True, highlight=False)
    out.print(f"rejects:  {res.rejects_path}", soft_wrap=True, highlight=False)
    out.print(f"registered as [bold]{res.name}[/] (use --fg/--bg {res.name})", highlight=False)


# ==== build (issue 3) =================================================================


@app.command("build")
def build_cmd(
    fg: Annotated[
        str, typer.Option("--fg", help="Foregrounds: catalog NAME | demo | KIND:PATH | manifest.")
    ],
    bg: Annotated[
        str, typer.Option("--bg", help="Backgrounds: catalog NAME | demo | KIND:PATH | manifest.")
    ],
    out_dir: Annotated[str, typer.Option("--out", help="Output dataset dir (path or URL).")],
    per_fg: Annotated[int, typer.Option("--per-fg", help="Backgrounds per foreground (K).")] = 10,
    size: Annotated[
        str, typer.Option("--size", help="Output size: 512 (square) | WxH | native.")
    ] = "512",
    augment: Annotated[
        bool,
        typer.Option(
            "--augment/--no-augment", help="Random geometry/photometry (off: alpha is exact)."
        ),
    ] = True,
    trimap: Annotated[bool, typer.Option("--trimap", help="Store a trimap per sample.")] = False,
    trimap_rel_width: Annotated[
        float, typer.Option("--trimap-width", help="Trimap band radius / sqrt(H*W).")
    ] = 0.01,
    keep_layers: Annotated[
        bool, typer.Option("--keep-layers", help="Store fg colours and bg crop too.")
    ] = False,
    fmt: Annotated[str, typer.Option("--format", help="parquet | webdataset | both.")] = "parquet",
    shard_size: Annotated[
        str, typer.Option("--shard-size", help="Target shard size (e.g. 256MB, 1GB).")
    ] = "256MB",
    samples_per_shard: Annotated[
        int | None,
        typer.Option("--samples-per-shard", help="Exact samples per shard (overrides size)."),
    ] = None,
    seed: SeedOpt = 0,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    jpeg_quality: Annotated[
        int, typer.Option("--jpeg-quality", help="JPEG quality of stored images.")
    ] = 95,
    bg_crop: Annotated[str, typer.Option("--bg-crop", help="random | center.")] = "random",
    bg_blur: Annotated[
        float, typer.Option("--bg-blur", help="Probability of background blur.")
    ] = 0.0,
    noise: Annotated[float, typer.Option("--noise", help="Probability of Gaussian noise.")] = 0.0,
    jpeg_match: Annotated[
        float, typer.Option("--jpeg-match", help="Probability of matched fg/bg JPEG artefacts.")
    ] = 0.0,
    color_jitter: Annotated[
        float, typer.Option("--color-jitter", help="Probability of fg/bg colour jitter.")
    ] = 0.0,
    fg_estimator: Annotated[
        str,
        typer.Option(
            "--fg-estimator",
            help="blur_fusion | blur_fusion_v1 | blur_fusion_fine | blur_fusion_paper | ml | none.",
        ),
    ] = "blur_fusion",
    bg_category: Annotated[
        list[str] | None,
        typer.Option("--bg-category", help="Keep only these bg categories (repeatable)."),
    ] = None,
    bg_io: Annotated[
        str | None, typer.Option("--bg-io", help="Keep only indoor | outdoor scenes.")
    ] = None,
    exclude_tag: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude-tag",
            help="Drop foregrounds with this tag (repeatable; default not-marked-people; "
            "'none' keeps all).",
        ),
    ] = None,
    fg_option: Annotated[
        list[str] | None,
        typer.Option("--fg-option", help="Option KEY=VALUE for an on-the-fly fg source."),
    ] = None,
    bg_option: Annotated[
        list[str] | None,
        typer.Option("--bg-option", help="Option KEY=VALUE for an on-the-fly bg source."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a different build in --out.")
    ] = False,
    progress_bar: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = True,
) -> None:
    """Composite foregrounds onto backgrounds into sharded Parquet / WebDataset, on Dask.

    Re-running the same command resumes an interrupted build.
    """
    from rich.table import Table

    from matdata.builder import (
        DEFAULT_EXCLUDE_TAGS,
        BuildConfig,
        parse_bytes,
        parse_options,
        parse_size,
    )
    from pipelines.build import run_build

    if exclude_tag is None:
        tags = DEFAULT_EXCLUDE_TAGS
    else:
        tags = tuple(t for t in exclude_tag if t and t.lower() != "none")
    cfg = BuildConfig(
        fg=fg,
        bg=bg,
        out=out_dir,
        per_fg=per_fg,
        size=parse_size(size),
        augment=augment,
        trimap=trimap,
        trimap_rel_width=trimap_rel_width,
        keep_layers=keep_layers,
        formats=fmt,  # type: ignore[arg-type]  # normalised by BuildConfig
        shard_size=parse_bytes(shard_size),
        samples_per_shard=samples_per_shard,
        seed=seed,
        jpeg_quality=jpeg_quality,
        bg_crop=bg_crop,
        bg_blur=bg_blur,
        noise=noise,
        jpeg_match=jpeg_match,
        color_jitter=color_jitter,
        fg_estimator=fg_estimator,
        bg_categories=tuple(bg_category or ()),
        bg_io=bg_io,
        exclude_tags=tags,
        fg_options=parse_options(fg_option),
        bg_options=parse_options(bg_option),
    )
    s = run_build(
        cfg,
        workers=workers,
        scheduler=scheduler,
        overwrite=overwrite,
        console=console,
        progress=progress_bar,
    )
    inputs = Table(title="inputs", title_justify="left")
    for col in ("source", "found", "used", "rejected", "ingest", "filtered", "build"):
        inputs.add_column(col, justify="left" if col == "source" else "right")
    for name, a in s.accounting.items():
        inputs.add_row(
            name,
            str(a["found"]),
            f"[green]{a['used']}[/]",
            f"[red]{a['rejected']}[/]" if a["rejected"] else "0",
            str(a["ingest_rejected"]),
            str(a["filtered"]),
            str(a["build_failed"]),
        )
    out.print(inputs)
    table = Table(title=f"build {s.out}", title_justify="left")
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    for split, n in s.splits.items():
        table.add_row(f"samples {split}", str(n))
    table.add_row("samples", str(s.samples))
    table.add_row("shard files", str(s.shards))
    table.add_row("shards written / resumed", f"{s.written} / {s.skipped}")
    for reason, n in s.rejects_by_reason.items():
        table.add_row(f"rejected: {reason}", str(n))
    table.add_row("workers", str(s.workers))
    table.add_row("time (total / shard tasks)", f"{s.seconds:.1f} s / {s.shard_seconds:.1f} s")
    rate = s.samples_written / s.shard_seconds if s.shard_seconds > 0 else 0.0
    table.add_row("throughput (shard phase)", f"{rate:.1f} samples/s")
    if s.peak_rss_mb:
        table.add_row("peak worker memory", f"{s.peak_rss_mb:.0f} MiB")
    out.print(table)
    for w in s.warnings:
        out.print(f"[yellow]note:[/] {w}", highlight=False)


# ==== harmonize (issue 4) =============================================================

HarmModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="reinhard (no weights) | none | idih256 | issam256 | dih256 | rainnet | rainnet512.",
    ),
]
HarmCheckpointOpt = Annotated[
    str | None,
    typer.Option("--checkpoint", help="The network's released state_dict (e.g. idih256.pth)."),
]
HarmStrengthOpt = Annotated[
    float | None, typer.Option("--strength", help="reinhard only: 0 (off) .. 1 (full transfer).")
]
HarmNetSizeOpt = Annotated[
    str | None,
    typer.Option("--net-size", help="Networks only: input size N or HxW (default: the model's)."),
]


def _harmonizer_params(model: str, strength: float | None, net_size: str | None) -> dict:
    params: dict = {}
    if strength is not None:
        if model != "reinhard":
            _fail("--strength applies to --model reinhard only")
        params["strength"] = strength
    if net_size is not None:
        if model in ("reinhard", "none"):
            _fail("--net-size applies to networks only")
        try:
            parts = [int(p) for p in net_size.lower().split("x")]
        except ValueError:
            parts = []
        if len(parts) not in (1, 2):
            _fail(f"--net-size must be N or HxW, got {net_size!r}")
        params["size"] = parts[0] if len(parts) == 1 else tuple(parts)
    return params


@app.command("harmonize")
def harmonize_cmd(
    dataset: Annotated[str, typer.Argument(help="A built dataset directory (path or URL).")],
    model: HarmModelOpt,
    out_dir: Annotated[str, typer.Option("--out", help="Output dataset directory.")],
    checkpoint: HarmCheckpointOpt = None,
    device: DeviceOpt = "auto",
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Composites per network batch.")
    ] = 8,
    strength: HarmStrengthOpt = None,
    net_size: HarmNetSizeOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a different dataset in --out.")
    ] = False,
    progress_bar: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = True,
) -> None:
    """Harmonize every composite of a dataset into a new one (same keys; original kept as
    image_raw).  Re-running the same command resumes."""
    from rich.table import Table

    from pipelines.harmonize import run_harmonize

    s = run_harmonize(
        dataset,
        out_dir,
        model,
        checkpoint=checkpoint,
        device=device,
        batch_size=batch_size,
        params=_harmonizer_params(model, strength, net_size),
        workers=workers,
        scheduler=scheduler,
        overwrite=overwrite,
        console=console,
        progress=progress_bar,
    )
    table = Table(title=f"harmonize {s.out} ({s.model})", title_justify="left")
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    table.add_row("harmonized", f"[green]{s.counts.get('harmonized', 0)}[/]")
    table.add_row("passed through: empty mask", str(s.counts.get("empty", 0)))
    table.add_row("passed through: full mask", str(s.counts.get("full", 0)))
    rejected = s.counts.get("rejected", 0)
    table.add_row("rejected", f"[red]{rejected}[/]" if rejected else "0")
    table.add_row("shards written / resumed", f"{s.written} / {s.skipped}")
    table.add_row("checkpoint sha256", (s.checkpoint_sha256 or "-")[:16])
    table.add_row("workers", str(s.workers))
    table.add_row("time", f"{s.seconds:.1f} s")
    out.print(table)


@app.command("harmonize-eval")
def harmonize_eval_cmd(
    root: Annotated[str, typer.Argument(help="iHarmony4-layout root (HCOCO/, HFlickr/, ...).")],
    model: HarmModelOpt,
    checkpoint: HarmCheckpointOpt = None,
    device: DeviceOpt = "auto",
    split: Annotated[str, typer.Option("--split", help="Which list: SUBSET_{split}.txt.")] = "test",
    size: Annotated[
        int | None,
        typer.Option("--size", help="Resize to SIZE x SIZE first (256: the papers' protocol)."),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Evaluate the first N.")] = None,
    strength: HarmStrengthOpt = None,
    net_size: HarmNetSizeOpt = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Also write the results (per image) here.")
    ] = None,
) -> None:
    """MSE, foreground MSE and PSNR of a harmonizer against the real images, per subset."""
    import json
    import math

    from rich.progress import Progress
    from rich.table import Table

    from harmonization import load_harmonizer
    from harmonization.evaluate import evaluate
    from matdata.storage import atomic_write_text

    h = load_harmonizer(model, checkpoint, device, **_harmonizer_params(model, strength, net_size))
    with Progress(console=console, transient=True) as bar:
        res = evaluate(root, h, split=split, size=size, limit=limit, progress=bar)
    table = Table(title=f"harmonize-eval {root} ({model}, {split})", title_justify="left")
    for col in ("subset", "images", "MSE", "fMSE", "PSNR", "composite MSE"):
        table.add_column(col, justify="left" if col == "subset" else "right")
    rows = [*res["subsets"].items(), ("all", res["all"])]
    base = {**res["composite"]["subsets"], "all": res["composite"]["all"]}
    for name, m in rows:
        table.add_row(
            name, str(int(m["images"])), f"{m['mse']:.2f}", f"{m['fmse']:.2f}",
            f"{m['psnr']:.2f}", f"{base[name]['mse']:.2f}",
        )  # fmt: skip
    out.print(table)
    if json_out:

        def finite(v):  # strict JSON: an infinite PSNR (identical images) becomes null
            if isinstance(v, dict):
                return {k: finite(x) for k, x in v.items()}
            if isinstance(v, list):
                return [finite(x) for x in v]
            return None if isinstance(v, float) and not math.isfinite(v) else v

        text = json.dumps(finite(res), indent=1, sort_keys=True, allow_nan=False)
        atomic_write_text(json_out, text + "\n")


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
    progress_bar: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Predict alpha mattes (PNG, the input's resolution) with a MODNet checkpoint."""
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
            a8 = alpha_to_uint8(alpha)
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


@app.command("evaluate")
def evaluate_cmd(
    checkpoint: CheckpointOpt,
    data: Annotated[
        str | None, typer.Option("--data", help="A built dataset (matdata build --out DIR).")
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Split of --data.")] = "val",
    fmt: Annotated[
        str | None, typer.Option("--format", help="parquet | webdataset (default: preferred)")
    ] = None,
    images: Annotated[
        str | None, typer.Option("--images", help="Image file or folder (with --alphas).")
    ] = None,
    alphas: Annotated[
        str | None, typer.Option("--alphas", help="Ground-truth alphas, paired by file name.")
    ] = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write metrics + per-image errors ('-': stdout).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most N images (0 = all).")] = 0,
    device: DeviceOpt = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 4,
    ref_size: RefSizeOpt = 512,
    progress_bar: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """SAD / MSE / MAD / Gradient / Connectivity errors of a checkpoint (unknown region of
    a fixed trimap, and whole image)."""
    import itertools
    import json
    from collections import Counter

    from rich.table import Table

    from matdata.errors import ImageDecodeError
    from matdata.imageio import load_alpha, load_image
    from matdata.metrics import METRICS
    from matdata.storage import atomic_write_text
    from modnet.inference import evaluate, list_images, load_checkpoint_model, pair_by_stem

    if (data is None) == (images is None and alphas is None):
        _fail("evaluate needs either --data DIR or --images I --alphas A")
    if data is None and (images is None or alphas is None):
        _fail("--images and --alphas go together")
    skipped: Counter[str] = Counter()

    if data is not None:
        from matdata.schema import decode_record
        from matdata.shards import iter_records, list_shards

        total = sum(s.samples for s in list_shards(data, split, fmt))
        source = f"{data} [{split}]"

        def _samples():
            for rec in iter_records(data, split, fmt):
                if rec.meta.get("coarse"):
                    skipped["coarse"] += 1  # coarse masks are no matting ground truth
                    continue
                try:
                    dec = decode_record(rec, ("image", "alpha"))
                except (ImageDecodeError, ValueError) as exc:
                    skipped["undecodable"] += 1
                    console.print(f"[yellow]skipped[/] {rec.key}: {exc}", highlight=False)
                    continue
                yield rec.key, dec.image, dec.alpha
    else:
        pairs, unpaired = pair_by_stem(list_images([images]), list_images([alphas]))
        if unpaired:
            skipped["no_alpha"] += len(unpaired)
        if not pairs:
            _fail(f"no image in {images} has an alpha of the same name in {alphas}")
        total = len(pairs)
        source = f"{images} + {alphas}"

        def _samples():
            for im, al in pairs:
                try:
                    rgb, gt = load_image(im), load_alpha(al)
                except ImageDecodeError as exc:
                    skipped[exc.reason] += 1
                    console.print(f"[yellow]skipped[/] {exc.one_line()}", highlight=False)
                    continue
                if gt.shape != rgb.shape[:2]:
                    skipped["size_mismatch"] += 1
                    console.print(f"[yellow]skipped[/] {im}: alpha size differs", highlight=False)
                    continue
                yield im, rgb, gt

    loaded = load_checkpoint_model(checkpoint, device)
    samples = _samples()
    if limit > 0:
        samples = itertools.islice(samples, limit)
        total = min(total, limit)
    with _modnet_progress("evaluate", progress_bar) as bar:
        task = bar.add_task("evaluate", total=total)
        result = evaluate(
            loaded.model,
            samples,
            batch_size=batch_size,
            ref_size=ref_size,
            on_done=lambda _key: bar.advance(task),
        )
    result.skipped = dict(skipped)
    if not result.images:
        raise ConfigError(f"nothing to evaluate in {source}", hint=f"skipped: {dict(skipped)}")
    metrics = result.sums.result()
    table = Table(title=f"evaluate {loaded.config['backbone']} on {source}")
    table.add_column("metric")
    table.add_column("unknown region", justify="right")
    table.add_column("whole image", justify="right")
    labels = {"sad": "SAD (/1000)", "mse": "MSE", "mad": "MAD", "grad": "Grad (/1000)",
              "conn": "Conn (/1000)"}  # fmt: skip
    for k in METRICS:
        table.add_row(labels[k], f"{metrics['unknown'][k]:.6g}", f"{metrics['whole'][k]:.6g}")
    table.caption = f"{len(result.images)} images" + (
        ", skipped " + ", ".join(f"{n} {r}" for r, n in sorted(skipped.items())) if skipped else ""
    )
    payload = {"checkpoint": checkpoint, "source": source, "model": loaded.config}
    payload.update(result.to_dict())
    text = json.dumps(_nan_to_none(payload), indent=2, allow_nan=False)
    if json_out == "-":
        out.print_json(text)
        return
    out.print(table)
    if json_out:
        atomic_write_text(json_out, text + "\n")


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


# ==== qa / inspect / verify (issue 6) =================================================


@app.command("qa")
def qa_cmd(
    dataset: Annotated[str, typer.Argument(help="A built (or harmonized) dataset directory.")],
    report_dir: Annotated[
        str, typer.Option("--out", "-o", help="Folder for report.html + summary.json.")
    ],
    fail_on: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-on",
            help="Exit 1 when a rule triggers (repeatable): duplicates, leakage, checksum, "
            "'flagged>X%', 'flagged>N' or any flag name.",
        ),
    ] = None,
    sample: Annotated[
        int, typer.Option("--sample", help="Random samples shown as contact sheets.")
    ] = 48,
    seed: SeedOpt = 0,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    in_process: Annotated[
        bool,
        typer.Option("--in-process", help="Scan in this process without Dask (small data)."),
    ] = False,
    progress_bar: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = True,
) -> None:
    """QA a dataset: flags per sample, distributions, contact sheets -> HTML + JSON."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from matdata.qa import HTML_NAME, SUMMARY_NAME, check_fail_on, parse_rule, write_report
    from matdata.shards import read_index
    from matdata.storage import join
    from pipelines.qa import run_qa

    rules = list(fail_on or [])
    for rule in rules:
        parse_rule(rule)  # unknown rules fail before any work
    if sample < 0:
        _fail(f"--sample must be >= 0, got {sample}")
    total = int(read_index(dataset).get("samples", 0))
    with Progress(
        TextColumn("[bold]qa[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[shards]} shards"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not progress_bar,
    ) as bar:
        task = bar.add_task("scan", total=total or None, shards=0)

        def _tick(records: int, shards: int) -> None:
            done = bar.tasks[0].fields["shards"] + shards
            bar.update(task, advance=records, shards=done)

        report = run_qa(
            dataset,
            sample=sample,
            seed=seed,
            workers=workers,
            scheduler=scheduler,
            in_process=in_process,
            progress=_tick,
        )
    summary = write_report(report, report_dir)
    counts, flags = summary["counts"], summary["flags"]
    table = Table(title=f"qa {dataset}", title_justify="left")
    table.add_column("", style="bold")
    table.add_column("count", justify="right")
    table.add_row("samples read", f"{counts['samples']} / {counts['expected_samples']}")
    for split, n in counts["by_split"].items():
        table.add_row(f"  split {split}", str(n))
    table.add_row(
        "flagged",
        f"[red]{flags['samples_flagged']}[/] ({flags['share_flagged']:.2%})"
        if flags["samples_flagged"]
        else "[green]0[/]",
    )
    for name, n in flags["by_flag"].items():
        table.add_row(f"  {name}", str(n))
    table.add_row(
        "shard problems",
        f"[red]{len(summary['shard_problems'])}[/]" if summary["shard_problems"] else "0",
    )
    table.add_row("build rejects", str(summary["rejects"]["total"]))
    out.print(table)
    out.print(f"report:  {join(report_dir, HTML_NAME)}", soft_wrap=True, highlight=False)
    out.print(f"summary: {join(report_dir, SUMMARY_NAME)}", soft_wrap=True, highlight=False)
    failed = check_fail_on(summary, rules)
    if failed:
        console.print(f"[bold red]qa failed:[/] {'; '.join(failed)}", highlight=False,
                      soft_wrap=True)  # fmt: skip
        raise typer.Exit(1)


@app.command("inspect")
def inspect_cmd(
    dataset: Annotated[str, typer.Argument(help="A built dataset directory.")],
) -> None:
    """Quick summary of a dataset from its dataset.json (reads no shard)."""
    import json

    from rich.table import Table

    from matdata.shards import read_index

    index = read_index(dataset)
    shards = index.get("shards", [])
    table = Table(title=f"dataset {dataset}", title_justify="left")
    table.add_column("", style="bold")
    table.add_column("value")
    table.add_row("samples", str(index.get("samples", 0)))
    table.add_row("schema version", str(index.get("schema_version")))
    for split, d in index.get("splits", {}).items():
        table.add_row(f"  split {split}", f"{d.get('samples', 0)} in {d.get('shards', 0)} shards")
    for fmt in index.get("formats", []):
        mine = [s for s in shards if s.get("format") == fmt]
        size = sum(int(s.get("bytes", 0)) for s in mine)
        table.add_row(f"format {fmt}", f"{len(mine)} shards, {size / 1e6:.1f} MB")
    rejects = index.get("rejects", {})
    if isinstance(rejects, dict):
        for k, v in rejects.items():
            table.add_row(f"rejects {k}", json.dumps(v, sort_keys=True) if isinstance(v, dict)
                          else str(v))  # fmt: skip
    out.print(table)
    config = index.get("config", {})
    if config:
        ctable = Table(title="build config", title_justify="left")
        ctable.add_column("option", style="bold")
        ctable.add_column("value")
        for k, v in sorted(config.items()):
            text = json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else str(v)
            ctable.add_row(k, text)
        out.print(ctable)
    for role, src in (index.get("sources") or {}).items():
        if isinstance(src, dict):
            desc = " ".join(f"{k}={v}" for k, v in src.items() if not isinstance(v, dict | list))
            out.print(f"[bold]source {role}[/]: {desc}", highlight=False, soft_wrap=True)


@app.command("verify")
def verify_cmd(
    dataset: Annotated[str, typer.Argument(help="A built dataset directory.")],
) -> None:
    """Re-hash every shard against dataset.json; exit 1 on any mismatch."""
    from matdata.shards import read_index, verify

    n = len(read_index(dataset).get("shards", []))
    problems = verify(dataset)
    if problems:
        for p in problems:
            console.print(f"[red]mismatch:[/] {p}", highlight=False, soft_wrap=True)
        console.print(f"[bold red]verify failed:[/] {len(problems)} of {n} shards", highlight=False)
        raise typer.Exit(1)
    out.print(f"[green]ok[/]: {n} shards match dataset.json", highlight=False)


def main() -> None:
    """Console entry point: run the app, turning known errors into one line."""
    try:
        rc = app(standalone_mode=False)
        # Typer (non-standalone) *returns* the code of typer.Exit, and turns Ctrl-C into 130.
        if isinstance(rc, int) and not isinstance(rc, bool) and rc != 0:
            if rc == 130:
                raise KeyboardInterrupt
            sys.exit(rc)
    except MatdataError as exc:
        if os.environ.get("MATDATA_DEBUG"):
            raise
        console.print(f"[bold red]error:[/] {exc.one_line()}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: completed shards are kept; rerun to resume.")
        sys.exit(130)
    except OSError as exc:  # a path that cannot be read or written (permissions, disk full)
        if os.environ.get("MATDATA_DEBUG"):
            raise
        where = f" {exc.filename}" if exc.filename else ""
        console.print(
            f"[bold red]error:[/] file system:{where}: {exc.strerror or exc}"
            " (check the path and its permissions; MATDATA_DEBUG=1 shows the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


_ = Path  # re-exported for command sections
