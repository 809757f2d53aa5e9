"""MODNet (Ke et al., AAAI 2022): trimap-free portrait matting, written from the paper's
architecture and the layout of its released weights.

``MODNet.forward(image, inference) -> (semantic, detail, matte)``; ``image`` is
(B,3,H,W) in [-1, 1] with H, W multiples of 32; ``semantic`` is (B,1,H/16,W/16),
``detail`` and ``matte`` are (B,1,H,W), all after a sigmoid.  As in the official model,
``semantic`` and ``detail`` are ``None`` when ``inference=True`` (only the matte is computed).

Three branches share one encoder (registered twice, as ``backbone`` and
``lr_branch.backbone``, so the released state_dicts list its keys twice):

- LR (semantic): SE block on enc32x, x2 up, 5x5 conv to enc16x width, x2 up, 5x5 conv to
  enc8x width (``lr8x``), 3x3 stride-2 conv to 1 channel.
- HR (detail): enc2x/enc4x projected to ``hr`` channels, fused with the downsampled image
  and ``lr8x``; widths ``hr+3``, ``2hr``, ``2hr + enc8x + 3``...
- F (fusion): ``lr8x`` upsampled and merged with the HR features and the image.

Every resize is bilinear with ``align_corners=False`` by scale factor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modnet.backbones import BACKBONES, create_backbone


def _resize(x: torch.Tensor, scale: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


class IBNorm(nn.Module):
    """BatchNorm (affine) on the first ``int(C/2)`` channels, InstanceNorm on the rest."""

    def __init__(self, channels: int):
        super().__init__()
        self.bnorm_channels = int(channels / 2)
        self.bnorm = nn.BatchNorm2d(self.bnorm_channels, affine=True)
        self.inorm = nn.InstanceNorm2d(channels - self.bnorm_channels, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.bnorm_channels
        return torch.cat([self.bnorm(x[:, :n]), self.inorm(x[:, n:])], dim=1)


class Conv2dIBNormRelu(nn.Module):
    """``layers = Sequential(conv (bias), [IBNorm], [ReLU])``."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        padding: int = 0,
        with_ibn: bool = True,
        with_relu: bool = True,
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, padding, bias=True)]
        if with_ibn:
            layers.append(IBNorm(cout))
        if with_relu:
            layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SEBlock(nn.Module):
    """Squeeze-and-excitation: channel weights from the average-pooled vector."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        w = self.fc(self.pool(x).view(b, c)).view(b, c, 1, 1)
        return x * w


class LRBranch(nn.Module):
    """Low-resolution (semantic) branch; owns a second reference to the backbone."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        ch = backbone.enc_channels
        self.backbone = backbone
        self.se_block = SEBlock(ch[4], reduction=4)
        self.conv_lr16x = Conv2dIBNormRelu(ch[4], ch[3], 5, 1, 2)
        self.conv_lr8x = Conv2dIBNormRelu(ch[3], ch[2], 5, 1, 2)
        self.conv_lr = Conv2dIBNormRelu(ch[2], 1, 3, 2, 1, with_ibn=False, with_relu=False)

    def forward(self, img: torch.Tensor, inference: bool):
        enc2x, enc4x, _enc8x, _enc16x, enc32x = self.backbone(img)
        x = self.se_block(enc32x)
        lr16x = self.conv_lr16x(_resize(x, 2))
        lr8x = self.conv_lr8x(_resize(lr16x, 2))
        semantic = None if inference else torch.sigmoid(self.conv_lr(lr8x))
        return semantic, lr8x, enc2x, enc4x


