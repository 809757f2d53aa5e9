"""MODNet's training objectives (Ke et al., AAAI 2022, Sec. 3 and the released trainer).

Tensor conventions: ``image`` (B,3,H,W) in [-1, 1]; ``alpha`` (B,1,H,W) in [0, 1];
``trimap`` (B,1,H,W) in {0, 0.5, 1} (unknown = 0.5); ``pred_semantic`` (B,1,H/16,W/16),
``pred_detail`` and ``pred_matte`` (B,1,H,W), all after the sigmoid.

With ``U`` the unknown region (trimap == 0.5) and ``K`` its complement, per sample::

    semantic = mean (s - blur(down16(alpha)))^2          down16: bilinear x1/16, blur: 3x3
                                                         Gaussian sigma 0.8 (reflect pad)
    detail   = mean_pixels |d - alpha| * [U]             (known pixels count as 0)
    matte    = mean |m - alpha| + 4 mean |m_U - alpha|
             + mean |I m - I alpha| + 4 mean |I m_U - I alpha|
               where m_U = m inside U and trimap elsewhere (boundary weighting: unknown
               pixels weigh 5x), I the image (compositional term)

Each term is multiplied by its weight (default 10, 10, 1) and averaged over the batch:
the semantic term over every sample, the detail and matte terms only over samples that are
not ``coarse`` (coarse masks supervise the semantic branch only, as MODNet's authors used
them).  The normalisations (means over all pixels) follow the released trainer so its
loss weights keep their meaning.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: (semantic, detail, matte) loss weights of MODNet's released trainer: the trainer's
#: default (``TrainConfig.loss_weights``, ``matdata train --loss-weights``) is this constant.
DEFAULT_WEIGHTS: tuple[float, float, float] = (10.0, 10.0, 1.0)


def parse_loss_weights(text: str) -> tuple[float, float, float]:
    """``"S,D,M"`` (semantic, detail, matte; e.g. ``10,10,1``) -> three finite weights >= 0,
    not all 0; anything else is a :class:`~matdata.errors.ConfigError`."""
    import math

    from matdata.errors import ConfigError

    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and v >= 0 for v in values):
        raise ConfigError(
            f"--loss-weights {text!r} is not three weights",
            hint="give semantic,detail,matte as numbers >= 0, e.g. --loss-weights 10,10,1",
        )
    if not any(values):
        raise ConfigError("--loss-weights are all 0: nothing would be learned")
    return values  # type: ignore[return-value]


BOUNDARY_WEIGHT = 4.0  # extra weight of the unknown region in the matte loss


def gaussian_kernel(size: int = 3, sigma: float = 0.8) -> torch.Tensor:
    """Normalised 2-D Gaussian kernel (size, size): outer product of 1-D taps."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).float()


def gaussian_blur(x: torch.Tensor, size: int = 3, sigma: float = 0.8) -> torch.Tensor:
    """Depthwise Gaussian blur of (B,C,H,W) with reflect padding (replicate when too small)."""
    c = x.shape[1]
    k = gaussian_kernel(size, sigma).to(x.device, x.dtype).expand(c, 1, size, size)
    p = size // 2
    mode = "reflect" if min(x.shape[-2:]) > p else "replicate"
    return F.conv2d(F.pad(x, (p, p, p, p), mode=mode), k, groups=c)


