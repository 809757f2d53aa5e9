"""``matdata evaluate``: a checkpoint on a standard benchmark, folders or a built dataset."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from matdata.cli.app import DeviceOpt, ProgressOpt, _fail, app, console, out
from matdata.cli.modnet import (
    BatchOpt,
    CheckpointOpt,
    RefSizeOpt,
    ThreadsOpt,
    _apply_threads,
    _modnet_progress,
    _nan_to_none,
)
from matdata.errors import ConfigError

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
    import json

    from matdata.storage import atomic_write_text

    text = json.dumps(_nan_to_none(payload), indent=2, allow_nan=False)
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
    from matdata.metrics import check_convention

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
    if benchmark is not None and root is None:
        _fail(f"--benchmark {benchmark} needs --root DIR (the benchmark's folder)")
    if root is not None and benchmark is None:
        _fail("--root goes with --benchmark NAME")
    check_convention(convention)
    _apply_threads(n_threads)
    if data is not None:
        _evaluate_dataset(
            checkpoint, data, split, fmt, convention, json_out, per_image, limit, device,
            batch_size, ref_size, progress_bar,
        )  # fmt: skip
        return

    from matdata.benchmarks import LAYOUTS, scan_benchmark, scan_folders
    from matdata.storage import atomic_write_text
    from modnet.benchmarks import evaluate_set
    from modnet.inference import load_checkpoint_model

    if benchmark is not None:
        if benchmark not in LAYOUTS:
            _fail(f"unknown benchmark {benchmark!r}; one of {', '.join(LAYOUTS)}")
        bench = scan_benchmark(benchmark, root)  # type: ignore[arg-type]
    else:
        bench = scan_folders(images, alphas, trimaps)  # type: ignore[arg-type]
    for s in bench.skipped:
        console.print(f"[yellow]skipped[/] {s.key}: {s.reason} ({s.detail})", highlight=False)
    if not bench.items:
        raise ConfigError(
            f"nothing to evaluate in {bench.source}",
            hint=f"{len(bench.skipped)} files could not be paired",
        )
    loaded = load_checkpoint_model(checkpoint, device)
    total = min(len(bench.items), limit) if limit > 0 else len(bench.items)
    with _modnet_progress("evaluate", progress_bar) as bar:
        task = bar.add_task("evaluate", total=total)
        res = evaluate_set(
            loaded.model,
            bench,
            convention=convention,
            batch_size=batch_size,
            ref_size=ref_size,
            limit=limit,
            on_done=lambda _key: bar.advance(task),
            generate_trimaps=benchmark is None,
        )
    for s in res.skipped[len(bench.skipped) :]:
        console.print(f"[yellow]skipped[/] {s.key}: {s.reason} ({s.detail})", highlight=False)
    if per_image:
        atomic_write_text(per_image, res.per_image_csv())
    if not res.images:
        raise ConfigError(f"nothing could be evaluated in {bench.source}", hint="see skipped")
    payload = {"checkpoint": checkpoint, "model": loaded.config, **res.to_dict()}
    skipped = payload["skipped"]
    caption = (
        f"{len(res.images)} images; trimaps: {res.trimaps}; convention: {convention}; "
        f"ref size {ref_size}"
        + (", skipped " + ", ".join(f"{n} {r}" for r, n in skipped.items()) if skipped else "")
    )
    title = f"evaluate {loaded.config['backbone']} on {bench.source}"
    _emit(payload, _table(title, res.sums.result(), caption), json_out)


def _evaluate_dataset(
    checkpoint: str,
    data: str,
    split: str,
    fmt: str | None,
    convention: str,
    json_out: str | None,
    per_image: str | None,
    limit: int,
    device: str,
    batch_size: int,
    ref_size: int,
    progress_bar: bool,
) -> None:
    """``--data``: the validation split of a built dataset, fixed trimaps from the alphas."""
    import csv
    import io
    import itertools
    from collections import Counter

    from matdata.errors import ImageDecodeError
    from matdata.metrics import METRICS, REGIONS
    from matdata.schema import decode_record, is_coarse
    from matdata.shards import iter_records, list_shards
    from matdata.storage import atomic_write_text
    from modnet.inference import evaluate, load_checkpoint_model

    skipped: Counter[str] = Counter()
    total = sum(s.samples for s in list_shards(data, split, fmt))
    source = f"{data} [{split}]"

    def _samples():
        for rec in iter_records(data, split, fmt):
            if is_coarse(rec.meta):
                skipped["coarse"] += 1  # coarse masks are no matting ground truth
                continue
            try:
                dec = decode_record(rec, ("image", "alpha"))
            except (ImageDecodeError, ValueError) as exc:
                skipped["undecodable"] += 1
                console.print(f"[yellow]skipped[/] {rec.key}: {exc}", highlight=False)
                continue
            yield rec.key, dec.image, dec.alpha

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
            convention=convention,
        )
    result.skipped = dict(skipped)
    if not result.images:
        why = ", ".join(f"{n} {r}" for r, n in sorted(skipped.items())) or "no samples"
        raise ConfigError(f"nothing to evaluate in {source}", hint=f"skipped: {why}")
    if per_image:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["key", "status", "reason"] + [f"{r}_{k}" for r in REGIONS for k in METRICS])
        for row in result.images:
            w.writerow([row["key"], "ok", ""] + [row[r][k] for r in REGIONS for k in METRICS])
        atomic_write_text(per_image, buf.getvalue())
    caption = f"{len(result.images)} images; trimaps: generated; convention: {convention}" + (
        ", skipped " + ", ".join(f"{n} {r}" for r, n in sorted(skipped.items())) if skipped else ""
    )
    payload = {
        "checkpoint": checkpoint,
        "source": source,
        "model": loaded.config,
        "convention": convention,
        "trimaps": "generated",
    }
    payload.update(result.to_dict())
    title = f"evaluate {loaded.config['backbone']} on {source}"
    _emit(payload, _table(title, result.sums.result(), caption), json_out)
