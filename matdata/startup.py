"""Ctrl-C while the ``matdata`` command starts up: one line and exit 130, not a traceback.

Importing the CLI (typer, rich and the command modules) takes a noticeable fraction of a
second, before :func:`matdata.cli.main` can catch anything.  :func:`hold_ctrl_c` runs first
thing in :mod:`matdata.cli` and, only when this process *is* the ``matdata`` command (the
console script or ``python -m matdata``), turns a SIGINT during the imports into the line
``interrupted`` and exit code 130; ``main()`` then hands Ctrl-C back to Python's
``KeyboardInterrupt`` (:func:`release_ctrl_c`), which it handles itself.  A program that
imports :mod:`matdata.cli` as a library keeps its own Ctrl-C behaviour.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any


def _on_sigint(signum: int, frame: Any) -> None:
    sys.stderr.write("interrupted\n")
    sys.stderr.flush()
    raise SystemExit(130)


def _is_the_command() -> bool:
    argv0 = sys.argv[0] if sys.argv else ""
    name = os.path.basename(argv0)
    if name == "__main__.py":  # python -m matdata
        return os.path.basename(os.path.dirname(os.path.abspath(argv0))) == "matdata"
    return os.path.splitext(name)[0] in ("matdata", "matdata-script")


def hold_ctrl_c() -> None:
    """Install the start-up Ctrl-C handler (the ``matdata`` command only, main thread, and
    only where Ctrl-C still has Python's default handler: not when it is ignored)."""
    if threading.current_thread() is not threading.main_thread() or not _is_the_command():
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def release_ctrl_c() -> None:
    """From here on Ctrl-C raises ``KeyboardInterrupt`` again (called by ``main()``)."""
    if signal.getsignal(signal.SIGINT) is _on_sigint:
        signal.signal(signal.SIGINT, signal.default_int_handler)