def semantic_target(alpha: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``blur(bilinear_resize(alpha, size))``: the semantic branch's target."""
    low = F.interpolate(alpha, size=size, mode="bilinear", align_corners=False)
    return gaussian_blur(low)


def _per_sample_mean(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(1)


def _masked_batch_mean(per_sample: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean over the samples with ``keep``; 0 (still differentiable) when none is kept."""
    keep = keep.to(per_sample.dtype)
    return (per_sample * keep).sum() / keep.sum().clamp_min(1.0)


def modnet_losses(
    pred_semantic: torch.Tensor,
    pred_detail: torch.Tensor,
    pred_matte: torch.Tensor,
    image: torch.Tensor,
    alpha: torch.Tensor,
    trimap: torch.Tensor,
    *,
    coarse_mask: torch.Tensor | None = None,
    weights: tuple[float, float, float] = DEFAULT_WEIGHTS,
) -> dict[str, torch.Tensor]:
    """MODNet's supervised losses; see the module docstring for the equations.

    ``coarse_mask``: (B,) bool, True where the sample's alpha is a coarse mask (semantic
    loss only).  Returns ``{"semantic", "detail", "matte"}`` (already weighted) and
    ``"total"`` (their sum), all scalar tensors.
    """
    b = alpha.shape[0]
    fine = torch.ones(b, dtype=torch.bool, device=alpha.device)
    if coarse_mask is not None:
        fine = ~coarse_mask.to(device=alpha.device, dtype=torch.bool).reshape(b)
    w_sem, w_det, w_mat = weights

    gt_sem = semantic_target(alpha, tuple(pred_semantic.shape[-2:]))
    sem = _per_sample_mean((pred_semantic - gt_sem) ** 2).mean()

    known = (trimap < 0.25) | (trimap > 0.75)
    unknown = (~known).to(alpha.dtype)
    det = _per_sample_mean((pred_detail - alpha).abs() * unknown)

    boundary_matte = torch.where(known, trimap, pred_matte)
    l1 = _per_sample_mean((pred_matte - alpha).abs()) + BOUNDARY_WEIGHT * _per_sample_mean(
        (boundary_matte - alpha).abs()
    )
    comp = _per_sample_mean((image * pred_matte - image * alpha).abs()) + BOUNDARY_WEIGHT * (
        _per_sample_mean((image * boundary_matte - image * alpha).abs())
    )
    out = {
        "semantic": w_sem * sem,
        "detail": w_det * _masked_batch_mean(det, fine),
        "matte": w_mat * _masked_batch_mean(l1 + comp, fine),
    }
    out["total"] = out["semantic"] + out["detail"] + out["matte"]
    return out


def _fg_boundaries(fg: np.ndarray, side: int) -> np.ndarray:
    """Pixels whose ``side x side`` neighbourhood is not uniform in the binary ``fg``."""
    from scipy.ndimage import grey_dilation, grey_erosion

    return (grey_dilation(fg, size=(side, side)) - grey_erosion(fg, size=(side, side))) != 0


def soc_losses(
    pred_semantic: torch.Tensor,
    pred_detail: torch.Tensor,
    pred_matte: torch.Tensor,
    backup_detail: torch.Tensor,
    *,
    weights: tuple[float, float] = (100.0, 1.0),
) -> dict[str, torch.Tensor]:
    """Sub-objectives consistency (SOC) on unlabelled images (MODNet Sec. 4).

    ``pred_*`` come from the model being adapted (``forward(x, inference=False)``),
    ``backup_detail`` from a frozen copy taken before adaptation.  With ``B`` the boundary
    band of the predicted foreground (dilation minus erosion, width 5% of the mean side)::

        semantic = mse(s, sg(blur(down16(m)))) + mse(blur(down16(m)), sg(s))
        detail   = mean |d*B - sg(m)*B| + mean |m*B - sg(d)*B| + mean |d*B - backup_d*B|

    (``sg`` = stop-gradient, values under 0.01 zeroed).  Returns the weighted terms and
    ``"total"``.
    """
    with torch.no_grad():
        fg = (pred_matte > 0.1).float() * (
            F.interpolate(
                (pred_semantic > 0.1).float(), size=pred_matte.shape[-2:], mode="bilinear"
            )
        )
        h, w = pred_matte.shape[-2:]
        side = max(1, int((h + w) / 2 * 0.05))
        fg_np = fg.cpu().numpy()
        band = np.stack([_fg_boundaries(fg_np[i, 0], side) for i in range(fg_np.shape[0])])
        boundaries = torch.from_numpy(band[:, None]).to(pred_matte.device, pred_matte.dtype)

    down_matte = semantic_target(pred_matte, tuple(pred_semantic.shape[-2:]))
    gt_sem = down_matte.detach()
    gt_sem = gt_sem * (gt_sem > 0.01)
    gt_matte_low = pred_semantic.detach()
    gt_matte_low = gt_matte_low * (gt_matte_low > 0.01)
    sem = F.mse_loss(pred_semantic, gt_sem) + F.mse_loss(down_matte, gt_matte_low)

    gt_det = pred_matte.detach()
    gt_mat = pred_detail.detach()
    det = (
        F.l1_loss(pred_detail * boundaries, gt_det * boundaries)
        + F.l1_loss(pred_matte * boundaries, gt_mat * boundaries)
        + F.l1_loss(pred_detail * boundaries, backup_detail.detach() * boundaries)
    )
    out = {"soc_semantic": weights[0] * sem, "soc_detail": weights[1] * det}
    out["total"] = out["soc_semantic"] + out["soc_detail"]
    return out


__all__ = [
    "BOUNDARY_WEIGHT",
    "DEFAULT_WEIGHTS",
    "gaussian_blur",
    "gaussian_kernel",
    "modnet_losses",
    "parse_loss_weights",
    "semantic_target",
    "soc_losses",
]
