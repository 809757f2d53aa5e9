"""The Typer app, its consoles, shared option aliases and the console entry point."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from matdata import __version__, startup
from matdata.errors import ConfigError, MatdataError

if TYPE_CHECKING:
    from matdata.progress import TaskProgress

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
    typer.Option(
        "--workers", "-w", min=1, max=512, help="Local Dask workers (default: one per core)."
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        envvar="MATDATA_SCHEDULER",
        help="Address of an existing Dask cluster (tcp://HOST:PORT); default: a local one.",
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Seed for every random choice.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")]


def _fail(message: str) -> None:
    raise ConfigError(message)


def command_progress(label: str, enabled: bool = True, **kwargs: Any) -> TaskProgress:
    """The progress display of a command on stderr: a rich bar on a terminal, plain lines
    elsewhere, nothing with ``--no-progress`` (:class:`matdata.progress.TaskProgress`;
    ``kwargs``: ``unit``, ``total``, ``counter``)."""
    from matdata.progress import TaskProgress

    return TaskProgress(label, console=console, enabled=enabled, **kwargs)


@contextmanager
def resumable(job: str, out_dir: str) -> Iterator[None]:
    """Ctrl-C during a resumable shard job (build, harmonize): one line saying what is kept
    and how to go on (:class:`~matdata.errors.Interrupted`, exit 130)."""
    from matdata.errors import Interrupted

    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(
            f"{job} stopped; the shards completed so far are kept in {out_dir}",
            hint="run the same command again to resume",
        ) from None


def hold_output_lock(ctx: typer.Context, directory: str, job: str) -> None:
    """Take the exclusive lock of an output directory (:func:`matdata.locks.output_lock`)
    for the rest of the running command (released when its context ``ctx`` closes)."""
    from matdata.locks import output_lock

    def warn(msg: str) -> None:
        console.print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)

    ctx.with_resource(output_lock(directory, job, warn=warn))


def main() -> None:
    """Console entry point: run the app, turning known errors into one line.

    Usage errors print click's short usage and one ``Error:`` line (exit 2) whatever typer
    and click versions are installed (:mod:`matdata.cli.usage`); a :class:`MatdataError`
    prints one red line (exit 1, 130 for :class:`~matdata.errors.Interrupted`).
    """
    from matdata.cli import usage
    from matdata.errors import Interrupted

    debug = bool(os.environ.get("MATDATA_DEBUG"))
    try:
        startup.release_ctrl_c()  # Ctrl-C during the imports was handled by matdata.startup
        rc = usage.invoke(app)
        # Typer (non-standalone) *returns* the code of typer.Exit, and turns Ctrl-C into 130.
        if isinstance(rc, int) and not isinstance(rc, bool) and rc != 0:
            if rc == 130:
                raise KeyboardInterrupt
            sys.exit(rc)
    except Interrupted as exc:
        console.print(f"[yellow]interrupted:[/] {exc.one_line()}", highlight=False,
                      soft_wrap=True)  # fmt: skip
        sys.exit(exc.exit_code)
    except MatdataError as exc:
        if debug:
            raise
        console.print(f"[bold red]error:[/] {exc.one_line()}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]", highlight=False)
        sys.exit(130)
    except OSError as exc:  # a path that cannot be read or written (permissions, disk full)
        if debug:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        console.print(
            f"[bold red]error:[/] file system:{where}: {exc.strerror or exc}"
            " (check the path and its permissions; MATDATA_DEBUG=1 shows the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
    except Exception as exc:  # click's own exceptions, from whichever click typer uses
        if usage.is_exit(exc):
            sys.exit(getattr(exc, "exit_code", 0))
        if usage.is_click_exception(exc):
            exc.show()
            sys.exit(exc.exit_code)
        if usage.is_abort(exc):
            # older click turns Ctrl-C into Abort (non-standalone)
            if isinstance(exc.__context__, KeyboardInterrupt):
                console.print("[yellow]interrupted[/]", highlight=False)
                sys.exit(130)
            sys.exit(1)
        raise
