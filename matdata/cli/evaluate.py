"""``matdata evaluate``: a checkpoint on a standard benchmark, folders or a built dataset."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from matdata.cli.app import DeviceOpt, ProgressOpt, _fail, app, command_progress, console, out
from matdata.cli.modnet import BatchOpt, CheckpointOpt, RefSizeOpt, ThreadsOpt, _apply_threads

_LABELS = {
    "sad": "SAD (/1000)",
    "mse": "MSE (x1e3)",
    "mad": "MAD (x1e3)",
    "grad": "Grad (/1000)",
    "conn": "Conn (/1000)",
}
_SCALE = {"sad": 1.0, "mse": 1e3, "mad": 1e3, "grad": 1.0, "conn": 1.0}


def _table(title: str, metrics: dict[str, dict[str, float]], caption: str):
    from rich.table import Table

    from matdata.metrics import METRICS

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("unknown region", justify="right")
    table.add_column("whole image", justify="right")
    for k in METRICS:
        cells = []
        for region in ("unknown", "whole"):
            v = metrics.get(region, {}).get(k)
            cells.append("-" if v is None or v != v else f"{v * _SCALE[k]:.4f}")
        table.add_row(_LABELS[k], *cells)
    table.caption = caption
    return table


def _emit(payload: dict[str, Any], table: Any, json_out: str | None) -> None:
    from matdata import jsonsafe
    from matdata.storage import atomic_write_text

    text = jsonsafe.dumps(payload, indent=2)
    if json_out == "-":
        out.print_json(text)
        return
    out.print(table)
    if json_out:
        atomic_write_text(json_out, text + "\n")


@app.command("evaluate")
def evaluate_cmd(
    checkpoint: CheckpointOpt,
    benchmark: Annotated[
        str | None,
        typer.Option(
            "--benchmark",
            "-b",
            help="p3m | ppm100 | aim500 | am2k | comp1k: read that benchmark's published "
            "layout under --root (its own trimaps).",
        ),
    ] = None,
    root: Annotated[
        str | None, typer.Option("--root", help="The benchmark's folder (with --benchmark).")
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="A built dataset (matdata build --out DIR).")
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Split of --data.")] = "val",
    fmt: Annotated[
        str | None, typer.Option("--format", help="parquet | webdataset (default: preferred)")
    ] = None,
    images: Annotated[
        str | None, typer.Option("--images", help="Image folder (with --alphas).")
    ] = None,
    alphas: Annotated[
        str | None, typer.Option("--alphas", help="Ground-truth alphas, paired by file name.")
    ] = None,
    trimaps: Annotated[
        str | None,
        typer.Option(
            "--trimaps",
            help="Trimaps (0/128/255) paired by file name; without: a trimap made from the "
            "ground truth.",
        ),
    ] = None,
    convention: Annotated[
        str,
        typer.Option(
            "--metric-convention",
            help="dim (DIM MATLAB: Grad on mat2gray-normalised mattes, Conn in single "
            "precision) | gca (GCA-Matting Python: /255, float64).",
        ),
    ] = "dim",
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write metrics + per-image errors ('-': stdout).")
    ] = None,
    per_image: Annotated[
        str | None,
        typer.Option("--per-image", help="Write one CSV row per image (and per skipped one)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most N images (0 = all).")] = 0,
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 4,
    ref_size: RefSizeOpt = 512,
    n_threads: ThreadsOpt = None,
    progress_bar: ProgressOpt = True,
) -> None:
    """SAD / MSE / MAD / Grad / Conn of a checkpoint: over the unknown region of the
    trimaps and over the whole image, with MODNet's official inference protocol
    (reference size 512, sides floored to multiples of 32)."""
    from matdata.benchmarks import open_eval_set
    from matdata.metrics import check_convention
    from matdata.storage import atomic_write_text
    from modnet.benchmarks import evaluate_set
    from modnet.inference import load_checkpoint_model

    modes = [benchmark is not None, data is not None, images is not None or alphas is not None]
    if sum(modes) != 1:
        _fail(
            "evaluate needs either --data DIR or --images I --alphas A, "
            "or --benchmark NAME --root DIR"
        )
    if (images is None) != (alphas is None):
        _fail("--images and --alphas go together")
    if trimaps is not None and images is None:
        _fail("--trimaps goes with --images and --alphas")
    if root is not None and benchmark is None:
        _fail("--root goes with --benchmark NAME")
    check_convention(convention)
    _apply_threads(n_threads)
    eval_set = open_eval_set(
        benchmark=benchmark, root=root, images=images, alphas=alphas, trimaps=trimaps,
        data=data, split=split, fmt=fmt,
    )  # fmt: skip
    for s in eval_set.skipped:
        _print_skip(s)
    loaded = load_checkpoint_model(checkpoint, device)
    with command_progress("evaluate", progress_bar, unit="images") as bar:
        res = evaluate_set(
            loaded.model,
            eval_set,
            convention=convention,
            batch_size=batch_size,
            ref_size=ref_size,
            limit=limit,
            on_progress=bar.update,
            on_skip=_print_skip,
            generate_trimaps=benchmark is None,
        )
    if per_image:
        atomic_write_text(per_image, res.per_image_csv())
    res.require_images()
    payload = {"checkpoint": checkpoint, "model": loaded.config, **res.to_dict()}
    skipped = payload["skipped"]
    caption = (
        f"{len(res.images)} images; trimaps: {res.trimaps}; convention: {convention}; "
        f"ref size {ref_size}"
        + (", skipped " + ", ".join(f"{n} {r}" for r, n in skipped.items()) if skipped else "")
    )
    title = f"evaluate {loaded.config['backbone']} on {res.source}"
    _emit(payload, _table(title, res.sums.result(), caption), json_out)


def _print_skip(s: Any) -> None:  # s: matdata.benchmarks.Skip
    """One line per skipped image, except coarse records (by design; counted in the table)."""
    if s.reason != "coarse":
        console.print(f"[yellow]skipped[/] {s.key}: {s.reason} ({s.detail})", highlight=False)
