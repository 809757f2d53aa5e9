"""Dask clients: a local process cluster on loopback, or an existing scheduler."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator

from matdata.errors import ConfigError


def default_workers() -> int:
    """One worker per usable core."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def dask_client(
    workers: int | None = None,
    scheduler: str | None = None,
    threads_per_worker: int = 1,
    connect_timeout: float = 20.0,
) -> Iterator[distributed.Client]:  # noqa: F821 - distributed is imported lazily
    """Yield a ``distributed.Client``, closed (with its cluster) on exit.

    ``scheduler`` (``tcp://HOST:PORT``) connects to an existing cluster; otherwise a
    ``LocalCluster`` of ``workers`` processes (default: one per core) with
    ``threads_per_worker`` threads each is started on 127.0.0.1 without a dashboard.
    Worker processes get ``OMP_NUM_THREADS=1`` (one core per worker; the driver's own
    environment is left as it was, see :func:`restore_environ`) and start from a
    fork server that has imported :data:`PRELOAD` (fast start-up).  The client and a local
    scheduler keep :data:`LOG_LENGTH` messages per stream for debugging, not 1,000.
    """
    import dask
    from distributed import Client, LocalCluster

    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if scheduler:
        try:
            with dask.config.set({LOG_KEY: LOG_LENGTH}):
                client = Client(scheduler, timeout=connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"cannot reach Dask scheduler {scheduler}: {exc}",
                hint="check the address (tcp://HOST:PORT) and that `dask scheduler` runs",
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    n = workers or default_workers()
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    method = _start_method()
    settings = {
        "distributed.worker.multiprocessing-method": method,
        # distributed sets MALLOC_TRIM_THRESHOLD_=65536 for workers, which also freezes
        # glibc's mmap threshold: every image-sized array is then mmap'ed and page-faulted
        # afresh (measured 1.3-2x slower shard tasks).  Our tasks allocate the same sizes
        # over and over, so the default allocator keeps memory flat without it.
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
        # the statistical profiler walks every thread's stack each 10 ms holding the GIL,
        # stalling tasks that release and re-take it around each OpenCV/numpy call
        "distributed.worker.profile.enabled": False,
        LOG_KEY: LOG_LENGTH,
        # idle bookkeeping every 20 ms (event-loop tick), 100 ms (worker memory) and
        # 500 ms (system monitor) cost 0.045 CPU-s per wall-second for a 1-worker cluster,
        # 0.0095 at these intervals (benchmarks/build_e2e.py: ~0.5 ms per composite on a
        # quiet machine, several ms when a busy machine stretches the wall time)
        "distributed.admin.tick.interval": "1s",
        "distributed.admin.system-monitor.interval": "2s",
        "distributed.worker.memory.monitor-interval": "1s",
    }
    driver_env = dict(os.environ)
    try:
        with dask.config.set(settings), _deferred_sigint() as interrupted:
            cluster = _local_cluster(LocalCluster, n, threads_per_worker, env)
    finally:
        restore_environ(driver_env)
    if interrupted():  # Ctrl-C while the cluster started: stop now, cleanly
        cluster.close()
        restore_environ(driver_env)
        raise KeyboardInterrupt
    try:
        with dask.config.set({LOG_KEY: LOG_LENGTH}):
            client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()
        restore_environ(driver_env)  # (a nanny that restarted its worker set them again)


def restore_environ(before: dict[str, str]) -> None:
    """Put ``os.environ`` back to ``before``.

    The nannies of a ``LocalCluster`` run in this process, and each sets distributed's
    ``pre-spawn-environ`` variables (``OMP_NUM_THREADS=1`` and friends,
    ``PYTHONHASHSEED``) in ``os.environ`` just before it starts its worker process, so
    that the worker (or the fork server, started then) inherits them.  The driver must not
    keep them: :mod:`matdata.threads` plans torch threads from ``OMP_NUM_THREADS``, and
    processes the driver starts later inherit its environment."""
    for key in [k for k in os.environ if k not in before]:
        del os.environ[key]
    for key, value in before.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


#: distributed keeps the last ``distributed.admin.low-level-log-length`` (default 1,000)
#: messages of every comm stream and transitions of the scheduler, for debugging: task
#: specs and results included, so the driver's memory grew with the first 1,000 shards.
LOG_KEY, LOG_LENGTH = "distributed.admin.low-level-log-length", 100

#: Imported once by the fork server, so that worker processes start in a fraction of a
#: second instead of importing the stack again (spawn) - several seconds on a busy machine.
PRELOAD = (
    "pipelines._ignore_sigint",  # first: the fork server and workers leave Ctrl-C to the client
    "distributed",
    "numpy",
    "cv2",
    "PIL.Image",
    "fsspec",
    "pyarrow.parquet",
    "pandas",  # pyarrow imports it on the first Table.from_pylist (about a second)
    "PIL.JpegImagePlugin",
    "PIL.PngImagePlugin",
    "matdata.imageio",
    "matdata.builder",
    "matdata.compose",
    "matdata.foreground",
    "matdata.shards",
    "matdata.sources.base",
    "matdata.sources.folder",
    "matdata.sources.demo",
    "pipelines._one_thread",  # OpenCV's thread pool at one thread in every worker
)


@contextlib.contextmanager
def _deferred_sigint() -> Iterator[Callable[[], bool]]:
    """Hold a Ctrl-C back while the block runs (a cluster half-way through its start-up
    cannot be shut down cleanly); yields a function telling whether one came."""
    import signal
    import threading

    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        yield lambda: bool(got)
    finally:
        signal.signal(signal.SIGINT, previous)


def _start_method() -> str:
    """``forkserver`` with :data:`PRELOAD` where available (Linux, macOS), else ``spawn``.

    Never plain ``fork``: the client process runs threads (the event loop)."""
    import multiprocessing

    import dask
    from distributed.utils import get_mp_context

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return "spawn"
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        ctx = get_mp_context()  # lets distributed set its own preload list first (once)
    ctx.set_forkserver_preload(list(PRELOAD))  # no effect once the server runs: harmless
    return "forkserver"


def _local_cluster(cls, n: int, threads_per_worker: int, env: dict[str, str]):
    return cls(
        n_workers=n,
        threads_per_worker=threads_per_worker,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        # the scheduler's HTTP server (health, metrics) always starts: keep it on a free
        # loopback port instead of 8787, which another cluster may hold
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        silence_logs=logging.ERROR,
        env=env,
    )
