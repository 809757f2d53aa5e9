"""DeepLabV3+ on a dilated ResNet-34 (output stride 8): the backbone of ``deeplab_r34_idih256``.

Written from the architecture notes in ``tests/data/specs/README.md``; the module tree
reproduces the released key layout (``backbone.deeplab.*``: ``backbone``, ``head``,
``skip_project``, ``aspp`` in that order).  The mask features ``mf`` (64 channels at H/2)
are added after the stem's first conv; the two-channel mask is not used.

``forward(image (B,3,H,W), mf (B,64,H/2,W/2)) -> (B,256,H/4,W/4)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_bn_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class ResBlock(nn.Module):
    """ResNet v1b BasicBlock: 3x3 (stride, dilation ``d1``) and 3x3 (dilation ``d2``)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, d1: int = 1, d2: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, d1, dilation=d1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, d2, dilation=d2, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


def _layer(cin: int, cout: int, n: int, stride: int, first: tuple[int, int], rest: int):
    blocks = [ResBlock(cin, cout, stride, *first)]
    blocks += [ResBlock(cout, cout, 1, rest, rest) for _ in range(n - 1)]
    return nn.Sequential(*blocks)


class DilatedResNet34(nn.Module):
    """ResNet-34 v1b, layers 3 and 4 dilated (2, 4) instead of strided; returns (c1, c4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = _layer(64, 64, 3, 1, (1, 1), 1)
        self.layer2 = _layer(64, 128, 4, 2, (1, 1), 1)
        self.layer3 = _layer(128, 256, 6, 1, (1, 2), 2)
        self.layer4 = _layer(256, 512, 3, 1, (2, 4), 4)

    def forward(self, x: torch.Tensor, mf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        if mf.shape[1] < x.shape[1]:  # the original zero-pads the mask features' channels
            mf = F.pad(mf, [0, 0, 0, 0, 0, x.shape[1] - mf.shape[1]])
        x = self.maxpool(x + mf)
        c1 = self.layer1(x)
        c4 = self.layer4(self.layer3(self.layer2(c1)))
        return c1, c4


class ASPPPooling(nn.Module):
    """Image-level branch: global average, 1x1 conv, BN, ReLU, broadcast back (``gap``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.gap = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.gap(x), size=x.shape[-2:], mode="bilinear", align_corners=True)


class ASPP(nn.Module):
    """1x1 + three dilated 3x3 (12, 24, 36) + image pooling, concatenated and projected."""

    def __init__(self, cin: int, cout: int, rates: tuple[int, ...] = (12, 24, 36)) -> None:
        super().__init__()
        self.concurent = nn.ModuleList(
            [_conv_bn_relu(cin, cout, 1)]
            + [_conv_bn_relu(cin, cout, 3, r) for r in rates]
            + [ASPPPooling(cin, cout)]
        )
        self.project = nn.Sequential(
            nn.Conv2d(cout * (len(rates) + 2), cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Dropout(0.2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.concurent], dim=1))


class SeparableConv(nn.Module):
    """``body = Sequential(depthwise 3x3, pointwise 1x1, BN, ReLU)``, convs without bias."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DeepLabHead(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            SeparableConv(cin, mid), SeparableConv(mid, mid), nn.Conv2d(mid, cout, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class SkipProject(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.skip_project = _conv_bn_relu(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip_project(x)


class DeepLabV3Plus(nn.Module):
    """ASPP on c4, resized (align_corners=True) to c1 and concatenated with the projected
    c1 skip (``[aspp, skip]``), then the separable head: 256 channels at H/4."""

    def __init__(self, ch: int = 256) -> None:
        super().__init__()
        self.backbone = DilatedResNet34()
        self.head = DeepLabHead(ch + 32, ch, ch)
        self.skip_project = SkipProject(64, 32)
        self.aspp = ASPP(512, ch)

    def forward(self, image: torch.Tensor, mf: torch.Tensor) -> torch.Tensor:
        c1, c4 = self.backbone(image, mf)
        skip = self.skip_project(c1)
        x = self.aspp(c4)
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        return self.head(torch.cat([x, skip], dim=1))


class DeepLabBackbone(nn.Module):
    """``backbone.deeplab``: one 256-channel map for the iDIH encoder (mask unused)."""

    def __init__(self, ch: int = 256) -> None:
        super().__init__()
        self.deeplab = DeepLabV3Plus(ch)
        self.out_channels = [ch]

    def forward(
        self, image: torch.Tensor, mask2: torch.Tensor, mf: torch.Tensor
    ) -> list[torch.Tensor]:
        return [self.deeplab(image, mf)]
