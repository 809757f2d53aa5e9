"""``matdata export``: a MODNet checkpoint as the official state_dict, ONNX or TorchScript."""

from __future__ import annotations

from typing import Annotated

import typer

from matdata.cli.app import app, console, out

CHECK_SIZES = ((96, 128), (160, 96))


@app.command("export")
def export_cmd(
    checkpoint: Annotated[
        str, typer.Argument(help="MODNet weights: a released .ckpt or a `matdata train` one.")
    ],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="official (DataParallel state_dict the official MODNet code loads strictly) "
            "| onnx (image in [-1,1] -> matte, dynamic H/W) | torchscript.",
        ),
    ],
    out_file: Annotated[str, typer.Option("--out", "-o", help="The file to write.")],
    opset: Annotated[
        int | None,
        typer.Option("--opset", help="ONNX opset (>= 17).  \\[default: 17, dynamo: 18]"),
    ] = None,
    exporter: Annotated[
        str,
        typer.Option(
            "--exporter", help="ONNX exporter: legacy (TorchScript-based) | dynamo (onnxscript)."
        ),
    ] = "legacy",
    check: Annotated[
        bool,
        typer.Option(
            "--check/--no-check",
            help="Reload the export and compare its matte with torch on random inputs.",
        ),
    ] = True,
) -> None:
    """Export a MODNet checkpoint for use outside matdata."""
    import os

    from rich.table import Table

    from matdata.checkpoints import file_sha256
    from modnet.export import ExportError, check_export, export_model, export_options
    from modnet.inference import load_checkpoint_model

    kwargs = export_options(to, opset, exporter)
    loaded = load_checkpoint_model(checkpoint, "cpu")
    with console.status(f"exporting to {to}"):
        export_model(loaded.model, to, out_file, **kwargs)
    table = Table(title=f"export {checkpoint} -> {out_file}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("target", to)
    table.add_row("model", f"{loaded.config['backbone']} hr={loaded.config['hr_channels']}")
    digest = file_sha256(out_file)
    table.add_row("bytes", f"{os.path.getsize(out_file):,}")
    table.add_row("sha256", digest[:16])
    if check:
        sizes = ", ".join(f"{h}x{w}" for h, w in CHECK_SIZES)
        try:
            with console.status("checking the export"):
                diff = check_export(loaded.model, to, out_file, CHECK_SIZES)
            table.add_row(f"max |matte - torch| ({sizes})", f"{diff:.2e}")
        except ExportError as exc:
            table.add_row("check", f"not run: {exc.one_line()}")
    out.print(table)
