"""Speed options of a training run: autocast precision, channels_last, ``torch.compile`` and
fused optimizers (``matdata train --precision/--channels-last/--compile/--fused``).

How ``--precision`` and ``--amp/--no-amp`` combine (:func:`combine_precision`):

* ``--precision P`` alone: autocast in ``P`` (``fp32`` = no autocast); ``amp`` is recorded
  as ``P != "fp32"``.
* ``--amp`` / ``--no-amp`` alone (today's behaviour): ``--amp`` = fp16 on CUDA and fp32 on
  the CPU, ``--no-amp`` = fp32.
* both: they must agree (``--amp --precision bf16`` is fine; ``--amp --precision fp32`` and
  ``--no-amp --precision bf16`` are refused).

``fp16`` uses a GradScaler and needs CUDA; ``bf16`` needs no scaler and runs on the CPU too.
None of these options is locked for a resumed run (they change speed and rounding, not what
the run computes); a change is printed, and a GradScaler state is restored only when both the
checkpoint and the resumed run use fp16.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch

from matdata.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "bf16")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}

#: The torch.compile backend (tests and benchmarks may pick another; default inductor).
COMPILE_BACKEND_ENV = "MATDATA_COMPILE_BACKEND"

#: The options this module adds to a run (not locked on resume; a change is printed).
SPEED_FIELDS = ("precision", "amp", "channels_last", "compile", "fused")


def combine_precision(overrides: dict[str, Any]) -> None:
    """Make ``precision`` and ``amp`` of the (non-None) ``overrides`` consistent, in place;
    :class:`ConfigError` when both are given and contradict each other."""
    p, amp = overrides.get("precision"), overrides.get("amp")
    if p is not None and p not in PRECISIONS:
        raise ConfigError(f"unknown --precision {p!r}", hint="fp32, fp16 or bf16")
    if p is not None and amp is not None and bool(amp) != (p != "fp32"):
        flag = "--amp" if amp else "--no-amp"
        raise ConfigError(
            f"{flag} contradicts --precision {p}",
            hint="give one of them (--precision wins over --amp; --amp = fp16 on CUDA)",
        )
    if p is not None:
        overrides["amp"] = p != "fp32"
    elif amp is not None:
        overrides["precision"] = None  # --amp/--no-amp alone: the precision follows it


def resolve_precision(precision: str | None, amp: bool, device: torch.device) -> str:
    """The autocast precision a run uses on ``device`` (see the module docstring)."""
    if precision is None:
        return "fp16" if amp and device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown --precision {precision!r}", hint="fp32, fp16 or bf16")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"--precision fp16 needs a CUDA device, the run is on {device.type}",
            hint="use --precision bf16 (or fp32) on the CPU",
        )
    return precision


def autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """The autocast context of ``precision`` on ``device`` (disabled for fp32)."""
    dtype = _DTYPES.get(precision, torch.float32)
    return torch.autocast(device.type, dtype=dtype, enabled=precision != "fp32")


def make_optimizer(
    name: str,
    params: list[torch.nn.Parameter],
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    fused: bool | None,
    device: torch.device,
) -> tuple[torch.optim.Optimizer, bool]:
    """AdamW or SGD (+ momentum); fused kernels when ``fused`` (None: on CUDA only).
    Returns the optimizer and whether it is fused; an explicit ``fused=True`` that torch
    cannot honour is a :class:`ConfigError`."""
    want = device.type == "cuda" if fused is None else bool(fused)
    kwargs: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
    cls: type[torch.optim.Optimizer] = torch.optim.AdamW
    if name == "sgd":
        cls, kwargs["momentum"] = torch.optim.SGD, momentum
    if want:
        try:
            return cls(params, fused=True, **kwargs), True
        except (RuntimeError, TypeError, ValueError) as exc:
            if fused:
                reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
                raise ConfigError(
                    f"--fused: torch has no fused {name} for {device.type} here ({reason})",
                    hint="drop --fused",
                ) from exc
    return cls(params, **kwargs), False


def compile_module(
    net: torch.nn.Module, note: Callable[[str], None]
) -> tuple[torch.nn.Module, bool]:
    """``torch.compile(net)`` with the backend of ``$MATDATA_COMPILE_BACKEND`` (inductor by
    default); on failure one ``note`` line and ``net`` itself.  Compilation itself happens
    at the first call: :func:`compile_failed` words that failure."""
    backend = os.environ.get(COMPILE_BACKEND_ENV, "inductor")
    try:
        return torch.compile(net, backend=backend), True
    except Exception as exc:  # noqa: BLE001 - any failure: fall back to eager, said once
        note(compile_failed(exc))
        return net, False


def compile_failed(exc: BaseException) -> str:
    """The one warning line of a ``--compile`` that fell back to eager execution."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    reason = f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
    return f"--compile: torch.compile failed ({reason}); training continues without it"


def is_compile_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from torch.compile (Dynamo / a backend), not from the model."""
    try:
        from torch._dynamo.exc import TorchDynamoException
    except ImportError:  # pragma: no cover - torch without Dynamo
        return False
    return isinstance(exc, TorchDynamoException)


def to_channels_last(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch with its image in ``torch.channels_last`` (NHWC) memory order."""
    out = dict(batch)
    out["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    return out
