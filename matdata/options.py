"""Parsers of the option strings the command line takes (``--size``, ``--shard-size``,
``KEY=VALUE`` source options): text in, typed values out, a bad value is a
:class:`~matdata.errors.ConfigError` naming the option.  Python callers may pass the typed
values directly (:class:`matdata.build_config.BuildConfig`, :func:`matdata.ingest.ingest`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from matdata.errors import ConfigError
from matdata.sizes import parse_wxh

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}

#: Bounds of ``--size`` sides (the CLI shows and checks the same ones).
SIZE_RANGE = (16, 8192)


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"512"`` -> (512, 512); ``"640x480"`` -> (640, 480) (W x H); ``"native"`` -> None.

    Each side must lie in :data:`SIZE_RANGE`."""
    if text is None:
        return None
    t = str(text).strip().lower()
    if t == "native":
        return None
    hint = "use a side like 512, WxH like 640x480, or native"
    try:
        w, h = parse_wxh(t, "--size")  # the one W x H convention (matdata.sizes)
    except ConfigError:
        raise ConfigError(f"bad --size {text!r}", hint=hint) from None
    if min(w, h) < 16:
        raise ConfigError(f"bad --size {text!r}", hint=hint)
    lo, hi = SIZE_RANGE
    if not (lo <= w <= hi and lo <= h <= hi):
        raise ConfigError(
            f"--size {text} is out of range: each side must be in {lo}..{hi}",
            hint=hint,
        )
    return w, h


def parse_bytes(text: str | int) -> int:
    """``"256MB"`` / ``"64 KiB"`` / ``"1e6"`` / ``1000`` -> bytes (decimal units, or KiB...)."""
    if isinstance(text, int):
        n = text
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(text).lower())
        if not m or m.group(2) not in _UNITS:
            raise ConfigError(
                f"bad --shard-size {text!r}", hint="use a size like 256MB, 1GB or 64MiB"
            )
        n = int(float(m.group(1)) * _UNITS[m.group(2)])
    if n < 1:
        raise ConfigError(f"--shard-size must be positive, got {text!r}")
    return n


def parse_options(pairs: list[str] | None, option: str = "--option") -> dict[str, Any]:
    """``["n_fg=6", "size=\"64x80\""]`` -> dict: the source options of ``ingest --option``
    and ``build --fg-option / --bg-option`` (``option`` names the flag in errors).  Values
    are parsed as JSON when they are JSON (numbers, lists, booleans), else kept as text."""
    out: dict[str, Any] = {}
    for p in pairs or []:
        k, sep, v = p.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"{option} {p!r} is not KEY=VALUE")
        try:
            out[k.strip()] = json.loads(v)
        except ValueError:
            out[k.strip()] = v
    return out


__all__ = ["SIZE_RANGE", "parse_bytes", "parse_options", "parse_size"]
