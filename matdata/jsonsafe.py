"""Strict JSON for results that may hold undefined numbers.

JSON has no NaN or infinity; Python's :mod:`json` writes them as the non-standard
``NaN`` / ``Infinity`` tokens that other readers (browsers, ``jq``, DuckDB) refuse.
Metrics can be undefined (an empty unknown region gives NaN; identical images an infinite
PSNR), so every JSON report goes through :func:`dumps`, which writes them as ``null``.
(The training logs ``metrics.jsonl`` keep ``NaN`` on purpose: one record per line, read
back with :func:`json.loads`.)
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, +-inf) replaced by None, recursively
    through dicts, lists and tuples (tuples become lists, as JSON has no tuples)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """:func:`json.dumps` of :func:`finite_or_none` ``(obj)``, refusing any other NaN
    (``allow_nan=False``); ``kwargs`` go to :func:`json.dumps` (``indent``, ``sort_keys``,
    ``default``...)."""
    return json.dumps(finite_or_none(obj), allow_nan=False, **kwargs)


__all__ = ["dumps", "finite_or_none"]
