"""On-disk scratch tables (matdata.scratch): an exact set and text round trips."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from matdata.scratch import DiskSet, ScratchDB, pack, unpack


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(max_size=12), max_size=40))
def test_diskset_matches_a_python_set(keys: list[str]) -> None:
    seen: set[str] = set()
    with DiskSet() as ids:
        for k in keys:
            assert ids.add(k) == (k not in seen)
            seen.add(k)
            assert k in ids
        assert len(ids) == len(seen)
        assert ("\x00never-added" in ids) == ("\x00never-added" in seen)


def test_pack_keeps_undecodable_file_names() -> None:
    name = b"bad-\xff\xfe.jpg".decode("utf-8", "surrogateescape")  # a lone surrogate
    assert unpack(pack(name)) == name
    assert pack("a/b") < pack("a/c") < pack("a\u00e9")  # byte order = code point order


def test_scratch_file_is_removed_on_close() -> None:
    db = ScratchDB()
    db.execute("CREATE TABLE t (x BLOB)")
    db.execute("INSERT INTO t VALUES (?)", (pack("x"),))
    assert os.path.exists(db.path)
    db.close()
    assert not os.path.exists(db.path)
