"""MODNet for trimap-free portrait matting: model, losses, data, trainer, inference.

torch is imported here (this package is only imported lazily by ``matdata.cli``).
"""

from __future__ import annotations

from modnet import losses
from modnet.backbones import BACKBONES
from modnet.model import (
    MODNet,
    build_modnet,
    infer_config,
    load_backbone_weights,
    load_modnet_weights,
)

__all__ = [
    "BACKBONES",
    "MODNet",
    "build_modnet",
    "infer_config",
    "load_backbone_weights",
    "load_modnet_weights",
    "losses",
]
