"""Deep Image Harmonization encoder-decoder, as improved by Sofiiuk et al. (WACV 2021).

``idih256`` (``improved_dih256``: depth 7, BatchNorm from block 2, image fusion) and plain
``dih256`` (BatchNorm everywhere, no fusion).  Written from the architecture notes in
``docs/harmonization.md``; the module tree reproduces the released key layout.

Input: ``image`` (B,3,H,W) ImageNet-normalised, ``mask`` (B,1,H,W) in 0..1; H and W
multiples of ``2**(depth-1) * 2`` (128 for depth 7).  Output (B,3,H,W) in the normalised
space.  With image fusion ``out = a * image + (1 - a) * to_rgb(f)``,
``a = sigmoid(3 * conv_attention(f))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from harmonization.networks.common import ConvBlock


class DeconvBlock(nn.Module):
    """``Sequential(ConvTranspose2d 4x4 s2, BatchNorm2d, ELU)`` under ``block``."""

    def __init__(self, in_channels: int, out_channels: int, padding: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, 4, 2, padding),
            nn.BatchNorm2d(out_channels),
            nn.ELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DIHEncoder(nn.Module):
    """Strided 4x4 ConvBlocks; channels double on even block indices (cap ``max_channels``).

    ``backbone_channels`` (backboned iDIH): widths of the backbone maps that are
    concatenated, encoder feature first, onto the inputs of blocks 2, 3, ... in list order
    (the original's ``'cat'`` connector: no parameters, only those blocks' convs widen).
    """

    def __init__(
        self,
        depth: int,
        ch: int,
        batchnorm_from: int,
        max_channels: int,
        backbone_channels: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.depth = depth
        self.backbone_channels = tuple(backbone_channels)

        def norm_for(i: int):
            return nn.BatchNorm2d if 0 <= batchnorm_from <= i else None

        self.block0 = ConvBlock(4, ch, norm=norm_for(0))
        self.block1 = ConvBlock(ch, ch, norm=norm_for(1))
        self.channels = [ch, ch]
        self.blocks_connected = nn.ModuleDict()
        cin = cout = ch
        for i in range(2, depth):
            if i % 2:
                cin = cout
            else:
                cin, cout = cout, min(2 * cout, max_channels)
            extra = self.backbone_channels[i - 2] if i - 2 < len(self.backbone_channels) else 0
            self.blocks_connected[f"block{i}"] = ConvBlock(
                cin + extra, cout, norm=norm_for(i), padding=int(i < depth - 1)
            )
            self.channels.append(cout)

    def forward(
        self, x: torch.Tensor, backbone_features: Sequence[torch.Tensor] = ()
    ) -> list[torch.Tensor]:
        """Return the block outputs deepest first; ``backbone_features`` enter blocks 2, 3, ..."""
        if len(backbone_features) != len(self.backbone_channels):
            raise ValueError(
                f"expected {len(self.backbone_channels)} backbone maps, "
                f"got {len(backbone_features)}"
            )
        outs = [self.block0(x)]
        outs.append(self.block1(outs[-1]))
        for i in range(2, self.depth):
            h = outs[-1]
            if i - 2 < len(backbone_features):
                h = torch.cat([h, backbone_features[i - 2]], dim=1)
            outs.append(self.blocks_connected[f"block{i}"](h))
        return outs[::-1]


class DIHDecoder(nn.Module):
    """Transposed-conv decoder; encoder skips are added after every block but the last."""

    def __init__(self, depth: int, encoder_channels: list[int], image_fusion: bool) -> None:
        super().__init__()
        channels = list(encoder_channels)
        cin = channels.pop()
        cout = cin
        self.deconv_blocks = nn.ModuleList()
        for d in range(depth):
            cout = channels.pop() if channels else cin // 2
            self.deconv_blocks.append(DeconvBlock(cin, cout, padding=0 if d == 0 else 1))
            cin = cout
        self.image_fusion = image_fusion
        if image_fusion:
            self.conv_attention = nn.Conv2d(cout, 1, kernel_size=1)
        self.to_rgb = nn.Conv2d(cout, 3, kernel_size=1)

    def forward(self, feats: list[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        x = feats[0]
        for block, skip in zip(self.deconv_blocks[:-1], feats[1:], strict=False):
            x = block(x) + skip
        x = self.deconv_blocks[-1](x)
        rgb = self.to_rgb(x)
        if not self.image_fusion:
            return rgb
        a = torch.sigmoid(3.0 * self.conv_attention(x))
        return a * image + (1.0 - a) * rgb


class DeepImageHarmonization(nn.Module):
    """DIH / iDIH: ``forward(image, mask) -> (B,3,H,W)`` in ImageNet-normalised space."""

    def __init__(
        self,
        depth: int = 7,
        *,
        batchnorm_from: int = 0,
        image_fusion: bool = False,
        ch: int = 64,
        max_channels: int = 512,
        backbone_channels: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.depth = depth
        self.encoder = DIHEncoder(depth, ch, batchnorm_from, max_channels, backbone_channels)
        self.decoder = DIHDecoder(depth, self.encoder.channels, image_fusion)

    def forward(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        backbone_features: Sequence[torch.Tensor] = (),
    ) -> torch.Tensor:
        feats = self.encoder(torch.cat([image, mask], dim=1), backbone_features)
        return self.decoder(feats, image)


def idih256() -> DeepImageHarmonization:
    """``improved_dih256``: depth 7, BatchNorm from block 2, image fusion."""
    return DeepImageHarmonization(7, batchnorm_from=2, image_fusion=True)


def dih256() -> DeepImageHarmonization:
    """Plain DIH, depth 7, BatchNorm in every block, no image fusion."""
    return DeepImageHarmonization(7, batchnorm_from=0, image_fusion=False)
