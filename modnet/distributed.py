"""Process group and device of a training process (torchrun / DDP), and the per-step
all-reduce the trainer uses to agree on the loss and on stopping."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_kind: str) -> DistInfo:
    """Join the process group described by torchrun's environment (no-op when single)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, False)
    backend = "nccl" if device_kind == "cuda" else "gloo"
    if device_kind == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local, True)


def pick_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a device (CUDA rank-local under DDP):
    :func:`matdata.device.resolve_device`, the resolver harmonization uses too."""
    from matdata.device import resolve_device

    return resolve_device(spec, local_rank)


def _reduce_step(total: float, stop: bool, device: torch.device) -> tuple[float, bool]:
    """Mean loss over ranks, and whether any rank was asked to stop (all stop together)."""
    import torch.distributed as dist

    t = torch.tensor([total, float(stop)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t[0]) / dist.get_world_size(), bool(t[1] > 0)
