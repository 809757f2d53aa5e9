"""Errors that are bugs stay bugs: a bad input is a reject, a coding error fails the shard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import matdata.foreground
from matdata.build_config import BuildConfig
from matdata.builder import generate_records, prepare_build
from matdata.errors import ImageDecodeError, ItemError, SourceError
from matdata.rejects import Reject


def _task(tmp_path: Path):
    cfg = BuildConfig(
        fg="demo", bg="demo", out=str(tmp_path / "ds"), per_fg=1, size=(32, 32),
        fg_options={"n_fg": 2},
    )  # fmt: skip
    return prepare_build(cfg).tasks[0]


class _Failing:
    """A real source whose foreground loads raise ``exc`` (backgrounds load as usual)."""

    def __init__(self, inner, exc: Exception) -> None:
        self.inner, self.exc = inner, exc

    def load_foreground(self, item):
        raise self.exc

    def load_background(self, item):
        return self.inner.load_background(item)


def _sources(task, exc: Exception) -> dict:
    made = {name: ref.make() for name, ref in task.sources.items()}
    fg_names = set(task.fg_names.values())
    return {n: (_Failing(s, exc) if n in fg_names else s) for n, s in made.items()}


@pytest.mark.parametrize(
    "exc",
    [
        ImageDecodeError("a.png", "truncated", "cut short"),
        ItemError("a", "empty_matte", "the alpha channel is all zero"),
        SourceError("cannot read a.jpg"),
    ],
)
def test_an_input_error_is_a_reject(tmp_path: Path, exc: Exception) -> None:
    task = _task(tmp_path)
    out = list(generate_records(task, _sources(task, exc)))
    assert out and all(isinstance(x, Reject) for x in out)
    assert len(out) == len({p[0] for p in task.pairs})  # each foreground rejected once
    assert out[0].reason == exc.reason


@pytest.mark.parametrize(
    "exc", [ValueError("bad shape"), TypeError("odd"), KeyError("k"), NameError("nme")]
)
def test_a_coding_error_in_a_source_fails_the_shard(tmp_path: Path, exc: Exception) -> None:
    task = _task(tmp_path)
    with pytest.raises(type(exc)):
        list(generate_records(task, _sources(task, exc)))


@pytest.mark.parametrize("exc", [ValueError("shape"), AssertionError("x"), OSError("?")])
def test_a_coding_error_in_estimation_fails_the_shard(
    tmp_path: Path, monkeypatch, exc: Exception
) -> None:
    def buggy(rgb: np.ndarray, alpha: np.ndarray, method: str) -> np.ndarray:
        raise exc

    monkeypatch.setattr(matdata.foreground, "estimate_foreground", buggy)
    with pytest.raises(type(exc)):
        list(generate_records(_task(tmp_path)))


def test_a_plan_warning_is_printed_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "matdata", "build", "--fg", "demo", "--bg", "demo"]
    cmd += ["--fg-option", "n_fg=2", "--per-fg", "25", "--size", "32", "--workers", "1"]
    cmd += ["--out", str(tmp_path / "ds"), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout + proc.stderr
    assert text.count("drawn with replacement") == 1, text