class HRBranch(nn.Module):
    """High-resolution (detail) branch."""

    def __init__(self, hr: int, enc_channels: tuple[int, ...]):
        super().__init__()
        c2, c4, c8 = enc_channels[:3]
        self.tohr_enc2x = Conv2dIBNormRelu(c2, hr, 1, 1, 0)
        self.conv_enc2x = Conv2dIBNormRelu(hr + 3, hr, 3, 2, 1)
        self.tohr_enc4x = Conv2dIBNormRelu(c4, hr, 1, 1, 0)
        self.conv_enc4x = Conv2dIBNormRelu(2 * hr, 2 * hr, 3, 1, 1)
        self.conv_hr4x = nn.Sequential(
            Conv2dIBNormRelu(2 * hr + c8 + 3, 2 * hr, 3, 1, 1),
            Conv2dIBNormRelu(2 * hr, 2 * hr, 3, 1, 1),
            Conv2dIBNormRelu(2 * hr, hr, 3, 1, 1),
        )
        self.conv_hr2x = nn.Sequential(
            Conv2dIBNormRelu(2 * hr, 2 * hr, 3, 1, 1),
            Conv2dIBNormRelu(2 * hr, hr, 3, 1, 1),
            Conv2dIBNormRelu(hr, hr, 3, 1, 1),
            Conv2dIBNormRelu(hr, hr, 3, 1, 1),
        )
        self.conv_hr = nn.Sequential(
            Conv2dIBNormRelu(hr + 3, hr, 3, 1, 1),
            Conv2dIBNormRelu(hr, 1, 1, 1, 0, with_ibn=False, with_relu=False),
        )

    def forward(self, img, enc2x, enc4x, lr8x, inference: bool):
        img2x = _resize(img, 1 / 2)
        img4x = _resize(img, 1 / 4)
        e2 = self.tohr_enc2x(enc2x)
        hr4x = self.conv_enc2x(torch.cat([img2x, e2], dim=1))
        e4 = self.tohr_enc4x(enc4x)
        hr4x = self.conv_enc4x(torch.cat([hr4x, e4], dim=1))
        hr4x = self.conv_hr4x(torch.cat([hr4x, _resize(lr8x, 2), img4x], dim=1))
        hr2x = self.conv_hr2x(torch.cat([_resize(hr4x, 2), e2], dim=1))
        detail = None
        if not inference:
            hr = self.conv_hr(torch.cat([_resize(hr2x, 2), img], dim=1))
            detail = torch.sigmoid(hr)
        return detail, hr2x


class FusionBranch(nn.Module):
    """Fusion branch: semantic features + HR features + image -> matte."""

    def __init__(self, hr: int, enc_channels: tuple[int, ...]):
        super().__init__()
        self.conv_lr4x = Conv2dIBNormRelu(enc_channels[2], hr, 5, 1, 2)
        self.conv_f2x = Conv2dIBNormRelu(2 * hr, hr, 3, 1, 1)
        self.conv_f = nn.Sequential(
            Conv2dIBNormRelu(hr + 3, int(hr / 2), 3, 1, 1),
            Conv2dIBNormRelu(int(hr / 2), 1, 1, 1, 0, with_ibn=False, with_relu=False),
        )

    def forward(self, img, lr8x, hr2x):
        lr4x = self.conv_lr4x(_resize(lr8x, 2))
        f2x = self.conv_f2x(torch.cat([_resize(lr4x, 2), hr2x], dim=1))
        f = self.conv_f(torch.cat([_resize(f2x, 2), img], dim=1))
        return torch.sigmoid(f)


