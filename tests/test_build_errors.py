"""Errors that are bugs stay bugs: a bad input is a reject, a coding error fails the shard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import matdata.foreground
from matdata.build_config import BuildConfig
from matdata.builder import generate_records, prepare_build
from matdata.rejects import Reject


def _task(tmp_path: Path):
    cfg = BuildConfig(
        fg="demo", bg="demo", out=str(tmp_path / "ds"), per_fg=1, size=(32, 32),
        fg_options={"n_fg": 2},
    )  # fmt: skip
    return prepare_build(cfg).tasks[0]


@pytest.mark.parametrize("exc", [OSError("disk"), ValueError("bad pixels"), TypeError("odd")])
def test_an_input_error_is_a_reject(tmp_path: Path, monkeypatch, exc: Exception) -> None:
    def broken(rgb: np.ndarray, alpha: np.ndarray, method: str) -> np.ndarray:
        raise exc

    monkeypatch.setattr(matdata.foreground, "estimate_foreground", broken)
    out = list(generate_records(_task(tmp_path)))
    assert out and all(isinstance(x, Reject) for x in out)
    assert type(exc).__name__ in out[0].detail


@pytest.mark.parametrize("exc", [NameError("nme"), AssertionError("x"), ImportError("cv3")])
def test_a_coding_error_fails_the_shard(tmp_path: Path, monkeypatch, exc: Exception) -> None:
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
