"""Starting matdata's local Dask cluster in-process gives the workers one thread per
library, and leaves the driver's own environment as it was (real LocalCluster)."""

from __future__ import annotations

import os

import pytest

from pipelines.cluster import dask_client, restore_environ

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _worker_env() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in THREAD_VARS}


@pytest.mark.parametrize("driver_omp", [None, "3"])
def test_local_cluster_leaves_the_driver_environment(
    monkeypatch: pytest.MonkeyPatch, driver_omp: str | None
) -> None:
    for k in (*THREAD_VARS, "PYTHONHASHSEED", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(k, raising=False)
    if driver_omp is not None:
        monkeypatch.setenv("OMP_NUM_THREADS", driver_omp)
    before = dict(os.environ)
    with dask_client(workers=1) as client:
        assert dict(os.environ) == before  # while the cluster runs, too
        got = client.run(_worker_env)
    assert dict(os.environ) == before
    assert list(got.values()) == [dict.fromkeys(THREAD_VARS, "1")]


def test_restore_environ_undoes_sets_changes_and_deletions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MATDATA_TEST_KEPT", "a")
    monkeypatch.setenv("MATDATA_TEST_GONE", "b")
    monkeypatch.delenv("MATDATA_TEST_NEW", raising=False)
    before = dict(os.environ)
    os.environ["MATDATA_TEST_KEPT"] = "changed"
    del os.environ["MATDATA_TEST_GONE"]
    os.environ["MATDATA_TEST_NEW"] = "c"
    restore_environ(before)
    assert dict(os.environ) == before
