"""Shared fixtures.  Test data is made here or kept small in tests/data/."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"

# Keep numerical libraries to one thread per process: the suite runs Dask workers and
# DataLoader workers side by side on small machines.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

# Property tests: random examples on a developer's machine (to find new cases), a fixed
# sequence under CI (a gate must not pass or fail by chance; found cases become examples).
try:
    from hypothesis import settings as _hsettings

    _hsettings.register_profile("ci", derandomize=True, database=None)
    if os.environ.get("CI"):
        _hsettings.load_profile("ci")
except ImportError:  # hypothesis is in the test extra; without it those tests fail to import
    pass


@pytest.fixture(autouse=True)
def _isolated_catalog(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own source catalog, never the developer's ./.matdata."""
    monkeypatch.setenv("MATDATA_CATALOG", str(tmp_path_factory.mktemp("catalog")))


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``demo_dataset(name="ds", **options)``: a demo dataset built by
    :func:`cli_run.build_demo` once per distinct options in this test session (each pytest
    worker has its own), in a directory called ``name``.  Tests only read it."""
    from cli_run import build_demo

    built: dict[str, Path] = {}

    def get(name: str = "ds", **options: object) -> Path:
        key = json.dumps({"name": name, **options}, sort_keys=True)
        if key not in built:
            built[key] = build_demo(tmp_path_factory.mktemp("demo") / name, **options)
        return built[key]

    return get
