"""Deterministic interruption points for tests (off unless their environment variable is set).

Tests that check "a run killed / interrupted part-way resumes correctly" must not depend on
timing (poll a file, then send a signal, and hope the run is still mid-way).  These hooks
make the run stop itself at an exact point, through the same signal a user would send:

* ``MATDATA_TEST_KILL_AFTER_SHARDS=N``: a shard-job worker (:mod:`pipelines.runner`)
  SIGKILLs its whole process group (the CLI, the Dask fork server and the workers, as
  ``kill -9`` of the job would) right after the N-th shard it wrote has its completion
  marker.  With one single-threaded worker exactly N shards are complete.
* ``MATDATA_TEST_SIGINT_AFTER_STEPS=N``: the trainer sends itself SIGINT (Ctrl-C) right
  after optimizer step N, so it stops at exactly step N.

Never set them outside tests.
"""

from __future__ import annotations

import os
import signal

KILL_AFTER_SHARDS = "MATDATA_TEST_KILL_AFTER_SHARDS"
SIGINT_AFTER_STEPS = "MATDATA_TEST_SIGINT_AFTER_STEPS"

_shards_written = 0


def _count(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value else None


def shard_written() -> None:
    """Called by a worker after a shard (not a resumed one) and its marker are written."""
    global _shards_written
    n = _count(KILL_AFTER_SHARDS)
    if n is None:
        return
    _shards_written += 1
    if _shards_written >= n:
        os.killpg(os.getpgrp(), signal.SIGKILL)


def step_done(step: int) -> None:
    """Called by the trainer after each optimizer step (``step`` counts from 1)."""
    n = _count(SIGINT_AFTER_STEPS)
    if n is not None and step == n:
        os.kill(os.getpid(), signal.SIGINT)
