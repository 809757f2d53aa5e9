"""Coarse pretraining stage: a MODNet backbone with a light segmentation head.

``matdata train --task segmentation --data COARSE --backbone mobilenetv2`` trains the
backbone on person masks (Supervisely-like coarse datasets; fine mattes work too, thresholded
at 0.5) before MODNet is trained from it with ``--backbone-weights RUN``.  This follows the
recipe MODNet's authors used for their ``mobilenetv2_human_seg`` backbone and the one this
project was seeded from: MobileNetV2 inside a UNet, ResNet-18 inside a DeepLabv3+.

- :class:`UNetHead` (MobileNetV2): from enc32x up to enc2x, each step ``x2`` bilinear,
  concatenation with the encoder feature of that stride, two 3x3 conv+BN+ReLU; a 1x1 conv
  to one logit at stride 2, then bilinear to full size.
- :class:`DeepLabV3PlusHead` (ResNet-18, PVT): ASPP on enc32x (1x1, three 3x3 atrous
  branches, image pooling), projected to 128 channels; upsampled to stride 4 and merged with
  the 48-channel projection of enc4x, two 3x3 conv+BN+ReLU, a 1x1 conv, bilinear to full
  size.  MODNet's encoders have output stride 32 (no dilation), so the atrous rates are
  (3, 6, 9), half of DeepLabv3+'s (6, 12, 18) at output stride 16.

The input is MODNet's (``[-1, 1]`` RGB), so the pretrained backbone sees the same
distribution in both stages.  The loss is binary cross-entropy on the logit, averaged
over the pixels whose ``ignore`` flag is 0 (Supervisely's neutral objects, crowds).
Validation reports the loss, the IoU of ``p > 0.5`` against ``mask >= 0.5`` over the whole
split (sum of intersections over sum of unions, ignored pixels excluded) and the pixel
accuracy.  The state_dict keys are ``backbone.model.*`` (MODNet's own backbone names) and
``head.*``: ``--backbone-weights`` takes the backbone and reports the head as ignored.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modnet.backbones import create_backbone
from modnet.train import Trainer


def _cbr(cin: int, cout: int, kernel: int = 3, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, 1, pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _up(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class UNetHead(nn.Module):
    """UNet-style decoder over the five encoder features (strides 2..32)."""

    WIDTHS = (64, 32, 24, 16)  # decoder widths at strides 16, 8, 4, 2

    def __init__(self, enc_channels: tuple[int, ...]):
        super().__init__()
        blocks = []
        cin = enc_channels[4]
        for width, skip in zip(self.WIDTHS, enc_channels[3::-1], strict=True):
            blocks.append(nn.Sequential(_cbr(cin + skip, width), _cbr(width, width)))
            cin = width
        self.blocks = nn.ModuleList(blocks)
        self.logit = nn.Conv2d(cin, 1, 1)

    def forward(self, feats: list[torch.Tensor], size: torch.Size) -> torch.Tensor:
        x = feats[4]
        for block, skip in zip(self.blocks, feats[3::-1], strict=True):
            x = block(torch.cat([_up(x, skip.shape[-2:]), skip], dim=1))
        return _up(self.logit(x), size)


class DeepLabV3PlusHead(nn.Module):
    """DeepLabv3+-style decoder: ASPP on the deepest feature, a stride-4 skip."""

    def __init__(self, enc_channels: tuple[int, ...], width: int = 128, rates=(3, 6, 9)):
        super().__init__()
        c32, c4 = enc_channels[4], enc_channels[1]
        self.aspp = nn.ModuleList([_cbr(c32, width, 1)] + [_cbr(c32, width, 3, r) for r in rates])
        # image pooling: no BatchNorm (a 1x1 map has no spatial statistics at batch size 1)
        self.pool = nn.Sequential(nn.Conv2d(c32, width, 1), nn.ReLU(inplace=True))
        self.project = _cbr(width * (len(rates) + 2), width, 1)
        self.skip = _cbr(c4, 48, 1)
        self.fuse = nn.Sequential(_cbr(width + 48, width), _cbr(width, width))
        self.logit = nn.Conv2d(width, 1, 1)

    def forward(self, feats: list[torch.Tensor], size: torch.Size) -> torch.Tensor:
        x = feats[4]
        pooled = self.pool(F.adaptive_avg_pool2d(x, 1)).expand(-1, -1, *x.shape[-2:])
        x = self.project(torch.cat([b(x) for b in self.aspp] + [pooled], dim=1))
        low = self.skip(feats[1])
        x = self.fuse(torch.cat([_up(x, low.shape[-2:]), low], dim=1))
        return _up(self.logit(x), size)


HEADS = {"mobilenetv2": UNetHead, "resnet18": DeepLabV3PlusHead, "pvt": DeepLabV3PlusHead}


class SegNet(nn.Module):
    """A MODNet backbone + the head of :data:`HEADS`; ``forward(image) -> logits (B,1,H,W)``."""

    def __init__(self, backbone: str = "mobilenetv2"):
        super().__init__()
        self.backbone = create_backbone(backbone, in_channels=3)
        self.backbone_name = backbone
        self.head = HEADS[backbone](tuple(self.backbone.enc_channels))
        for m in self.head.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=0, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(image), image.shape[-2:])


def masked_bce(logits: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the pixels where ``ignore`` is 0."""
    keep = 1.0 - ignore
    bce = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    return (bce * keep).sum() / keep.sum().clamp_min(1.0)


