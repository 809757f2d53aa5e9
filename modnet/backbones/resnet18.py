"""ResNet-18 encoder (He et al. 2016) with torchvision's key layout under ``model.``.

So ImageNet checkpoints saved from ``torchvision.models.resnet18`` (keys ``conv1.weight``,
``layer1.0.conv1.weight``, ``layer2.0.downsample.0.weight``...) load into it by path.
Features: enc2x = stem conv+BN+ReLU (64 ch, stride 2), enc4x = layer1 after the max-pool
(64), enc8x = layer2 (128), enc16x = layer3 (256), enc32x = layer4 (512).
"""

from __future__ import annotations

import torch
from torch import nn

from modnet.backbones.registry import BACKBONES


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN with an identity (or 1x1 conv+BN ``downsample``) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """The convolutional trunk of ResNet-18 (no ``fc``)."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = (64, 128, 256, 512)
        cin = 64
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(
                self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w))
            )
            cin = w


@BACKBONES.register("resnet18")
class ResNet18Backbone(nn.Module):
    """``forward(x) -> [enc2x, enc4x, enc8x, enc16x, enc32x]``."""

    name = "resnet18"
    enc_channels = (64, 64, 128, 256, 512)

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.model = ResNet18(in_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        m = self.model
        enc2x = m.relu(m.bn1(m.conv1(x)))
        enc4x = m.layer1(m.maxpool(enc2x))
        enc8x = m.layer2(enc4x)
        enc16x = m.layer3(enc8x)
        enc32x = m.layer4(enc16x)
        return [enc2x, enc4x, enc8x, enc16x, enc32x]

    @staticmethod
    def convert_state_dict(state: dict) -> dict:
        """torchvision layout (``conv1.*``, ``layerN.*``; ``fc.*`` dropped) -> ``model.*``."""
        out = {}
        for k, v in state.items():
            if k.startswith("backbone."):
                k = k[len("backbone.") :]
            if k.startswith("model."):
                k = k[len("model.") :]
            if k.startswith("fc."):
                continue
            out["model." + k] = v
        return out
