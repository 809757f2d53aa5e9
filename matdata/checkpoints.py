"""Safe, strict loading of released weights into matdata's own network implementations.

Released checkpoints are plain state_dicts; they are read with
``torch.load(..., weights_only=True)`` and never unpickled otherwise.  Common wrappers are
unwrapped (``{"state_dict": ...}``, ``{"model": ...}``, ``{"net": ...}``), a ``module.``
prefix (saved from ``nn.DataParallel``) is stripped, and the result must match the model
exactly: missing, unexpected and mis-shaped keys are named in a
:class:`~matdata.errors.CheckpointError`, never silently ignored.

torch is imported inside the functions: core stays importable without it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from matdata.errors import CheckpointError

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "net_G", "params")

StateDict = dict[str, Any]  # str -> torch.Tensor
FilterFn = Callable[[StateDict], StateDict]


def file_sha256(path: str) -> str:
    from matdata.storage import sha256_file

    return sha256_file(path)[0]


def is_torch_file(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) can start a ``torch.save`` file: a zip
    archive (torch >= 1.6) or a pickle of protocol 2+ (the legacy format)."""
    return head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80)


def check_torch_file(path: str) -> None:
    """Raise :class:`CheckpointError` "not a checkpoint" unless ``path`` starts like a
    ``torch.save`` file (random bytes, an image, a text file...)."""
    from matdata.storage import open_input

    try:
        with open_input(path) as f:
            head = f.read(8)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a directory, not a checkpoint file") from None
    if not is_torch_file(head):
        raise CheckpointError(
            f"{path} is not a checkpoint (not a file written by torch.save)",
            hint="pass a .pt/.pth/.ckpt weights file",
        )


def read_state_dict(path: str) -> StateDict:
    """Read a checkpoint file safely and return its flat ``{name: tensor}`` state_dict."""
    import pickle

    import torch

    from matdata.storage import open_input

    check_torch_file(path)
    try:
        with open_input(path) as f:
            obj = torch.load(f, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors; refusing to unpickle it",
            hint="save a plain state_dict: torch.save(model.state_dict(), path)",
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is not a readable torch file (truncated or corrupt): "
            f"{str(exc).splitlines()[0][:200]}"
        ) from exc
    return unwrap_state_dict(obj, path)


def unwrap_state_dict(obj: Any, name: str = "<checkpoint>") -> StateDict:
    """Return the tensor mapping inside ``obj`` (unwrapping known wrapper keys)."""
    import torch

    for _ in range(3):
        if isinstance(obj, Mapping) and obj and all(torch.is_tensor(v) for v in obj.values()):
            break
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in WRAPPER_KEYS if k in obj), None)
            if inner is not None:
                obj = inner
                continue
        raise CheckpointError(f"{name} does not contain a state_dict of tensors")
    else:
        raise CheckpointError(f"{name} does not contain a state_dict of tensors")
    return dict(obj)


def strip_prefix(state: StateDict, prefix: str = "module.") -> StateDict:
    """Remove ``prefix`` from every key that has it (``nn.DataParallel`` checkpoints)."""
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}


def check_compatible(model: Any, state: StateDict, name: str = "<checkpoint>") -> None:
    """Raise :class:`CheckpointError` naming every missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
            if keys:
                shown = ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
                parts.append(f"{len(keys)} {label}: {shown}")
        raise CheckpointError(
            f"{name} does not fit {type(model).__name__}: " + "; ".join(parts),
            hint="is it the checkpoint of this model?",
        )


def load_weights(
    model: Any,
    source: str | Mapping[str, Any],
    *,
    filter_fn: FilterFn | None = None,
    name: str | None = None,
) -> Any:
    """Load a checkpoint (path or state_dict) into ``model`` strictly; return ``model``.

    ``filter_fn`` converts a third-party layout to the model's (it must leave native
    layouts unchanged); a ``module.`` prefix is always stripped first.
    """
    label = name or (source if isinstance(source, str) else "<state_dict>")
    state = read_state_dict(source) if isinstance(source, str) else unwrap_state_dict(source, label)
    state = strip_prefix(state)
    if filter_fn is not None:
        state = filter_fn(state)
    check_compatible(model, state, label)
    model.load_state_dict(state, strict=True)
    return model


def state_dict_sha256(state: Mapping[str, Any]) -> str:
    """A content hash of a state_dict (names, shapes, dtypes and values), for provenance."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()
