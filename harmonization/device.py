"""Compute-device selection: ``auto | cpu | cuda | cuda:N``.

``auto`` is resolved where the work runs (inside a Dask worker it picks that worker's GPU
when it has one).  Asking for CUDA on a machine without it is a :class:`DeviceError`,
never a silent fall-back to the CPU.
"""

from __future__ import annotations

import re

import torch

from matdata.errors import DeviceError

_CUDA_RE = re.compile(r"^cuda(?::(\d+))?$")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn a device spec into a usable :class:`torch.device`; raise :class:`DeviceError`."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
    index = int(m.group(1) or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(
            f"device {text!r} asked for, but this machine has {count} CUDA device(s)",
            hint=f"use cuda:0..cuda:{count - 1}",
        )
    return torch.device("cuda", index)
