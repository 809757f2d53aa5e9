"""The ``matdata`` command line: the only module that wires core, pipelines, harmonization
and modnet together.

Commands are thin: parse options, call one library function, print a rich summary.  Heavy
modules (torch, dask, pyarrow...) are imported inside the commands so ``matdata --help``
stays instant.  Any :class:`~matdata.errors.MatdataError` becomes one red line and exit
code 1; set ``MATDATA_DEBUG=1`` for the full traceback.
"""

# ruff: noqa: I001, E402  (command modules import in help order: it sets the order of `--help`;
# the Ctrl-C start-up handler comes before them all)
# First: a Ctrl-C during the imports below is one line and exit 130 (see matdata.startup).
from matdata import startup, testhooks

startup.hold_ctrl_c()
testhooks.cli_starting()  # no-op unless MATDATA_TEST_SIGINT_AT_STARTUP is set

from matdata.cli.app import app, main

# Importing the command modules registers their commands on ``app``.
from matdata.cli import ingest_build  # noqa: F401
from matdata.cli import harmonize  # noqa: F401
from matdata.cli import modnet  # noqa: F401
from matdata.cli import evaluate  # noqa: F401
from matdata.cli import export  # noqa: F401
from matdata.cli import qa  # noqa: F401

__all__ = ["app", "main"]
