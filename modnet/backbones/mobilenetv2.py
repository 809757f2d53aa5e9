"""MobileNetV2 encoder with the key layout of MODNet's released weights.

``self.model.features.0..18`` (stem, 17 inverted residual blocks, last 1x1 conv to 1280),
width 1.0, expansion 6, ReLU6, BatchNorm, convolutions without bias.  Features are taken
after indices 1, 3, 6, 13 and 18: strides 2, 4, 8, 16, 32 with 16, 24, 32, 96, 1280 channels.
"""

from __future__ import annotations

import torch
from torch import nn

from modnet.backbones.registry import BACKBONES

# (expansion t, output channels c, repeats n, first stride s)
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
# Feature index after which each of enc2x, enc4x, enc8x, enc16x, enc32x is taken.
TAPS = (1, 3, 6, 13, 18)


def _conv_bn_relu6(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> list:
    pad = (kernel - 1) // 2
    return [
        nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    ]


class InvertedResidual(nn.Module):
    """``conv`` = [1x1 expand, BN, ReLU6]? + [3x3 depthwise, BN, ReLU6] + [1x1 project, BN].

    The identity shortcut is added when ``stride == 1`` and ``cin == cout``.
    """

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = round(cin * expansion)
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += _conv_bn_relu6(cin, hidden, 1, 1)
        layers += _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden)
        layers += [nn.Conv2d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """The feature extractor only (no classifier): ``features`` as a ``Sequential``."""

    def __init__(self, in_channels: int = 3, last_channels: int = 1280):
        super().__init__()
        cin = 32
        layers: list[nn.Module] = [nn.Sequential(*_conv_bn_relu6(in_channels, cin, 3, 2))]
        for t, c, n, s in SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(nn.Sequential(*_conv_bn_relu6(cin, last_channels, 1, 1)))
        self.features = nn.Sequential(*layers)


@BACKBONES.register("mobilenetv2")
class MobileNetV2Backbone(nn.Module):
    """MODNet's ``backbone``: ``forward(x) -> [enc2x, enc4x, enc8x, enc16x, enc32x]``."""

    name = "mobilenetv2"
    enc_channels = (16, 24, 32, 96, 1280)

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.model = MobileNetV2(in_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        start = 0
        for tap in TAPS:
            for i in range(start, tap + 1):
                x = self.model.features[i](x)
            feats.append(x)
            start = tap + 1
        return feats

    @staticmethod
    def convert_state_dict(state: dict) -> dict:
        """Map a backbone-only checkpoint to this module's keys (``model.features.*``).

        Accepts ``features.*`` (a bare MobileNetV2, e.g. MODNet's human-segmentation
        weights), ``model.features.*`` and ``backbone.model.features.*``; a classifier head
        (``classifier.*``) is dropped because the backbone has none.
        """
        out = {}
        for k, v in state.items():
            if k.startswith("classifier.") or k.startswith("model.classifier."):
                continue
            if k.startswith("backbone."):
                k = k[len("backbone.") :]
            if k.startswith("features."):
                k = "model." + k
            out[k] = v
        return out
