"""``matdata harmonize`` and ``matdata harmonize-eval``."""

from __future__ import annotations

from typing import Annotated

import typer

from matdata.cli.app import (
    DeviceOpt,
    ProgressOpt,
    SchedulerOpt,
    WorkersOpt,
    app,
    command_progress,
    console,
    out,
    resumable,
)

# ==== harmonize (issue 4) =============================================================

HarmModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="reinhard (no weights) | none | idih256 | issam256 | dih256 | rainnet | rainnet512"
        " | hrnet18s_idih256 | hrnet18_idih256 | hrnet18_v2p_idih256 | hrnet32_idih256"
        " | deeplab_r34_idih256.",
    ),
]
HarmCheckpointOpt = Annotated[
    str | None,
    typer.Option("--checkpoint", help="The network's released state_dict (e.g. idih256.pth)."),
]
HarmStrengthOpt = Annotated[
    float | None,
    typer.Option(
        "--strength", min=0.0, max=1.0, help="reinhard only: 0 (off) .. 1 (full transfer)."
    ),
]
HarmNetSizeOpt = Annotated[
    str | None,
    typer.Option(
        "--net-size", help="Networks only: input size N or WxH, width first (default: the model's)."
    ),
]


@app.command("harmonize")
def harmonize_cmd(
    dataset: Annotated[str, typer.Argument(help="A built dataset directory (path or URL).")],
    model: HarmModelOpt,
    out_dir: Annotated[str, typer.Option("--out", help="Output dataset directory.")],
    checkpoint: HarmCheckpointOpt = None,
    device: DeviceOpt = "auto",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=4096, help="Composites per network batch.")
    ] = 8,
    strength: HarmStrengthOpt = None,
    net_size: HarmNetSizeOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a different dataset in --out.")
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="Refuse an input shard whose bytes differ from its sha256 (hashed as read).",
        ),
    ] = True,
    progress_bar: ProgressOpt = True,
) -> None:
    """Harmonize every composite of a dataset into a new one (same keys; original kept as
    image_raw).  Re-running the same command resumes."""
    from rich.table import Table

    from harmonization.options import harmonizer_params
    from pipelines.harmonize import run_harmonize

    with resumable("harmonize", out_dir):
        s = run_harmonize(
            dataset,
            out_dir,
            model,
            checkpoint=checkpoint,
            device=device,
            batch_size=batch_size,
            params=harmonizer_params(model, strength, net_size),
            workers=workers,
            scheduler=scheduler,
            overwrite=overwrite,
            verify=verify,
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
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            help="iharm: the released iDIH evaluation (256x256 bilinear, soft-mask fMSE, "
            "PSNR peak = max of the real image) | matdata: native size, binary mask, peak 255.",
        ),
    ] = "iharm",
    size: Annotated[
        int | None,
        typer.Option(
            "--size",
            min=16,
            max=8192,
            help="--protocol matdata: resize to SIZE x SIZE first.",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Evaluate the first N.")
    ] = None,
    strength: HarmStrengthOpt = None,
    net_size: HarmNetSizeOpt = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Also write the results (per image) here.")
    ] = None,
) -> None:
    """MSE, foreground MSE and PSNR of a harmonizer against the real images, per subset."""
    from rich.table import Table

    from harmonization import load_harmonizer
    from harmonization.evaluate import check_protocol, evaluate
    from harmonization.options import harmonizer_params
    from matdata import jsonsafe
    from matdata.storage import atomic_write_text

    check_protocol(protocol, size)  # before loading any weights
    h = load_harmonizer(model, checkpoint, device, **harmonizer_params(model, strength, net_size))
    with command_progress("harmonize-eval", unit="images") as bar:
        res = evaluate(
            root, h, split=split, size=size, limit=limit, progress=bar.update, protocol=protocol
        )
    table = Table(
        title=f"harmonize-eval {root} ({model}, {split}, protocol {protocol})",
        title_justify="left",
    )
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
    if json_out:  # strict JSON: an infinite PSNR (identical images) becomes null
        text = jsonsafe.dumps(res, indent=1, sort_keys=True)
        atomic_write_text(json_out, text + "\n")