class MODNet(nn.Module):
    """The full model; see the module docstring for the contract of ``forward``."""

    def __init__(self, backbone: str = "mobilenetv2", hr_channels: int = 32, in_channels: int = 3):
        super().__init__()
        BACKBONES.get(backbone)  # an unknown name fails first, listing the valid ones
        if hr_channels < 4:  # conv_f's IBNorm needs >= 2 channels at hr/2
            from matdata.errors import ConfigError

            raise ConfigError(f"hr_channels must be >= 4, got {hr_channels}")
        self.backbone_name = backbone
        self.hr_channels = hr_channels
        self.backbone = create_backbone(backbone, in_channels=in_channels)
        enc = tuple(self.backbone.enc_channels)
        self.lr_branch = LRBranch(self.backbone)
        self.hr_branch = HRBranch(hr_channels, enc)
        self.f_branch = FusionBranch(hr_channels, enc)
        self._init_weights()

    def _init_weights(self) -> None:
        """As the official model: Kaiming-uniform convs, zero biases, unit norms."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=0, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def config(self) -> dict[str, Any]:
        return {"backbone": self.backbone_name, "hr_channels": self.hr_channels}

    def forward(self, image: torch.Tensor, inference: bool = False):
        semantic, lr8x, enc2x, enc4x = self.lr_branch(image, inference)
        detail, hr2x = self.hr_branch(image, enc2x, enc4x, lr8x, inference)
        matte = self.f_branch(image, lr8x, hr2x)
        return semantic, detail, matte


def _complete_shared_backbone(state: dict) -> dict:
    """Fill in the duplicated backbone keys when a checkpoint holds only one copy."""
    out = dict(state)
    a, b = "backbone.", "lr_branch.backbone."
    for k, v in state.items():
        if k.startswith(b) and a + k[len(b) :] not in out:
            out[a + k[len(b) :]] = v
        elif k.startswith(a) and b + k[len(a) :] not in out:
            out[b + k[len(a) :]] = v
    return out


def load_modnet_weights(
    model: MODNet, path_or_state: str | Mapping[str, Any], *, name: str | None = None
) -> MODNet:
    """Load a full MODNet checkpoint strictly (path or state_dict); return ``model``.

    Released ``.ckpt`` files (``module.`` prefix, backbone listed twice) and this project's
    own checkpoints (also ``{"model": state_dict, ...}`` wrappers) load; a checkpoint with a
    single copy of the shared backbone is completed.  Any other mismatch is a
    :class:`~matdata.errors.CheckpointError` naming the keys.
    """
    from matdata.checkpoints import load_weights

    return load_weights(model, path_or_state, filter_fn=_complete_shared_backbone, name=name)


def load_backbone_weights(
    model: MODNet,
    path_or_state: str | Mapping[str, Any],
    log: Callable[[str], None] | None = None,
) -> MODNet:
    """Load the backbone from any checkpoint that holds one (classification, segmentation,
    MODNet or ``matdata train --task segmentation`` layouts; :mod:`modnet.backbone_weights`).

    Every backbone tensor must be found exactly once; mismatches raise
    :class:`~matdata.errors.CheckpointError` naming the keys.  ``log`` receives the lines
    saying what was taken and what was ignored.
    """
    from modnet.backbone_weights import load_backbone

    report = load_backbone(model.backbone, path_or_state)
    if log is not None:
        for line in report.lines():
            log(line)
    return model


def _stderr(line: str) -> None:
    import sys

    print(line, file=sys.stderr)


def build_modnet(
    backbone: str = "mobilenetv2",
    hr_channels: int = 32,
    backbone_weights: str | Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = _stderr,
) -> MODNet:
    """Build MODNet; ``backbone_weights`` is a local checkpoint holding the backbone (any
    layout :func:`load_backbone_weights` reads; no downloads).  The load report goes to
    ``log`` (stderr by default; ``None`` = silent)."""
    model = MODNet(backbone, hr_channels)
    if backbone_weights is not None:
        load_backbone_weights(model, backbone_weights, log=log)
    return model


def infer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """Guess ``backbone`` and ``hr_channels`` from a (prefix-stripped) MODNet state_dict."""
    from matdata.errors import CheckpointError

    keys = [k[len("module.") :] if k.startswith("module.") else k for k in state]
    if any(k.startswith("backbone.model.features.") for k in keys):
        backbone = "mobilenetv2"
    elif any(k.startswith("backbone.model.layer1.") for k in keys):
        backbone = "resnet18"
    elif any(k.startswith("backbone.model.stages.") for k in keys):
        backbone = "pvt"
    else:
        raise CheckpointError(
            "checkpoint is not a MODNet model (no backbone.model.* keys)",
            hint="pass a checkpoint saved by `matdata train` or a released MODNet .ckpt",
        )
    w = dict(zip(keys, state.values(), strict=True)).get("hr_branch.tohr_enc2x.layers.0.weight")
    if w is None:
        if any(k.startswith("head.") for k in keys):
            raise CheckpointError(
                "checkpoint is a segmentation model (`matdata train --task segmentation`), "
                "not a MODNet",
                hint="start a MODNet run from it: matdata train --backbone-weights CKPT",
            )
        raise CheckpointError("checkpoint is not a MODNet model (no hr_branch keys)")
    return {"backbone": backbone, "hr_channels": int(w.shape[0])}
