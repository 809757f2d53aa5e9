"""Unit tests of the confinement, index-schema, hashing-reader and lock helpers."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matdata.errors import ConfigError, DatasetError
from matdata.index_schema import validate_index
from matdata.locks import LOCK_NAME, output_lock
from matdata.paths import check_split, confine, is_safe_relative
from matdata.storage import HashingReader


@pytest.mark.parametrize("split", ["train", "val", "test", "my_split-2", "a" * 64])
def test_valid_split_names(split: str) -> None:
    assert check_split(split, "here") == split


@pytest.mark.parametrize(
    "split", ["", "../x", "Train", "a/b", "a b", "x\x00", ".", "a" * 65, None, 5, "trаin"]
)
def test_invalid_split_names(split: object) -> None:
    with pytest.raises(DatasetError, match="here: split"):
        check_split(split, "here")


@pytest.mark.parametrize(
    "rel",
    ["/etc/hostname", "../x", "a/../../x", "a//b", "./a", "", "C:/x", "s3://b/k", "a\\..\\x",
     "a/\x00", None, 3],
)  # fmt: skip
def test_unsafe_relative_paths(tmp_path: Path, rel: object) -> None:
    assert not is_safe_relative(rel)
    with pytest.raises(DatasetError, match="where"):
        confine(str(tmp_path), rel, "where")


def test_confine_follows_symlinks_on_local_disks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "ok.bin").write_bytes(b"1")
    (root / "inside").symlink_to(root / "sub" / "ok.bin")
    (root / "out").symlink_to(tmp_path)
    assert confine(str(root), "sub/ok.bin", "w") == str(root / "sub" / "ok.bin")
    assert confine(str(root), "inside", "w") == str(root / "inside")
    with pytest.raises(DatasetError, match="resolves outside"):
        confine(str(root), "out/secret", "w")
    # on a remote filesystem the check is lexical
    assert confine("memory://bucket/ds", "parquet/a.parquet", "w").endswith("/parquet/a.parquet")
    with pytest.raises(DatasetError):
        confine("memory://bucket/ds", "../a.parquet", "w")


def _index() -> dict:
    shard = {"path": "parquet/train-00000.parquet", "split": "train", "format": "parquet",
             "index": 0, "samples": 3, "bytes": 10, "sha256": "0" * 64}  # fmt: skip
    return {"format": "matdata-dataset", "schema_version": 1, "formats": ["parquet"],
            "splits": {"train": {"samples": 3, "shards": 1}}, "samples": 3, "shards": [shard],
            "config": {}, "sources": {}, "rejects": {}}  # fmt: skip


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda ix: ix.update(shards="x"), "shards: 'x' is not of type 'array'"),
        (lambda ix: ix["shards"].append(None), "shards[1]: None is not of type 'object'"),
        (lambda ix: ix["shards"][0].pop("sha256"), "shards[0]: 'sha256' is a required"),
        (lambda ix: ix.update(samples="abc"), "samples: 'abc' is not of type 'integer'"),
        (lambda ix: ix["shards"][0].update(index=True), "shards[0].index"),
        (lambda ix: ix["shards"][0].update(sha256="zz"), "shards[0].sha256"),
        (lambda ix: ix["shards"][0].update(split="../x"), "shards[0].split"),
        (lambda ix: ix["splits"].update({"../x": {}}), "splits"),
        (lambda ix: ix.update(config=[]), "config"),
        (lambda ix: ix["shards"][0].update(path="/etc/hostname"), "shards[0].path"),
        (lambda ix: ix["shards"][0].update(path="a/../../b"), "shards[0].path"),
    ],
)
def test_index_schema_names_the_field(edit, field: str) -> None:
    validate_index(_index())
    index = _index()
    edit(index)
    with pytest.raises(DatasetError) as err:
        validate_index(index)
    assert str(err.value).startswith("dataset.json: ") and field in str(err.value)


class _Recording(io.BytesIO):
    """A file that counts the bytes read through it (a second read would show)."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.read_bytes = 0

    def read(self, n: int | None = -1) -> bytes:
        out = super().read(n)
        self.read_bytes += len(out)
        return out


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(0, 5000),
    reads=st.lists(st.tuples(st.integers(0, 5200), st.integers(0, 900)), max_size=12),
    stop=st.integers(0, 5200),
)
def test_hashing_reader_hashes_any_access_pattern_once(size, reads, stop) -> None:
    data = np.random.default_rng(size).bytes(size)
    f = _Recording(data)
    h = HashingReader(f)
    for offset, n in reads:  # random access first (a footer, say), then a partial stream
        h.seek(offset)
        assert h.read(n) == data[offset : offset + n]
    h.seek(0)
    assert h.read(stop) == data[:stop]
    digest, n = h.finish()
    assert (digest, n) == (hashlib.sha256(data).hexdigest(), size)
    # bytes the consumer read ahead are kept: the rest is read at most once more
    consumed = sum(len(data[o : o + k]) for o, k in reads) + min(stop, size)
    assert f.read_bytes <= consumed + size


def test_lock_refuses_a_live_holder_and_replaces_a_stale_one(tmp_path: Path) -> None:
    out = tmp_path / "out"
    warnings: list[str] = []
    with output_lock(str(out), "build") as mine:
        held = json.loads((out / LOCK_NAME).read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        assert held["token"] == mine["token"]
        refused = pytest.raises(ConfigError, match=r"being written by build \(pid \d+ on ")
        with refused, output_lock(str(out), "harmonize"):
            pass
    assert not (out / LOCK_NAME).exists()
    # a dead process on this host: stale, replaced with a warning
    (out / LOCK_NAME).write_text(json.dumps({"job": "qa", "host": socket.gethostname(),
                                             "pid": 2**22 + 12345, "started": 0}))  # fmt: skip
    with output_lock(str(out), "build", warn=warnings.append):
        pass
    assert len(warnings) == 1 and "stale lock of qa" in warnings[0]
    # another host cannot be checked: refused, with how to remove it
    (out / LOCK_NAME).write_text(json.dumps({"job": "build", "host": "elsewhere", "pid": 1}))
    with pytest.raises(ConfigError) as err, output_lock(str(out), "build"):
        pass
    assert "elsewhere" in str(err.value) and LOCK_NAME in err.value.one_line()
    # garbage in the lock file is not a live holder we can check either
    (out / LOCK_NAME).write_bytes(b"\xff\x00garbage")
    with pytest.raises(ConfigError, match="being written"), output_lock(str(out), "build"):
        pass
