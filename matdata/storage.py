"""Filesystem helpers over local paths and fsspec URLs: atomic writes, listing, hashing.

Every output matdata writes goes to a temporary name beside its target and is renamed into
place when complete, so a reader never sees a partial file, whatever kills the writer.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from typing import IO, Any

import fsspec

#: Prefix of in-progress files; readers and resumers ignore (and may delete) them.
TMP_PREFIX = ".tmp-"


def get_fs(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """``(filesystem, path-within-it)`` for a local path or URL."""
    fs, _, paths = fsspec.get_fs_token_paths(path)
    return fs, paths[0]


def join(base: str, *parts: str) -> str:
    """Join URL or path components with ``/`` (local paths stay local)."""
    if "://" in base:
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(base, *parts)


def exists(path: str) -> bool:
    fs, p = get_fs(path)
    return fs.exists(p)


def makedirs(path: str) -> None:
    fs, p = get_fs(path)
    fs.makedirs(p, exist_ok=True)


@contextlib.contextmanager
def open_input(path: str, mode: str = "rb") -> Iterator[IO[Any]]:
    with fsspec.open(path, mode) as f:
        yield f


def tmp_name(path: str) -> str:
    """A unique temporary sibling of ``path``."""
    head, tail = path.rsplit("/", 1) if "/" in path else ("", path)
    name = f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{tail}"
    return f"{head}/{name}" if head else name


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb") -> Iterator[IO[Any]]:
    """Write to a temporary sibling and rename it to ``path`` only if the block succeeds."""
    fs, p = get_fs(path)
    parent = p.rsplit("/", 1)[0] if "/" in p else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = tmp_name(p)
    try:
        with fs.open(tmp, mode) as f:
            yield f
            if hasattr(f, "flush"):
                f.flush()
            if hasattr(f, "fileno"):
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    os.fsync(f.fileno())
        fs.mv(tmp, p)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(tmp)
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_parquet(table: Any, path: str, **kwargs: Any) -> None:
    """Write a pyarrow Table to Parquet atomically."""
    import pyarrow.parquet as pq

    with atomic_open(path, "wb") as f:
        pq.write_table(table, f, **kwargs)


def sha256_file(path: str, chunk: int = 1 << 20) -> tuple[str, int]:
    """``(hex sha256, size in bytes)`` of a file, streamed."""
    h = hashlib.sha256()
    n = 0
    with open_input(path) as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
            n += len(block)
    return h.hexdigest(), n


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
