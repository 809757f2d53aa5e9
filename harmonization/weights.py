"""Deterministic stand-in weights (the recipe the spec vectors were made with).

No released weights ship with matdata; tests, benchmarks and examples use these instead.
For every state_dict key, independently of order::

    canonical = key without a leading "module."
    rng = numpy.random.default_rng([seed, zlib.crc32(canonical.encode())])
    *.num_batches_tracked -> 0 (int64 scalar)
    *.running_var         -> 1 + 0.1 |N(0,1)|
    *.running_mean        -> 0.1 N(0,1)
    ndim >= 2             -> N(0,1) / sqrt(prod(shape[1:]))
    *.weight (1-D)        -> 1 + 0.1 N(0,1)
    other                 -> 0.1 N(0,1)

cast to float32.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence

import numpy as np
import torch


def canonical_key(key: str) -> str:
    """The key the recipe seeds from (``module.`` prefix dropped)."""
    return key[len("module.") :] if key.startswith("module.") else key


def deterministic_tensor(key: str, shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    """One tensor of the recipe for ``key`` with ``shape``."""
    if key.endswith("num_batches_tracked"):
        return torch.tensor(0, dtype=torch.int64)
    shape = tuple(int(s) for s in shape)
    rng = np.random.default_rng([seed, zlib.crc32(canonical_key(key).encode())])
    if key.endswith("running_var"):
        value = 1 + 0.1 * np.abs(rng.standard_normal(shape))
    elif key.endswith("running_mean"):
        value = 0.1 * rng.standard_normal(shape)
    elif len(shape) >= 2:
        value = rng.standard_normal(shape) / math.sqrt(math.prod(shape[1:]))
    elif key.endswith(".weight"):
        value = 1 + 0.1 * rng.standard_normal(shape)
    else:
        value = 0.1 * rng.standard_normal(shape)
    return torch.from_numpy(np.asarray(value, dtype=np.float32))


def deterministic_state_dict(
    keys_shapes: Iterable[tuple[str, Sequence[int]]] | torch.nn.Module, seed: int = 0
) -> dict[str, torch.Tensor]:
    """The recipe's state_dict for a model (or ``(key, shape)`` pairs, e.g. a manifest)."""
    if isinstance(keys_shapes, torch.nn.Module):
        keys_shapes = [(k, tuple(v.shape)) for k, v in keys_shapes.state_dict().items()]
    return {k: deterministic_tensor(k, s, seed) for k, s in keys_shapes}
