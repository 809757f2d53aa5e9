"""``matdata qa``, ``inspect`` and ``verify``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from matdata.cli.app import (
    ProgressOpt,
    SchedulerOpt,
    SeedOpt,
    WorkersOpt,
    app,
    command_progress,
    console,
    hold_output_lock,
    out,
)

if TYPE_CHECKING:
    from matdata.qa import QAReport

# ==== qa / inspect / verify (issue 6) =================================================


@app.command("qa")
def qa_cmd(
    ctx: typer.Context,
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
        int,
        typer.Option("--sample", min=0, max=10_000, help="Random samples shown as contact sheets."),
    ] = 48,
    seed: SeedOpt = 0,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    in_process: Annotated[
        bool,
        typer.Option("--in-process", help="Scan in this process without Dask (small data)."),
    ] = False,
    progress_bar: ProgressOpt = True,
    compare_with: Annotated[
        str | None,
        typer.Option(
            "--compare",
            help="A second dataset (e.g. the harmonized copy, or another estimator's build):"
            " also write compare.html + compare.json, the same keys side by side.",
        ),
    ] = None,
) -> None:
    """QA a dataset: flags per sample, distributions, contact sheets -> HTML + JSON."""
    from rich.table import Table

    from matdata.qa import (
        HTML_NAME,
        SUMMARY_NAME,
        check_fail_on,
        check_report_dir,
        parse_rule,
        write_report,
    )
    from matdata.shards import read_index
    from matdata.storage import join
    from pipelines.qa import run_qa

    check_report_dir(dataset, report_dir)
    rules = list(fail_on or [])
    for rule in rules:
        parse_rule(rule)  # unknown rules fail before any work
    total = int(read_index(dataset).get("samples", 0))
    if compare_with is not None:
        read_index(compare_with)  # a missing second dataset fails before any work
    hold_output_lock(ctx, report_dir, "qa")  # one writer per report folder, until the command ends
    progress = command_progress(  # on Dask the runner draws the bar (show_progress)
        "qa", progress_bar and in_process, unit="samples", total=total or None, counter="shards"
    )
    with progress as bar:
        report = run_qa(
            dataset,
            sample=sample,
            seed=seed,
            workers=workers,
            scheduler=scheduler,
            in_process=in_process,
            progress=bar.advance,
            show_progress=progress_bar,
            console=console,
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
    if compare_with is not None:
        _compare(report, compare_with, report_dir, sample, seed, workers, scheduler, in_process)
    failed = check_fail_on(summary, rules)
    if failed:
        console.print(f"[bold red]qa failed:[/] {'; '.join(failed)}", highlight=False,
                      soft_wrap=True)  # fmt: skip
        raise typer.Exit(1)


def _compare(
    report_a: QAReport,
    dataset_b: str,
    report_dir: str,
    sample: int,
    seed: int,
    workers: int | None,
    scheduler: str | None,
    in_process: bool,
) -> None:
    """Scan ``dataset_b`` and write ``compare.html`` / ``compare.json`` next to the report."""
    from rich.table import Table

    from matdata.storage import join
    from pipelines.qa import run_compare

    with console.status(f"qa {dataset_b}"):
        data = run_compare(
            report_a,
            dataset_b,
            report_dir,
            sample=sample,
            seed=seed,
            workers=workers,
            scheduler=scheduler,
            in_process=in_process,
        )
    table = Table(title=f"compare (B = {dataset_b})", title_justify="left")
    for col in ("statistic", "A median", "B median", "median B-A"):
        table.add_column(col, justify="left" if col == "statistic" else "right")
    for m, st in data["metrics"].items():
        table.add_row(m, f"{st['a']['median']:.3g}", f"{st['b']['median']:.3g}",
                      f"{st['b_minus_a']['median']:+.3g}")  # fmt: skip
    out.print(table)
    out.print(
        f"keys in both: {data['common_keys']} (only A {data['only_a']}, only B {data['only_b']})",
        highlight=False,
    )
    out.print(f"compare: {join(report_dir, 'compare.html')}", soft_wrap=True, highlight=False)


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
            if k == "by_source":
                continue  # a table of its own below
            table.add_row(f"rejects {k}", json.dumps(v, sort_keys=True) if isinstance(v, dict)
                          else str(v))  # fmt: skip
    out.print(table)
    by_source = _by_source_table(index)
    if by_source is not None:
        out.print(by_source)
    config = index.get("config", {})
    if config:
        ctable = Table(title="build config", title_justify="left")
        ctable.add_column("option", style="bold")
        ctable.add_column("value")
        for k, v in sorted(config.items()):
            text = json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else str(v)
            ctable.add_row(k, text)
        out.print(ctable)
    for role, srcs in (index.get("sources") or {}).items():
        for src in srcs if isinstance(srcs, list) else [srcs]:  # a list per role since mixed builds
            if isinstance(src, dict):
                desc = " ".join(
                    f"{k}={v}" for k, v in src.items() if not isinstance(v, dict | list)
                )
                out.print(f"[bold]source {role}[/]: {desc}", highlight=False, soft_wrap=True)


def _by_source_table(index: dict):  # -> rich.table.Table | None
    """Inputs and samples per source: found / used / rejected and samples per split, from
    ``rejects.by_source`` and ``samples_by_source`` of ``dataset.json``."""
    from rich.table import Table

    acct = (index.get("rejects") or {}).get("by_source") or {}
    samples = index.get("samples_by_source") or {}
    if not isinstance(acct, dict) or not acct:
        return None
    splits = sorted((index.get("splits") or {}).keys())
    table = Table(title="by source", title_justify="left")
    table.add_column("source", style="bold")
    table.add_column("role")
    for col in ("found", "used", "rejected", *(f"samples {s}" for s in splits)):
        table.add_column(col, justify="right")
    roles: dict[str, list[str]] = {}
    for role in ("fg", "bg"):
        for src in (index.get("sources") or {}).get(role) or []:
            if isinstance(src, dict):
                roles.setdefault(str(src.get("name")), []).append(role)
    for name, a in sorted(acct.items()):
        for role in roles.get(name) or [""]:
            per = (samples.get(role) or {}).get(name) or {}
            table.add_row(
                name,
                role,
                str(a.get("found", "")),
                str(a.get("used", "")),
                str(a.get("rejected", "")),
                *(str(per.get(s, 0)) for s in splits),
            )
    return table


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
