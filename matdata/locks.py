"""One writer per output directory: an exclusive lock file.

``build``, ``harmonize`` and ``qa --out`` hold :func:`output_lock` on their output
directory while they write to it.  The lock is the file ``DIR/.matdata.lock`` holding
JSON ``{"job", "host", "pid", "started", "token"}``, created exclusively (``O_EXCL`` on a
local disk).  A second job finds it and stops with one line naming the running job.  A
lock left by a process that no longer runs on this host (killed, machine rebooted) is
stale: it is replaced, with a warning.  A lock from another host cannot be checked and is
refused; its message says how to remove it once that job is known to be dead.  On an
object store (``s3://`` ...) creation is not atomic: the lock is best-effort there.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

from matdata.errors import ConfigError

LOCK_NAME = ".matdata.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return True


def describe(holder: dict[str, Any]) -> str:
    """``build (pid 123 on host, since 2026-01-01 12:00:00 UTC)``."""
    started = holder.get("started")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
        if isinstance(started, int | float) and 0 <= started < 1e11
        else "an unknown time"
    )
    return (
        f"{str(holder.get('job', 'a matdata job'))[:40]} (pid {holder.get('pid', '?')} on "
        f"{str(holder.get('host', '?'))[:80]}, since {when})"
    )


def _read(fs: Any, path: str) -> dict[str, Any] | None:
    """The lock's content; ``{}`` if unreadable/garbled; None if there is no lock."""
    try:
        with fs.open(path, "rb") as f:
            data = json.loads(f.read(4096))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _stale(holder: dict[str, Any]) -> bool:
    pid = holder.get("pid")
    return (
        holder.get("host") == socket.gethostname()
        and isinstance(pid, int)
        and not isinstance(pid, bool)
        and not _pid_alive(pid)
    )


def _create(fs: Any, path: str, body: bytes) -> bool:
    """Create the lock file exclusively; False if it exists."""
    from fsspec.implementations.local import LocalFileSystem

    if isinstance(fs, LocalFileSystem):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, body)
        finally:
            os.close(fd)
        return True
    if fs.exists(path):  # object stores: best effort
        return False
    with fs.open(path, "wb") as f:
        f.write(body)
    return True


@contextlib.contextmanager
def output_lock(out: str, job: str, warn: Any = None) -> Iterator[dict[str, Any]]:
    """Hold the exclusive lock of directory ``out`` (created if missing) for ``job``.

    Raises :class:`ConfigError` naming the running job if another live job holds it.
    ``warn(message)`` is told when a stale lock is replaced.  Yields the lock's content.
    """
    from matdata.storage import get_fs, join

    fs, root = get_fs(out)
    fs.makedirs(root, exist_ok=True)
    path = get_fs(join(out, LOCK_NAME))[1]
    mine = {
        "job": job,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": round(time.time(), 3),
        "token": uuid.uuid4().hex,
    }
    body = (json.dumps(mine, sort_keys=True) + "\n").encode()
    for _ in range(3):
        if _create(fs, path, body):
            break
        holder = _read(fs, path)
        if holder is None:  # released meanwhile: try again
            continue
        if _stale(holder):
            if warn is not None:
                warn(f"removed a stale lock of {describe(holder)} in {out}")
            with contextlib.suppress(FileNotFoundError):
                fs.rm(path)
            continue
        raise ConfigError(
            f"{out} is being written by {describe(holder)}",
            hint=f"wait for it to finish; if it is dead, delete {join(out, LOCK_NAME)}",
        )
    else:
        raise ConfigError(f"could not take the lock {join(out, LOCK_NAME)}", hint="try again")
    try:
        yield mine
    finally:
        holder = _read(fs, path)
        if holder and holder.get("token") == mine["token"]:
            with contextlib.suppress(FileNotFoundError):
                fs.rm(path)
