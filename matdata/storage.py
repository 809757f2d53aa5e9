"""Filesystem helpers over local paths and fsspec URLs: atomic writes, listing, hashing.

Every output matdata writes goes to a temporary name beside its target and is renamed into
place when complete, so a reader never sees a partial file, whatever kills the writer.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
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
                _fsync(f)
        fs.mv(tmp, p)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(tmp)
        raise


def _fsync(f: Any) -> None:
    """fsync where the file supports it; a real write error (disk full, I/O) is raised."""
    try:
        fd = f.fileno()
    except (OSError, ValueError, AttributeError):
        return  # not a real file (in-memory, remote): nothing to sync
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EROFS, errno.EBADF):
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


class HashingReader(io.RawIOBase):
    """A seekable read-only file wrapper that hashes the file's bytes in file order while
    they are read, so a reader verifies a file without reading it twice.

    Reads may jump around (a Parquet reader reads the footer first): bytes read ahead of
    the hashed position are kept (up to ``keep`` bytes) and folded into the hash when it
    reaches them.  :meth:`finish` reads whatever the consumer did not (the rest of a file
    left early, tar padding) and returns ``(hex sha256, size)``.
    """

    def __init__(self, f: IO[bytes], keep: int = 16 << 20):
        super().__init__()
        self._f = f
        self._pos = 0
        self._hashed = 0
        self._sha = hashlib.sha256()
        self._ahead: dict[int, bytes] = {}
        self._ahead_bytes = 0
        self._keep = keep

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = self._f.seek(offset, whence)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        """The next ``size`` bytes (all the rest if negative), straight from the file: one
        copy (``RawIOBase.read`` would add two more through :meth:`readinto`, which for a
        Parquet reader's multi-megabyte reads cost several times the hashing)."""
        data = self._f.read(-1 if size is None else size)
        self._absorb(self._pos, data)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        readinto = getattr(self._f, "readinto", None)
        if readinto is None:
            data = self._f.read(len(view))
            n = len(data)
            view[:n] = data
        else:
            n = readinto(view) or 0
        self._absorb(self._pos, view[:n])
        self._pos += n
        return n

    def _absorb(self, start: int, data: bytes | memoryview) -> None:
        end = start + len(data)
        if start <= self._hashed < end:
            self._sha.update(memoryview(data)[self._hashed - start :])
            self._hashed = end
            self._drain_ahead()
        elif start > self._hashed and self._ahead_bytes + len(data) <= self._keep and data:
            self._ahead[start] = data if isinstance(data, bytes) else bytes(data)
            self._ahead_bytes += len(data)

    def _drain_ahead(self) -> None:
        progressed = True
        while progressed and self._ahead:
            progressed = False
            for start in sorted(self._ahead):
                chunk = self._ahead[start]
                if start > self._hashed:
                    break
                del self._ahead[start]
                self._ahead_bytes -= len(chunk)
                if start + len(chunk) > self._hashed:
                    self._sha.update(memoryview(chunk)[self._hashed - start :])
                    self._hashed = start + len(chunk)
                    progressed = True

    def finish(self, chunk: int = 1 << 20) -> tuple[str, int]:
        """Hash the bytes not read yet (without decoding them); ``(hex sha256, size)``."""
        self._drain_ahead()
        while True:
            nxt = min(self._ahead, default=None)
            self._f.seek(self._hashed)
            want = chunk if nxt is None else min(chunk, nxt - self._hashed)
            data = self._f.read(want)
            if not data:
                break
            self._sha.update(data)
            self._hashed += len(data)
            self._drain_ahead()
        self._f.seek(self._pos)
        return self._sha.hexdigest(), self._hashed
