"""The harmonizer options of ``matdata harmonize`` / ``harmonize-eval`` as keyword
arguments of :func:`harmonization.load_harmonizer` (no torch imported here)."""

from __future__ import annotations

from typing import Any

from matdata.errors import ConfigError

#: Harmonizers that are no network (no input size, no weights).
CLASSICAL = ("reinhard", "none")


def harmonizer_params(
    model: str, strength: float | None = None, net_size: str | None = None
) -> dict[str, Any]:
    """``strength`` (reinhard only) and ``net_size`` (networks only; ``N`` or ``WxH`` on the
    command line, :mod:`matdata.sizes`) as the harmonizer's keyword arguments: a network
    takes ``size`` as ``N`` or ``(H, W)``."""
    params: dict[str, Any] = {}
    if strength is not None:
        if model != "reinhard":
            raise ConfigError("--strength applies to --model reinhard only")
        params["strength"] = strength
    if net_size is not None:
        if model in CLASSICAL:
            raise ConfigError("--net-size applies to networks only")
        from matdata.sizes import parse_wxh

        w, h = parse_wxh(net_size, "--net-size")  # W x H on the command line (matdata.sizes)
        params["size"] = w if w == h else (h, w)  # the networks take (H, W)
    return params


__all__ = ["CLASSICAL", "harmonizer_params"]
