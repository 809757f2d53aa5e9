"""Encoders for MODNet: each maps an image to 5 features at strides 2, 4, 8, 16, 32.

A backbone class has ``name``, ``enc_channels`` (enc2x, enc4x, enc8x, enc16x, enc32x),
``forward(x) -> list of 5 tensors`` and a static ``convert_state_dict(state)`` that maps a
backbone-only checkpoint's keys to the module's own.
"""

from __future__ import annotations

from modnet.backbones.mobilenetv2 import MobileNetV2Backbone
from modnet.backbones.pvt import PVTBackbone
from modnet.backbones.registry import BACKBONES, create_backbone
from modnet.backbones.resnet18 import ResNet18Backbone

__all__ = [
    "BACKBONES",
    "MobileNetV2Backbone",
    "PVTBackbone",
    "ResNet18Backbone",
    "create_backbone",
]
