"""SSAM U-Net harmonizer with spatial-separated attention, improved by Sofiiuk et al. (2021).

``issam256`` (``improved_ssam256``): depth 4, 32 base channels, BatchNorm from block 2,
attention on the last up block, image fusion.  Module names reproduce the released key
layout.  Input ``image`` (B,3,H,W) ImageNet-normalised, ``mask`` (B,1,H,W) in 0..1, H and W
multiples of 8; output (B,3,H,W) in the normalised space.  Every bilinear resize uses
``align_corners=True`` as in the released code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from harmonization.networks.common import ConvBlock


def _relu() -> nn.Module:
    return nn.ReLU(inplace=True)


class DoubleConv(nn.Module):
    """Two 3x3 stride-1 ConvBlocks (ReLU) under ``block.0`` / ``block.1``."""

    def __init__(self, cin: int, cout: int, norm) -> None:
        super().__init__()
        kw = {"kernel_size": 3, "stride": 1, "padding": 1, "norm": norm, "activation": _relu}
        self.block = nn.Sequential(ConvBlock(cin, cout, **kw), ConvBlock(cout, cout, **kw))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DownBlock(nn.Module):
    """Double conv, then 2x2 max-pool; returns ``(skip, pooled)``."""

    def __init__(self, cin: int, cout: int, norm, pool: bool) -> None:
        super().__init__()
        self.convs = DoubleConv(cin, cout, norm)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.convs(x)
        return skip, (F.max_pool2d(skip, 2, 2) if self.pool else skip)


class ChannelGate(nn.Module):
    """Channel attention: ``x * sigmoid(MLP(cat(avgpool(x), maxpool(x))))``, (B,C,H,W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = max(channels // 16, 8)
        self.attention_transform = nn.Sequential(
            nn.Linear(2 * channels, mid),
            nn.ReLU(inplace=True),
            nn.Linear(mid, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return x * self.attention_transform(pooled)[:, :, None, None]


class GaussianBlur(nn.Module):
    """Fixed single-channel Gaussian blur; its kernel is the buffer ``weight`` (1,1,k,k)."""

    def __init__(self, kernel_size: int = 7, sigma: float = 1.0) -> None:
        super().__init__()
        r = torch.arange(kernel_size, dtype=torch.float32) - (kernel_size - 1) / 2
        g = torch.exp(-(r**2) / (2 * sigma**2))
        k = g[:, None] * g[None, :]
        self.register_buffer("weight", (k / k.sum())[None, None])
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, padding=self.padding)


class SpatialSeparatedAttention(nn.Module):
    """``m * (learn(fg_gate(x)) + mix_gate(x)) + (1 - m) * bg_gate(x)``, m the blurred mask."""

    def __init__(self, channels: int, mid_k: float = 0.5) -> None:
        super().__init__()
        self.background_gate = ChannelGate(channels)
        self.foreground_gate = ChannelGate(channels)
        self.mix_gate = ChannelGate(channels)
        mid = int(math.floor(mid_k * channels))
        kw = {
            "kernel_size": 3,
            "stride": 1,
            "padding": 1,
            "norm": nn.BatchNorm2d,
            "activation": _relu,
            "bias": False,
        }
        self.learning_block = nn.Sequential(
            ConvBlock(channels, mid, **kw), ConvBlock(mid, channels, **kw)
        )
        self.mask_blurring = GaussianBlur(7, 1.0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = F.interpolate(mask, size=x.shape[-2:], mode="bilinear", align_corners=True)
        m = self.mask_blurring(m)
        fg = self.learning_block(self.foreground_gate(x))
        return m * (fg + self.mix_gate(x)) + (1 - m) * self.background_gate(x)


class UpBlock(nn.Module):
    """Upsample x2 + 3x3 conv, concat with the encoder skip (skip first), double conv."""

    def __init__(self, cin: int, cskip: int, cout: int, attention: bool) -> None:
        super().__init__()
        self.upconv = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            ConvBlock(cin, cout, kernel_size=3, stride=1, padding=1, activation=_relu),
        )
        self.convs = DoubleConv(cskip + cout, cout, nn.BatchNorm2d)
        self.attention = SpatialSeparatedAttention(cskip + cout) if attention else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = torch.cat([skip, self.upconv(x)], dim=1)
        if self.attention is not None:
            x = self.attention(x, mask)
        return self.convs(x)


class SSAMEncoder(nn.Module):
    def __init__(self, depth: int, ch: int, batchnorm_from: int, max_channels: int) -> None:
        super().__init__()

        def norm_for(i: int):
            return nn.BatchNorm2d if 0 <= batchnorm_from <= i else None

        self.depth = depth
        self.block0 = DownBlock(4, ch, norm_for(0), pool=True)
        cout = min(2 * ch, max_channels)
        self.block1 = DownBlock(ch, cout, norm_for(1), pool=True)
        self.channels = [ch, cout]
        self.blocks_connected = nn.ModuleDict()
        for i in range(2, depth):
            cin, cout = cout, min(2 * cout, max_channels)
            self.blocks_connected[f"block{i}"] = DownBlock(
                cin, cout, norm_for(i), pool=i < depth - 1
            )
            self.channels.append(cout)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Skips deepest first."""
        skips = []
        s, x = self.block0(x)
        skips.append(s)
        s, x = self.block1(x)
        skips.append(s)
        for i in range(2, self.depth):
            s, x = self.blocks_connected[f"block{i}"](x)
            skips.append(s)
        return skips[::-1]


class SSAMDecoder(nn.Module):
    def __init__(
        self, depth: int, encoder_channels: list[int], attend_from: int, image_fusion: bool
    ) -> None:
        super().__init__()
        channels = list(encoder_channels)
        cin = channels.pop()
        cout = cin
        self.up_blocks = nn.ModuleList()
        for d in range(depth - 1):
            cout = channels.pop() if channels else cin // 2
            self.up_blocks.append(UpBlock(cin, cout, cout, attention=0 <= attend_from <= d))
            cin = cout
        self.image_fusion = image_fusion
        if image_fusion:
            self.conv_attention = nn.Conv2d(cout, 1, kernel_size=1)
        self.to_rgb = nn.Conv2d(cout, 3, kernel_size=1)

    def forward(self, skips: list[torch.Tensor], image: torch.Tensor, mask: torch.Tensor):
        x = skips[0]
        for block, skip in zip(self.up_blocks, skips[1:], strict=True):
            x = block(x, skip, mask)
        rgb = self.to_rgb(x)
        if not self.image_fusion:
            return rgb
        a = torch.sigmoid(3.0 * self.conv_attention(x))
        return a * image + (1.0 - a) * rgb


class SSAMImageHarmonization(nn.Module):
    """``forward(image, mask) -> (B,3,H,W)`` in ImageNet-normalised space."""

    def __init__(
        self,
        depth: int = 4,
        *,
        ch: int = 32,
        batchnorm_from: int = 2,
        attend_from: int = 2,
        image_fusion: bool = True,
        max_channels: int = 256,
    ) -> None:
        super().__init__()
        self.encoder = SSAMEncoder(depth, ch, batchnorm_from, max_channels)
        self.decoder = SSAMDecoder(depth, self.encoder.channels, attend_from, image_fusion)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        skips = self.encoder(torch.cat([image, mask], dim=1))
        return self.decoder(skips, image, mask)


def issam256() -> SSAMImageHarmonization:
    """``improved_ssam256``: depth 4, ch 32, attention on the last up block, image fusion."""
    return SSAMImageHarmonization(4, ch=32, batchnorm_from=2, attend_from=2, image_fusion=True)
