"""The one compute-device resolver: ``auto | cpu | cuda | cuda:N`` -> a ``torch.device``.

Used by harmonization (:mod:`harmonization.device` re-exports it) and by modnet (predict,
evaluate, train).  torch is imported when a device is resolved, never at import time, so
core stays light (``matdata --help`` does not load torch).

``auto`` is resolved where the work runs (inside a Dask worker it picks that worker's GPU
when it has one).  Asking for CUDA on a machine without it is a :class:`DeviceError`,
never a silent fall-back to the CPU.  Under DDP a bare ``cuda`` means this process's GPU
(``local_rank``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from matdata.errors import DeviceError

if TYPE_CHECKING:
    import torch

_CUDA_RE = re.compile(r"^cuda(?::(\d+))?$")


def resolve_device(spec: Any = "auto", local_rank: int = 0) -> torch.device:
    """Turn a device spec (str, ``torch.device`` or None = auto) into a usable
    :class:`torch.device`; raise :class:`DeviceError` naming the problem."""
    import torch

    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    m = _CUDA_RE.match(text)
    if m is None:
        raise DeviceError(f"unknown device {spec!r}", hint="use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else "no visible GPU"
        raise DeviceError(
            f"device {text!r} asked for, but CUDA is not available here ({build})",
            hint="use --device cpu or --device auto",
        )
    index = int(m.group(1)) if m.group(1) is not None else local_rank
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(
            f"device {text!r} asked for, but this machine has {count} CUDA device(s)",
            hint=f"use cuda:0..cuda:{count - 1}",
        )
    return torch.device("cuda", index)
