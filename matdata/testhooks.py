"""Deterministic interruption points for tests (off unless their environment variable is set).

Tests that check "a run killed / interrupted part-way resumes correctly" must not depend on
timing (poll a file, then send a signal, and hope the run is still mid-way).  These hooks
make the run stop itself at an exact point, through the same signal a user would send:

* ``MATDATA_TEST_KILL_AFTER_SHARDS=N``: a shard-job worker (:mod:`pipelines.runner`)
  SIGKILLs its whole process group (the CLI, the Dask fork server and the workers, as
  ``kill -9`` of the job would) right after the N-th shard it wrote has its completion
  marker.  With one single-threaded worker exactly N shards are complete.
* ``MATDATA_TEST_SIGINT_AFTER_SHARDS=N``: the same worker sends SIGINT to its whole process
  group (as a terminal's Ctrl-C does) right after the N-th shard's marker, then holds its
  thread until the cluster is closed, so with one single-threaded worker exactly N shards
  are complete when the CLI stops.
* ``MATDATA_TEST_SIGINT_IN_CLUSTER_START=1``: the fork server that starts the Dask workers
  (:mod:`pipelines._ignore_sigint`) sends SIGINT to its process group before it imports
  the rest of its preload: the CLI is then inside ``LocalCluster`` start-up, waiting for its
  first worker.
* ``MATDATA_TEST_SIGINT_AT_STARTUP=1``: the CLI sends itself SIGINT while it imports its
  modules (:mod:`matdata.cli`), before ``main()`` runs.
* ``MATDATA_TEST_SIGINT_AFTER_STEPS=N``: the trainer sends itself SIGINT (Ctrl-C) right
  after optimizer step N, so it stops at exactly step N.
* ``MATDATA_TEST_SIGINT_AFTER_VAL_BATCHES=N``: the trainer sends itself SIGINT right after
  batch N of a validation pass (once per process).

The hooks that signal a process group need the command started in a session of its own
(``start_new_session=True``).  Never set them outside tests.
"""

from __future__ import annotations

import os
import signal
import time

KILL_AFTER_SHARDS = "MATDATA_TEST_KILL_AFTER_SHARDS"
SIGINT_AFTER_SHARDS = "MATDATA_TEST_SIGINT_AFTER_SHARDS"
SIGINT_IN_CLUSTER_START = "MATDATA_TEST_SIGINT_IN_CLUSTER_START"
SIGINT_AT_STARTUP = "MATDATA_TEST_SIGINT_AT_STARTUP"
SIGINT_AFTER_STEPS = "MATDATA_TEST_SIGINT_AFTER_STEPS"
SIGINT_AFTER_VAL_BATCHES = "MATDATA_TEST_SIGINT_AFTER_VAL_BATCHES"

_shards_written = 0
_val_interrupted = False


def _count(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value else None


def shard_written() -> None:
    """Called by a worker after a shard (not a resumed one) and its marker are written."""
    global _shards_written
    kill, interrupt = _count(KILL_AFTER_SHARDS), _count(SIGINT_AFTER_SHARDS)
    if kill is None and interrupt is None:
        return
    _shards_written += 1
    if kill is not None and _shards_written >= kill:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    if interrupt is not None and _shards_written == interrupt:
        os.killpg(os.getpgrp(), signal.SIGINT)  # workers ignore it; the CLI stops
        _hold_until_closing()


def _hold_until_closing() -> None:
    """Keep this (single) worker thread busy until the client's Ctrl-C handling starts
    closing the worker: a closing worker starts no further task, so no shard after the
    N-th is written.  (It waits on the worker's state, not for a time.)"""
    from distributed import get_worker
    from distributed.worker import WORKER_ANY_RUNNING

    try:
        worker = get_worker()
    except ValueError:  # not on a Dask worker
        return
    while worker.status in WORKER_ANY_RUNNING:
        time.sleep(0.01)


def cluster_starting() -> None:
    """Called by the Dask fork server while it imports its preload."""
    if _count(SIGINT_IN_CLUSTER_START):
        os.killpg(os.getpgrp(), signal.SIGINT)


def cli_starting() -> None:
    """Called by :mod:`matdata.cli` while it imports its modules."""
    if _count(SIGINT_AT_STARTUP):
        os.kill(os.getpid(), signal.SIGINT)


def step_done(step: int) -> None:
    """Called by the trainer after each optimizer step (``step`` counts from 1)."""
    n = _count(SIGINT_AFTER_STEPS)
    if n is not None and step == n:
        os.kill(os.getpid(), signal.SIGINT)


def val_batch_done(batch: int) -> None:
    """Called by the trainer after each validation batch (``batch`` counts from 1)."""
    global _val_interrupted
    n = _count(SIGINT_AFTER_VAL_BATCHES)
    if n is not None and batch == n and not _val_interrupted:
        _val_interrupted = True
        os.kill(os.getpid(), signal.SIGINT)
