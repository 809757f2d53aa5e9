"""Strict JSON: undefined numbers become null at any depth; the text is standard JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from matdata.jsonsafe import dumps, finite_or_none


def _strict_loads(text: str):
    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_nested_nan_and_infinities_become_null() -> None:
    obj = {
        "a": math.nan,
        "b": [1.0, math.inf, {"c": -math.inf, "d": (2, math.nan)}],
        "e": {"f": {"g": np.float64("nan"), "h": np.float64(0.5)}},
        "ok": [0.0, -1.5, 3, "NaN", None, True],
    }
    text = dumps(obj, sort_keys=True)
    back = _strict_loads(text)
    assert back == {
        "a": None,
        "b": [1.0, None, {"c": None, "d": [2, None]}],
        "e": {"f": {"g": None, "h": 0.5}},
        "ok": [0.0, -1.5, 3, "NaN", None, True],
    }
    assert "NaN" not in text.replace('"NaN"', "") and "Infinity" not in text


def test_finite_values_are_kept_exactly() -> None:
    values = [0.1, 1e-300, -2.5e300, 7]
    assert finite_or_none(values) == values
    assert dumps({"x": values}) == json.dumps({"x": values})


def test_kwargs_reach_json_and_nan_elsewhere_is_refused() -> None:
    assert dumps({"b": 1, "a": [1]}, sort_keys=True, indent=1) == '{\n "a": [\n  1\n ],\n "b": 1\n}'

    class Odd:
        def __str__(self) -> str:
            return "odd"

    assert dumps({"o": Odd()}, default=str) == '{"o": "odd"}'
    with pytest.raises(ValueError):  # a NaN made by ``default`` is not let through
        dumps({"o": Odd()}, default=lambda _o: math.nan)
