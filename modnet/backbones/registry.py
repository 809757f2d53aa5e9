"""The MODNet encoders by name: each backbone module registers its class with
``@BACKBONES.register(name)``; ``create_backbone(name, in_channels=3)`` builds one."""

from __future__ import annotations

from typing import Any

from torch import nn

from matdata.registry import Registry

BACKBONES: Registry[type[nn.Module]] = Registry(
    "MODNet backbone",
    modules=tuple(f"modnet.backbones.{m}" for m in ("mobilenetv2", "resnet18", "pvt")),
)


def create_backbone(name: str, **kwargs: Any) -> nn.Module:
    """A fresh backbone (random init); ``kwargs`` go to its constructor (``in_channels``)."""
    return BACKBONES.create(name, **kwargs)
