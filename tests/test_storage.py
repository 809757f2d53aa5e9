"""Atomic writes: nothing visible unless complete, on local paths and fsspec URLs."""

from __future__ import annotations

import hashlib
import os

import pytest

from matdata.storage import TMP_PREFIX, atomic_open, atomic_write_bytes, sha256_file


def test_atomic_write_visible_only_when_complete(tmp_path):
    target = tmp_path / "sub" / "x.bin"
    with pytest.raises(RuntimeError), atomic_open(str(target)) as f:
        f.write(b"partial")
        raise RuntimeError("killed")
    assert not target.exists()
    assert not [p for p in (tmp_path / "sub").iterdir() if p.name.startswith(TMP_PREFIX)]
    atomic_write_bytes(str(target), b"whole")
    assert target.read_bytes() == b"whole"
    digest, size = sha256_file(str(target))
    assert size == 5 and digest == hashlib.sha256(b"whole").hexdigest()


def test_atomic_write_memory_url():
    import fsspec

    atomic_write_bytes("memory://bucket/dir/y.bin", b"abc")
    fs = fsspec.filesystem("memory")
    assert fs.cat("/bucket/dir/y.bin") == b"abc"
    assert [os.path.basename(p) for p in fs.ls("/bucket/dir", detail=False)] == ["y.bin"]
