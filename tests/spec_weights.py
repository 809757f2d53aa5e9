"""Deterministic weights for the weight-compatibility specs (tests/data/specs/README.md).

Shared by the MODNet and harmonization tests: for every key of a manifest, a value drawn
from ``numpy.random.default_rng([seed, crc32(canonical_key)])`` as the spec defines, so a
faithful implementation reproduces the reference vectors exactly (up to float32 rounding).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def manifest_entries(manifest_json_path: str | Path) -> list[tuple[str, tuple[int, ...], str]]:
    """``[(key, shape, dtype), ...]`` of a ``NAME.state_dict.json`` manifest, in order."""
    data = json.loads(Path(manifest_json_path).read_text())
    return [(k, tuple(int(s) for s in shape), dtype) for k, shape, dtype in data["state_dict"]]


def deterministic_value(canonical: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """The spec's value for one key (``canonical`` already renamed), float32 or int64."""
    if canonical.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.int64)
    rng = np.random.default_rng([seed, zlib.crc32(canonical.encode())])
    if canonical.endswith("running_var"):
        value = 1 + 0.1 * np.abs(rng.standard_normal(shape))
    elif canonical.endswith("running_mean"):
        value = 0.1 * rng.standard_normal(shape)
    elif len(shape) >= 2:
        value = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
    elif canonical.endswith(".weight"):
        value = 1 + 0.1 * rng.standard_normal(shape)
    else:
        value = 0.1 * rng.standard_normal(shape)
    return np.asarray(value, dtype=np.float32)


def deterministic_state_dict(
    manifest_json_path: str | Path,
    seed: int = 0,
    rename: Callable[[str], str] | None = None,
) -> dict[str, torch.Tensor]:
    """Tensors keyed as in the manifest; ``rename`` maps a key to its canonical name.

    The leading ``module.`` is always dropped before ``rename`` is applied.
    """
    out: dict[str, torch.Tensor] = {}
    for key, shape, _dtype in manifest_entries(manifest_json_path):
        canonical = key[len("module.") :] if key.startswith("module.") else key
        if rename is not None:
            canonical = rename(canonical)
        out[key] = torch.from_numpy(deterministic_value(canonical, shape, seed))
    return out


def modnet_rename(key: str) -> str:
    """MODNet's shared backbone: ``lr_branch.backbone.*`` is the same module as ``backbone.*``."""
    prefix = "lr_branch.backbone."
    return "backbone." + key[len(prefix) :] if key.startswith(prefix) else key
