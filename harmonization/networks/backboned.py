"""The backboned iDIH models of Sofiiuk et al. (WACV 2021): iDIH helped by a mask-aware
semantic backbone (HRNet + OCR, or DeepLabV3+ on ResNet-34).

Written from the architecture notes in ``tests/data/specs/README.md``; children in key
order are ``backbone``, ``model`` (the ``idih256`` network with widened encoder blocks) and
``mask_conv``, so the released files load strictly.

``forward(image, mask)``: ``image`` (B,3,H,W) ImageNet-normalised, ``mask`` (B,1,H,W) in
0..1, H and W multiples of 128 and at least 256 (the released inference resizes to
256x256 and does not pad).  Returns (B,3,H,W) in the normalised space, like ``idih256``:

    mf    = |scale| * conv3x3_s2(mask)                    (64 channels at H/2)
    feats = backbone(image, cat([mask, 1 - mask]), mf)    (maps at H/4, H/8, ...)
    out   = iDIH(image, mask), with feats[k] concatenated onto the input of block 2 + k
"""

from __future__ import annotations

import torch
from torch import nn

from harmonization.networks.deeplab import DeepLabBackbone
from harmonization.networks.dih import DeepImageHarmonization
from harmonization.networks.hrnet import HRNetBackbone


class ScaleLayer(nn.Module):
    """Multiplies by ``|scale|`` (a learned scalar)."""

    def __init__(self, init_value: float = 0.1) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((1,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.abs(self.scale)


class BackbonedIDIH(nn.Module):
    """iDIH256 with a backbone whose maps are concatenated into its encoder."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.model = DeepImageHarmonization(
            7, batchnorm_from=2, image_fusion=True, backbone_channels=backbone.out_channels
        )
        self.mask_conv = nn.Sequential(nn.Conv2d(1, 64, 3, 2, 1, bias=True), ScaleLayer())

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask2 = torch.cat([mask, 1.0 - mask], dim=1)
        mf = self.mask_conv(mask2[:, :1])
        feats = self.backbone(image, mask2, mf)
        return self.model(image, mask, feats)


def hrnet18s_idih256() -> BackbonedIDIH:
    """HRNet-W18-small + OCR into iDIH block 2 (released as ``hrnet18s_idih256.pth``)."""
    return BackbonedIDIH(HRNetBackbone(18, small=True))


def hrnet18_idih256() -> BackbonedIDIH:
    """HRNet-W18 + OCR into iDIH block 2 (``hrnet18_idih256.pth``)."""
    return BackbonedIDIH(HRNetBackbone(18, small=False))


def hrnet18_v2p_idih256() -> BackbonedIDIH:
    """HRNet-W18 + OCR + a 4-level max-pool pyramid into blocks 2-5
    (``hrnet18_v2p_idih256.pth``)."""
    return BackbonedIDIH(HRNetBackbone(18, small=False, pyramid_channels=256))


def hrnet32_idih256() -> BackbonedIDIH:
    """HRNet-W32 + OCR into iDIH block 2 (``hrnet32_idih256.pth``)."""
    return BackbonedIDIH(HRNetBackbone(32, small=False))


def deeplab_r34_idih256() -> BackbonedIDIH:
    """DeepLabV3+ (dilated ResNet-34) into iDIH block 2 (released as ``deeplab_idih256.pth``)."""
    return BackbonedIDIH(DeepLabBackbone())
