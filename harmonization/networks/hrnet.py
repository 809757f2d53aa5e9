"""HRNetV2 with an OCR head, as the mask-aware backbone of the backboned iDIH models.

Written from the architecture notes in ``tests/data/specs/README.md`` ("HRNet and DeepLab
iDIH"); the module tree reproduces the released key layout (``backbone.hrnet.*``), so the
released ``hrnet*_idih256.pth`` files load strictly.

* Stem: two 3x3 stride-2 convs (H/4); the mask features ``mf`` (64 channels at H/2) are
  added after the first one.
* ``layer1``: Bottlenecks to 256 channels; then three multi-resolution stages of 2, 3 and
  4 branches (widths ``w, 2w, 4w, 8w``), each module running BasicBlocks per branch and
  fusing every output ``i`` as ``relu(sum_j T_ij(x_j))``, ``j = 0..B-1`` in order.
* Head: the four branches resized to H/4 and concatenated (``15 w`` channels), a 3x3 conv
  to 128, then object-contextual representations (OCR) with two soft "objects" gathered
  from the foreground / background mask.  Output: one 128-channel map at H/4.

Every bilinear resize uses ``align_corners=True``; BatchNorm stays a separate eval-mode op
(no folding) so float32 results follow the original's order of operations.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harmonization.networks.common import ConvBlock


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """``Sequential(conv (no bias), BatchNorm2d[, ReLU])`` with "same" padding."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _upsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=True)


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm, identity residual, final ReLU (keys conv1/bn1/conv2/bn2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 expansion) with BatchNorm and a residual (``downsample`` on
    the first block of ``layer1``)."""

    def __init__(self, cin: int, planes: int, downsample: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = _conv_bn(cin, planes * 4, 1, relu=False) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


def _fuse_path(widths: Sequence[int], i: int, j: int) -> nn.Module:
    """The map ``T_ij`` that brings branch ``j`` to branch ``i``'s width and resolution
    (resizing up, for ``j > i``, happens in :meth:`HRModule.forward`)."""
    if j == i:
        return nn.Identity()
    if j > i:
        return _conv_bn(widths[j], widths[i], 1, relu=False)
    steps = []
    for k in range(i - j):
        last = k == i - j - 1
        steps.append(_conv_bn(widths[j], widths[i] if last else widths[j], 3, 2, relu=not last))
    return nn.Sequential(*steps)


class HRModule(nn.Module):
    """One multi-resolution module: BasicBlocks per branch, then the all-to-all fusion."""

    def __init__(self, widths: Sequence[int], num_blocks: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c) for _ in range(num_blocks))) for c in widths
        )
        n = len(widths)
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse_path(widths, i, j) for j in range(n)) for i in range(n)
        )
        self.relu = nn.ReLU()

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        out = []
        for i, paths in enumerate(self.fuse_layers):
            y = paths[0](xs[0])  # j = 0 is never coarser than i: no resize
            for j in range(1, len(xs)):
                t = paths[j](xs[j])
                if j > i:
                    t = _upsample_to(t, xs[i])
                y = y + t
            out.append(self.relu(y))
        return out


class ObjectContextBlock(nn.Module):
    """Attention of every pixel over the object vectors (``key_channels`` 64)."""

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()

        def bn_relu(c: int) -> nn.Sequential:
            return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())

        def proj(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), bn_relu(cout))

        self.key_channels = key_channels
        # f_pixel / f_object: two 1x1 projections (keys .0, .1.0, .2, .3.0)
        self.f_pixel = nn.Sequential(
            *proj(channels, key_channels), *proj(key_channels, key_channels)
        )
        self.f_object = nn.Sequential(
            *proj(channels, key_channels), *proj(key_channels, key_channels)
        )
        self.f_down = proj(channels, key_channels)
        self.f_up = proj(key_channels, channels)

    def forward(self, x: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        kc = self.key_channels
        query = self.f_pixel(x).view(b, kc, -1).permute(0, 2, 1)  # (B, HW, kc)
        key = self.f_object(objects).view(b, kc, -1)  # (B, kc, K)
        value = self.f_down(objects).view(b, kc, -1).permute(0, 2, 1)  # (B, K, kc)
        sim = torch.matmul(query, key)
        sim = (kc**-0.5) * sim
        sim = F.softmax(sim, dim=-1)
        context = torch.matmul(sim, value).permute(0, 2, 1).contiguous().view(b, kc, h, w)
        return self.f_up(context)


class OCRDistributionHead(nn.Module):
    """Object context, then ``1x1 conv(cat([context, feats]))`` + BN + ReLU (+ Dropout2d)."""

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        self.object_context_block = ObjectContextBlock(channels, key_channels)
        self.conv_bn_dropout = nn.Sequential(
            nn.Conv2d(2 * channels, channels, 1, bias=False),
            nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU()),
            nn.Dropout2d(0.05),
        )

    def forward(self, feats: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
        context = self.object_context_block(feats, objects)
        return self.conv_bn_dropout(torch.cat([context, feats], dim=1))


def gather_objects(feats: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Object vectors (B, C, K, 1): ``feats`` (B,C,h,w) averaged under ``softmax`` over all
    positions of each of the K channels of ``probs`` (B,K,h,w).

    The softmax and the sum over the h*w positions run in float64 (where the device has it)
    and the result is rounded back once.  The same order of operations as the original,
    but its float32 rounding here is the deep HRNets' dominant error: this one sum of ~6e3
    terms of size ~3e3 feeds every pixel's attention, and its kernel-dependent rounding
    moved hrnet32's output by up to 0.6 of the spec tolerance (docs/harmonization.md).
    """
    b, k = probs.shape[:2]
    acc = feats.dtype if feats.device.type == "mps" else torch.float64
    p = F.softmax(probs.reshape(b, k, -1).to(acc), dim=2)  # (B, K, hw)
    f = feats.reshape(b, feats.shape[1], -1).permute(0, 2, 1).to(acc)  # (B, hw, C)
    return torch.matmul(p, f).permute(0, 2, 1).unsqueeze(3).to(feats.dtype)


