"""``matdata ingest`` and ``matdata build``."""

from __future__ import annotations

from typing import Annotated

import typer

from matdata.cli.app import (
    ProgressOpt,
    SchedulerOpt,
    SeedOpt,
    WorkersOpt,
    app,
    command_progress,
    console,
    out,
    resumable,
)

# ==== ingest (issue 2) ================================================================


@app.command("ingest")
def ingest_cmd(
    kind: Annotated[
        str, typer.Argument(help="aisegment | supervisely | places365 | coco | folder | demo")
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
    allow_empty: Annotated[
        bool,
        typer.Option(
            "--allow-empty",
            help="Register the result even with no usable item or mostly unexpected files.",
        ),
    ] = False,
    progress_bar: ProgressOpt = True,
) -> None:
    """Scan a source once: write a Parquet manifest + rejects and register it by NAME."""
    from rich.table import Table

    from matdata.ingest import ingest, require_root
    from matdata.options import parse_options

    require_root(kind, root)  # before the progress display starts
    opts = parse_options(option)
    with command_progress(f"ingest {kind}", progress_bar, unit="files") as bar:
        res = ingest(
            kind,
            root,
            name=name,
            out=out_dir,
            options=opts,
            progress=bar.update,
            allow_empty=allow_empty,
        )

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
        for reason, n in res.filtered_by_reason.items():
            table.add_row(f"  {reason}", str(n))
    for split, n in res.by_split.items():
        table.add_row(f"split {split}", str(n))
    for role, n in res.by_role.items():
        table.add_row(f"role {role}", str(n))
    out.print(table)
    out.print(f"manifest: {res.manifest}", soft_wrap=True, highlight=False)
    out.print(f"rejects:  {res.rejects_path}", soft_wrap=True, highlight=False)
    out.print(f"registered as [bold]{res.name}[/] (use --fg/--bg {res.name})", highlight=False)
    for w in res.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)


# ==== build (issue 3) =================================================================


@app.command("build")
def build_cmd(
    fg: Annotated[
        list[str],
        typer.Option(
            "--fg",
            help="Foregrounds: catalog NAME | demo | KIND:PATH | manifest (repeatable: every "
            "source's foregrounds get their K backgrounds).",
        ),
    ],
    bg: Annotated[
        list[str],
        typer.Option(
            "--bg",
            help="Backgrounds: catalog NAME | demo | KIND:PATH | manifest (repeatable: "
            "backgrounds are drawn from all of them, pooled).",
        ),
    ],
    out_dir: Annotated[str, typer.Option("--out", help="Output dataset dir (path or URL).")],
    per_fg: Annotated[
        int, typer.Option("--per-fg", min=1, max=1000, help="Backgrounds per foreground (K).")
    ] = 10,
    size: Annotated[
        str, typer.Option("--size", help="Output size: 512 (square) | WxH | native (16..8192).")
    ] = "512",
    augment: Annotated[
        bool,
        typer.Option(
            "--augment/--no-augment", help="Random geometry/photometry (off: alpha is exact)."
        ),
    ] = True,
    trimap: Annotated[bool, typer.Option("--trimap", help="Store a trimap per sample.")] = False,
    trimap_rel_width: Annotated[
        float,
        typer.Option("--trimap-width", min=0.0, max=0.5, help="Trimap band radius / sqrt(H*W)."),
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
        typer.Option(
            "--samples-per-shard",
            min=1,
            max=1_000_000,
            help="Exact samples per shard (overrides size).",
        ),
    ] = None,
    seed: SeedOpt = 0,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    jpeg_quality: Annotated[
        int, typer.Option("--jpeg-quality", min=1, max=100, help="JPEG quality of stored images.")
    ] = 95,
    bg_crop: Annotated[str, typer.Option("--bg-crop", help="random | center.")] = "random",
    bg_blur: Annotated[
        float, typer.Option("--bg-blur", min=0.0, max=1.0, help="Probability of background blur.")
    ] = 0.0,
    noise: Annotated[
        float, typer.Option("--noise", min=0.0, max=1.0, help="Probability of Gaussian noise.")
    ] = 0.0,
    jpeg_match: Annotated[
        float,
        typer.Option(
            "--jpeg-match", min=0.0, max=1.0, help="Probability of matched fg/bg JPEG artefacts."
        ),
    ] = 0.0,
    color_jitter: Annotated[
        float,
        typer.Option(
            "--color-jitter", min=0.0, max=1.0, help="Probability of fg/bg colour jitter."
        ),
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
    bg_weights: Annotated[
        str | None,
        typer.Option(
            "--bg-weights",
            help="How backgrounds are drawn across --bg sources, e.g. places365=0.7,coco=0.3 "
            "(default: in proportion to their sizes).",
        ),
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
    progress_bar: ProgressOpt = True,
    max_reject_rate: Annotated[
        float,
        typer.Option(
            "--max-reject-rate",
            help="Fail (exit 1, no dataset.json) when inputs rejected at build time exceed "
            "this fraction of what a source found (0..1).",
        ),
    ] = 0.01,
) -> None:
    """Composite foregrounds onto backgrounds into sharded Parquet / WebDataset, on Dask.

    Re-running the same command resumes an interrupted build.
    """
    from rich.table import Table

    from matdata.build_config import build_config
    from matdata.rejects import RejectRateError
    from pipelines.build import run_build

    cfg = build_config(
        fg,
        bg,
        out_dir,
        size=size,
        shard_size=shard_size,
        fg_options=fg_option,
        bg_options=bg_option,
        exclude_tags=exclude_tag,
        bg_categories=bg_category,
        per_fg=per_fg,
        augment=augment,
        trimap=trimap,
        trimap_rel_width=trimap_rel_width,
        keep_layers=keep_layers,
        formats=fmt,
        samples_per_shard=samples_per_shard,
        seed=seed,
        jpeg_quality=jpeg_quality,
        bg_crop=bg_crop,
        bg_blur=bg_blur,
        noise=noise,
        jpeg_match=jpeg_match,
        color_jitter=color_jitter,
        fg_estimator=fg_estimator,
        bg_io=bg_io,
        bg_weights=bg_weights,
    )
    try:
        with resumable("build", out_dir):
            s = run_build(
                cfg,
                workers=workers,
                scheduler=scheduler,
                overwrite=overwrite,
                console=console,
                progress=progress_bar,
                max_reject_rate=max_reject_rate,
            )
    except RejectRateError as exc:
        _print_reject_table(exc)
        raise
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
    out.print(table)  # the plan's warnings were printed once, before the build (run_build)


def _print_reject_table(exc) -> None:  # exc: matdata.rejects.RejectRateError
    """The reasons and per-source counts of a build that failed on its reject rate."""
    from rich.table import Table

    table = Table(title="build rejects", title_justify="left")
    table.add_column("reason")
    table.add_column("count", justify="right")
    for reason, n in sorted(exc.by_reason.items(), key=lambda kv: -kv[1]):
        table.add_row(reason, str(n))
    for name, a in exc.accounting.items():
        table.add_row(f"[bold]{name}[/]: failed / found", f"{a['build_failed']} / {a['found']}")
    console.print(table)
