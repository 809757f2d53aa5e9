"""Compute-device selection: ``auto | cpu | cuda | cuda:N`` (see :mod:`matdata.device`,
the one resolver harmonization and modnet share)."""

from __future__ import annotations

from matdata.device import resolve_device

__all__ = ["resolve_device"]