class HighResolutionNet(nn.Module):
    """HRNetV2-W``width`` (``small``: the W18-small layout) with OCR (``ocr_width`` 64).

    ``forward(image (B,3,H,W), mask2 (B,2,H,W), mf (B,64,H/2,W/2)) -> (B,128,H/4,W/4)``.
    """

    def __init__(self, width: int = 18, small: bool = False, ocr_width: int = 64) -> None:
        super().__init__()
        n_blocks = 2 if small else 4
        modules = (1, 3, 2) if small else (1, 4, 3)
        widths = [width * 2**i for i in range(4)]
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(
            *(Bottleneck(64 if b == 0 else 256, 64, downsample=b == 0) for b in range(n_blocks))
        )
        self.transition1 = nn.ModuleList(
            [_conv_bn(256, widths[0], 3), nn.Sequential(_conv_bn(256, widths[1], 3, 2))]
        )
        self.stage2 = nn.Sequential(*(HRModule(widths[:2], n_blocks) for _ in range(modules[0])))
        self.transition2 = nn.ModuleList(
            [nn.Identity(), nn.Identity(), nn.Sequential(_conv_bn(widths[1], widths[2], 3, 2))]
        )
        self.stage3 = nn.Sequential(*(HRModule(widths[:3], n_blocks) for _ in range(modules[1])))
        self.transition3 = nn.ModuleList(
            [
                *(nn.Identity() for _ in range(3)),
                nn.Sequential(_conv_bn(widths[2], widths[3], 3, 2)),
            ]
        )
        self.stage4 = nn.Sequential(*(HRModule(widths, n_blocks) for _ in range(modules[2])))
        mid = 2 * ocr_width
        self.conv3x3_ocr = nn.Sequential(
            nn.Conv2d(sum(widths), mid, 3, 1, 1, bias=True), nn.BatchNorm2d(mid), nn.ReLU()
        )
        self.ocr_distri_head = OCRDistributionHead(mid, ocr_width)
        self.out_channels = mid

    def features(self, image: torch.Tensor, mf: torch.Tensor) -> torch.Tensor:
        """The concatenated HRNetV2 representation (B, 15w, H/4, W/4)."""
        x = self.relu(self.bn1(self.conv1(image)))
        x = x + mf
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        xs = [t(x) for t in self.transition1]
        ys = self.stage2(xs)
        xs = [ys[0], ys[1], self.transition2[2](ys[-1])]
        ys = self.stage3(xs)
        xs = [ys[0], ys[1], ys[2], self.transition3[3](ys[-1])]
        ys = self.stage4(xs)
        x0 = ys[0]
        return torch.cat([x0, *(_upsample_to(y, x0) for y in ys[1:])], dim=1)

    def forward(self, image: torch.Tensor, mask2: torch.Tensor, mf: torch.Tensor) -> torch.Tensor:
        feats = self.conv3x3_ocr(self.features(image, mf))
        probs = F.interpolate(mask2, size=feats.shape[-2:], mode="bilinear", align_corners=True)
        objects = gather_objects(feats, probs)
        return self.ocr_distri_head(feats, objects)


class MaxPoolPyramid(nn.Module):
    """The v2p pyramid: ``r = reduce_conv(x)``, ``r_k = maxpool2(r_{k-1})``,
    outputs ``convs.k(r_k)`` at H/4, H/8, H/16, H/32 (ConvBlocks: conv+bias, BN, ELU)."""

    def __init__(self, cin: int, channels: int, depth: int) -> None:
        super().__init__()
        self.reduce_conv = ConvBlock(
            cin, channels, kernel_size=1, stride=1, padding=0, norm=nn.BatchNorm2d
        )
        self.convs = nn.ModuleList(
            ConvBlock(channels, channels, kernel_size=3, stride=1, padding=1, norm=nn.BatchNorm2d)
            for _ in range(depth)
        )
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        r = self.reduce_conv(x)
        outs = []
        for k, conv in enumerate(self.convs):
            if k:
                r = self.pool(r)
            outs.append(conv(r))
        return outs


class HRNetBackbone(nn.Module):
    """``backbone.hrnet`` (+ ``backbone.downsize`` for the pyramid variant): a list of maps
    for the iDIH encoder (one 128-channel map, or four 256-channel maps)."""

    def __init__(self, width: int, small: bool, pyramid_channels: int = 0) -> None:
        super().__init__()
        self.hrnet = HighResolutionNet(width, small)
        if pyramid_channels > 0:
            self.downsize = MaxPoolPyramid(self.hrnet.out_channels, pyramid_channels, 4)
            self.out_channels = [pyramid_channels] * 4
        else:
            self.downsize = None
            self.out_channels = [self.hrnet.out_channels]

    def forward(
        self, image: torch.Tensor, mask2: torch.Tensor, mf: torch.Tensor
    ) -> list[torch.Tensor]:
        out = self.hrnet(image, mask2, mf)
        return [out] if self.downsize is None else self.downsize(out)
