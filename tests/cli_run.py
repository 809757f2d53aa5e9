"""Run ``matdata ARGS`` in the test's own process, as the console entry point does (its
error handling included); shared by the training tests."""

from __future__ import annotations

import sys


def run_main(args: list[str]) -> int:
    """The exit code of ``matdata ARGS`` run in this process."""
    from matdata.cli import main

    old = sys.argv
    sys.argv = ["matdata", *args]
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = old
    return 0
