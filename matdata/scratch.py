"""On-disk scratch tables for scans over millions of inputs (flat memory).

A scan that must join or de-duplicate every input of a source (pair images with mattes by
stem, reject a second item with the same id) would otherwise keep one Python object per
input for the whole scan.  These helpers keep that state in a private SQLite file in the
temporary directory instead: memory is bounded by SQLite's page cache (a few MB), and the
file is deleted on :meth:`ScratchDB.close`.

Text that a UTF-8 database cannot hold (file names with undecodable bytes, kept by Python
as lone surrogates) is stored as bytes via :func:`pack` and restored with :func:`unpack`;
blobs compare byte-wise, so ``ORDER BY`` on packed text sorts like the UTF-8 bytes.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from typing import Any

#: SQLite page cache per scratch database, in KiB (negative ``cache_size`` = KiB).
CACHE_KIB = 2048


def pack(text: str) -> bytes:
    """``text`` as bytes for a scratch table (lone surrogates kept, see module doc)."""
    return text.encode("utf-8", "surrogateescape")


def unpack(blob: bytes) -> str:
    """The text :func:`pack` stored."""
    return bytes(blob).decode("utf-8", "surrogateescape")


class ScratchDB:
    """A private SQLite database in a temporary file, deleted on :meth:`close`.

    Durability is off (no journal, no fsync): the file only lives for one scan.
    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, prefix: str = "matdata-scratch-") -> None:
        fd, self.path = tempfile.mkstemp(prefix=prefix, suffix=".sqlite")
        os.close(fd)
        self.con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.con.execute("PRAGMA journal_mode=OFF")
        self.con.execute("PRAGMA synchronous=OFF")
        self.con.execute("PRAGMA temp_store=FILE")
        self.con.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self.con.execute("BEGIN")

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.con.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        return self.con.executemany(sql, rows)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.con.close()
        with contextlib.suppress(OSError):
            os.remove(self.path)

    def __enter__(self) -> ScratchDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DiskSet:
    """An exact set of strings on disk: :meth:`add` says whether a key is new.

    Memory stays flat however many keys are added (see :class:`ScratchDB`).
    """

    def __init__(self) -> None:
        self._db = ScratchDB(prefix="matdata-ids-")
        self._db.execute("CREATE TABLE k (key BLOB PRIMARY KEY) WITHOUT ROWID")
        self.count = 0

    def add(self, key: str) -> bool:
        """Add ``key``; True when it was not in the set before."""
        cur = self._db.execute("INSERT OR IGNORE INTO k VALUES (?)", (pack(key),))
        new = cur.rowcount == 1
        self.count += new
        return new

    def __contains__(self, key: str) -> bool:
        row = self._db.execute("SELECT 1 FROM k WHERE key = ?", (pack(key),)).fetchone()
        return row is not None

    def __len__(self) -> int:
        return self.count

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> DiskSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["CACHE_KIB", "DiskSet", "ScratchDB", "pack", "unpack"]
