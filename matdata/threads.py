"""CPU thread budget of the torch commands (train, predict, evaluate, adapt).

By default torch starts one compute thread per core in *every* process, OpenCV one per
core too, and DataLoader workers come on top: on a small machine that is several busy
threads per core, and training ran 3-5x slower than with ``OMP_NUM_THREADS=1``.  The
policy here splits the cores this process may use (its CPU affinity, shared by the
processes that ``torchrun`` started on the node):

* the cores are those of the CPU affinity, capped by a cgroup CPU quota when one is set
  (a container limited to 2 CPUs of a 64-core host gets a plan for 2, not 64);
* each DataLoader worker is one thread (torch and OpenCV set to 1 in the worker);
* the default number of loader workers is at most ``cores - 1`` (one core is left for the
  model), so 0 on a single core;
* the process's torch gets the remaining cores, at least 1; ``--threads`` overrides it,
  and so does ``OMP_NUM_THREADS`` when set (the user's explicit choice);
* OpenCV in the main process runs single-threaded (its work there is small);
* torch's inter-op pool gets 1 thread (the models run one op at a time).

Floating-point sums depend on the torch thread count, so a resumed run repeats an
uninterrupted one bit for bit only with the same count (give ``--threads`` to pin it).
The plan therefore depends on the machine (cores, quota) but not on how busy it is: the
load average is left out on purpose, so the same command on the same machine computes the
same numbers.  ``benchmarks/train_step.py --thread-plan`` measures the default against
every ``--threads`` under an emulated shared machine.

torch is imported only inside :func:`apply`.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass


def usable_cores() -> int:
    """Cores this process may run on (its affinity, capped by a cgroup CPU quota), >= 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        cores = min(cores, quota)
    return max(1, cores)


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> int | None:
    """CPUs allowed by this process's cgroup CPU quota, rounded up (None: no quota).

    cgroup v2: ``cpu.max`` = ``"QUOTA PERIOD"`` (``"max ..."``: none); v1:
    ``cpu/cpu.cfs_quota_us`` (-1: none) over ``cpu/cpu.cfs_period_us``.  Containers see
    their own cgroup at ``root``."""

    def read(path: str) -> str | None:
        try:
            with open(os.path.join(root, path)) as f:
                return f.read().strip()
        except (OSError, UnicodeDecodeError):
            return None

    pair: list[str] | None = None
    v2 = read("cpu.max")
    if v2 is not None:
        pair = v2.split()
    else:
        quota, period = read("cpu/cpu.cfs_quota_us"), read("cpu/cpu.cfs_period_us")
        if quota is not None and period is not None:
            pair = [quota, period]
    if pair is None or len(pair) != 2:
        return None
    try:
        q, p = int(pair[0]), int(pair[1])
    except ValueError:  # "max": no quota
        return None
    if q <= 0 or p <= 0:
        return None
    return max(1, math.ceil(q / p))


def local_processes() -> int:
    """Processes sharing this node's cores (``torchrun`` sets ``LOCAL_WORLD_SIZE``)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def _env_threads() -> int | None:
    try:
        n = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return None
    return n if n >= 1 else None


@dataclass(frozen=True)
class ThreadPlan:
    """How many threads each part of one process gets."""

    cores: int  # cores of this process's share
    torch: int  # torch intra-op threads in the main process
    loader_workers: int  # DataLoader worker processes (one thread each)

    def describe(self) -> str:
        return (
            f"{self.cores} core(s): torch {self.torch} thread(s), "
            f"{self.loader_workers} loader worker(s), OpenCV 1"
        )


def plan(threads: int | None = None, loader_workers: int | None = None) -> ThreadPlan:
    """The thread plan for ``threads`` (torch) and ``loader_workers`` requested by the user
    (None: chosen here, see the module docstring)."""
    share = max(1, usable_cores() // local_processes())
    workers = min(2, share - 1) if loader_workers is None else loader_workers
    workers = max(0, workers)
    env = _env_threads()
    torch_threads = threads or env or max(1, share - workers)
    return ThreadPlan(cores=share, torch=torch_threads, loader_workers=workers)


def apply(p: ThreadPlan) -> None:
    """Set torch's and OpenCV's thread pools of this process to the plan."""
    import torch

    torch.set_num_threads(p.torch)
    # RuntimeError: already set, or parallel work has started (keep it)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - OpenCV is a dependency
        pass
