"""Loss masking of the trainer: ignored pixels add neither loss nor gradient, and the
forward pass + MODNet losses of one batch (:mod:`modnet.losses` holds the objectives)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def mask_ignored(
    preds: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    alpha: torch.Tensor,
    ignore: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace predictions by their (constant) targets where ``ignore`` is 1, so ignored
    pixels add neither loss nor gradient to any MODNet term.  The semantic prediction is
    replaced in every 1/16 cell that touches an ignored pixel."""
    from modnet.losses import semantic_target

    sem, det, matte = preds
    if not bool(ignore.any()):
        return sem, det, matte
    keep = 1.0 - ignore
    det = det * keep + alpha * ignore
    matte = matte * keep + alpha * ignore
    ign_low = F.adaptive_max_pool2d(ignore, tuple(sem.shape[-2:]))
    target = semantic_target(alpha, tuple(sem.shape[-2:]))
    sem = sem * (1.0 - ign_low) + target * ign_low
    return sem, det, matte


def compute_losses(
    model: torch.nn.Module, batch: dict[str, Any], weights: tuple[float, float, float]
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Forward one batch (already on the device): MODNet's weighted losses and the matte."""
    from modnet.losses import modnet_losses

    sem, det, matte = model(batch["image"], False)
    sem, det, matte = (t.float() for t in (sem, det, matte))
    raw_matte = matte
    sem, det, matte = mask_ignored((sem, det, matte), batch["alpha"], batch["ignore"])
    losses = modnet_losses(
        sem,
        det,
        matte,
        batch["image"],
        batch["alpha"],
        batch["trimap"],
        coarse_mask=batch["coarse"],
        weights=weights,
    )
    return losses, raw_matte
