"""Training checkpoints of :mod:`modnet.train`: the format tag, safe reading, RNG state."""

from __future__ import annotations

from typing import Any

import torch

from matdata.errors import CheckpointError

CKPT_FORMAT = "matdata-modnet-train"
CKPT_VERSION = 1


def read_checkpoint(path: str) -> dict[str, Any]:
    """Read a training checkpoint (a file, or a run directory -> its ``last.pt``) safely."""
    import pickle

    from matdata.checkpoints import check_torch_file
    from matdata.storage import exists, join, open_input

    if exists(join(path, "last.pt")):
        path = join(path, "last.pt")
    check_torch_file(path)
    try:
        with open_input(path) as f:
            ckpt = torch.load(f, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is not a readable training checkpoint: {str(exc)[:200]}"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise CheckpointError(
            f"{path} is not a `matdata train` checkpoint",
            hint="use --init to start from released or foreign weights",
        )
    return ckpt


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
