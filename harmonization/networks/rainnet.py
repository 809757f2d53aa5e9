"""RainNet generator (Ling et al., "Region-aware Adaptive Instance Normalization for Image
Harmonization", CVPR 2021), ``input_nc=3, ngf=64``, RAIN normalisation, attention.

Input ``image`` (B,3,H,W) in [-1, 1], ``mask`` (B,1,H,W) binary (it drives the RAIN layers
and is not concatenated to the input); H and W multiples of 256.  Output: the raw ``tanh``
generator image in [-1, 1]; the released blend is ``out * mask + image * (1 - mask)``.

The released code applies in-place LeakyReLUs at the start of each encoder level, which
also rewrites the tensor kept as that level's skip; here the activation is explicit and
the activated tensor is what is kept, which gives the same numbers without aliasing.
Dropout (p=0.5) follows the outer decoder levels as in training; call ``eval()`` for
inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_SLOPE = 0.2


def _down(cin: int, cout: int) -> nn.Sequential:
    """``Sequential(LeakyReLU, conv 4x4 s2)``: the keys read ``.1.weight``."""
    return nn.Sequential(nn.LeakyReLU(_SLOPE), nn.Conv2d(cin, cout, 4, 2, 1, bias=False))


def _up(cin: int, cout: int) -> nn.Sequential:
    """``Sequential(ReLU, transposed conv 4x4 s2)``."""
    return nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False))


def _instance_norm(x: torch.Tensor) -> torch.Tensor:
    return F.instance_norm(x, eps=1e-5)


class RAIN(nn.Module):
    """Region-aware adaptive instance normalisation.

    With ``m`` the mask resized (nearest) to the feature size and region statistics
    ``mu_r = sum(x m_r) / (sum m_r + eps)``, ``var_r = sum(((x - mu_r) m_r)^2) / (sum m_r + eps)``,
    ``std_r = sqrt(var_r + eps)`` for ``m_b = 1 - m`` and ``m_f = m``::

        bg  = ((x - mu_b) / std_b) (1 + g_b) + b_b
        fg  = ((x - mu_f) / std_f * std_b + mu_b) (1 + g_f) + b_f
        out = fg m + bg (1 - m)
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.foreground_gamma = nn.Parameter(torch.zeros(channels))
        self.foreground_beta = nn.Parameter(torch.zeros(channels))
        self.background_gamma = nn.Parameter(torch.zeros(channels))
        self.background_beta = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def _stats(self, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        region = x * m
        count = m.sum(dim=(2, 3), keepdim=True) + self.eps
        mean = region.sum(dim=(2, 3), keepdim=True) / count
        # (region + (1 - m) mean - mean) is (x - mean) inside a binary region, 0 outside
        var = ((region + (1 - m) * mean - mean) ** 2).sum(dim=(2, 3), keepdim=True) / count
        return mean, torch.sqrt(var + self.eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = F.interpolate(mask, size=x.shape[2:], mode="nearest")

        def p(t: torch.Tensor) -> torch.Tensor:
            return t[None, :, None, None]

        mu_b, std_b = self._stats(x, 1 - m)
        bg = ((x - mu_b) / std_b * (1 + p(self.background_gamma)) + p(self.background_beta)) * (
            1 - m
        )
        mu_f, std_f = self._stats(x, m)
        fg = ((x - mu_f) / std_f * std_b + mu_b) * (1 + p(self.foreground_gamma)) + p(
            self.foreground_beta
        )
        return fg * m + bg


class UnetLevel(nn.Module):
    """One level of the nested U-Net codec at 512 channels.

    Outer levels: ``x' = lrelu(x)``; ``y = drop(RAIN(up(sub(IN(conv(x'))))))``; return
    ``cat(x', y)``.  Innermost: ``y = RAIN(convT(relu(conv(lrelu(x)))))``, return ``cat(x', y)``.
    """

    def __init__(self, channels: int, submodule: UnetLevel | None, dropout: bool) -> None:
        super().__init__()
        self.innermost = submodule is None
        if self.innermost:
            self.up = nn.Sequential(
                nn.LeakyReLU(_SLOPE),
                nn.Conv2d(channels, channels, 4, 2, 1, bias=False),
                nn.ReLU(),
                nn.ConvTranspose2d(channels, channels, 4, 2, 1, bias=False),
            )
        else:
            self.down = _down(channels, channels)
            self.submodule = submodule
            self.up = _up(2 * channels, channels)
        self.upnorm = RAIN(channels)
        self.dropout = nn.Dropout(0.5) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(x, _SLOPE)  # the released in-place activation rewrites the skip
        if self.innermost:
            y = self.up[1:](x)
        else:
            y = _instance_norm(self.down[1](x))
            y = self.up(self.submodule(y, mask))
        y = self.dropout(self.upnorm(y, mask))
        return torch.cat([x, y], dim=1)


class RainNet(nn.Module):
    """RainNet generator: ``forward(image, mask) -> tanh image`` (B,3,H,W)."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64) -> None:
        super().__init__()
        self.model_layer0 = nn.Conv2d(input_nc, ngf, 4, 2, 1, bias=False)
        self.model_layer1 = _down(ngf, ngf * 2)
        self.model_layer2 = _down(ngf * 2, ngf * 4)
        self.model_layer3 = _down(ngf * 4, ngf * 8)
        level = UnetLevel(ngf * 8, None, dropout=False)
        for _ in range(3):
            level = UnetLevel(ngf * 8, level, dropout=True)
        self.unet_block = level
        self.model_layer11 = _up(ngf * 16, ngf * 4)
        self.model_layer11norm = RAIN(ngf * 4)
        self.model_layer11att = nn.Sequential(nn.Conv2d(ngf * 8, ngf * 8, 1), nn.Sigmoid())
        self.model_layer12 = _up(ngf * 8, ngf * 2)
        self.model_layer12norm = RAIN(ngf * 2)
        self.model_layer12att = nn.Sequential(nn.Conv2d(ngf * 4, ngf * 4, 1), nn.Sigmoid())
        self.model_layer13 = _up(ngf * 4, ngf)
        self.model_layer13norm = RAIN(ngf)
        self.model_layer13att = nn.Sequential(nn.Conv2d(ngf * 2, ngf * 2, 1), nn.Sigmoid())
        self.model_out = nn.Sequential(
            nn.ReLU(), nn.ConvTranspose2d(ngf * 2, output_nc, 4, 2, 1), nn.Tanh()
        )

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x0 = F.leaky_relu(self.model_layer0(image), _SLOPE)
        x1 = F.leaky_relu(_instance_norm(self.model_layer1[1](x0)), _SLOPE)
        x2 = F.leaky_relu(_instance_norm(self.model_layer2[1](x1)), _SLOPE)
        x3 = _instance_norm(self.model_layer3[1](x2))
        y = self.unet_block(x3, mask)
        for up, norm, att, skip in (
            (self.model_layer11, self.model_layer11norm, self.model_layer11att, x2),
            (self.model_layer12, self.model_layer12norm, self.model_layer12att, x1),
            (self.model_layer13, self.model_layer13norm, self.model_layer13att, x0),
        ):
            y = torch.cat([skip, norm(up(y), mask)], dim=1)
            y = att(y) * y
        return self.model_out(y)


def rainnet() -> RainNet:
    """The released generator configuration (``input_nc=3, ngf=64``)."""
    return RainNet(3, 3, 64)