def iou_counts(logits: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
    """``[intersection, union, correct, counted]`` pixel counts (ignored pixels excluded)."""
    keep = ignore < 0.5
    pred = (logits > 0) & keep
    true = (target >= 0.5) & keep
    return torch.stack(
        [
            (pred & true).sum(),
            (pred | true).sum(),
            ((pred == true) & keep).sum(),
            keep.sum(),
        ]
    ).to(torch.float64)


class SegTrainer(Trainer):
    """:class:`~modnet.train.Trainer` for the segmentation task (same data, checkpoints,
    resume, DDP and logging; a :class:`SegNet` and its loss / IoU instead of MODNet's)."""

    def build_model(self) -> nn.Module:
        return SegNet(self.cfg.backbone)

    def model_config(self) -> dict[str, Any]:
        return {"task": "segmentation", "backbone": self.cfg.backbone}

    def losses(
        self, net: nn.Module, batch: dict[str, Any]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        logits = net(batch["image"])
        loss = masked_bce(logits, batch["alpha"], batch["ignore"])
        return {"total": loss, "bce": loss.detach()}, logits

    @torch.no_grad()
    def validate(self, data: str | None = None, log: Any = None) -> dict[str, float]:
        """Loss, IoU and pixel accuracy on the ``val`` split of ``data`` (at most
        :meth:`val_batches` batches; a Ctrl-C ends the pass early in a single process)."""
        from modnet.data import make_loader

        model = self.model
        was_training = model.training
        model.eval()
        stream = self._stream("val", train=False, data=data)
        sums = torch.zeros(6, dtype=torch.float64)  # loss * n, n, I, U, correct, counted
        loader = make_loader(stream, workers=min(self.loader_workers, 2))
        limit = self.val_batches()
        for i, batch in enumerate(loader):
            if (limit and i >= limit) or (self.interrupt.requested and self.dist.world == 1):
                break
            if self._note_bad(batch):
                continue
            batch = self._to_device(batch)
            with self.autocast():
                losses, logits = self.losses(model, batch)
            n = batch["image"].shape[0]
            sums[:2] += torch.tensor([float(losses["total"]) * n, n], dtype=torch.float64)
            sums[2:] += iou_counts(logits.float(), batch["alpha"], batch["ignore"]).cpu()
        if self.dist.world > 1:
            import torch.distributed as dist

            dev = self.device if self.device.type == "cuda" else torch.device("cpu")
            t = sums.to(dev)
            dist.all_reduce(t)
            sums = t.cpu()
        model.train(was_training)
        loss_n, n, inter, union, correct, counted = (float(v) for v in sums)
        return {
            "loss": loss_n / max(n, 1.0),
            "iou": inter / union if union > 0 else float("nan"),
            "pixel_acc": correct / counted if counted > 0 else float("nan"),
            "samples": int(n),
        }
