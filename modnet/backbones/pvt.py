"""A small pyramid vision transformer (PVT, Wang et al. 2021/2022) encoder with 5 stages.

MODNet's high-resolution branch needs a stride-2 feature, so this PVT has five stages
(strides 2, 4, 8, 16, 32) instead of four.  Each stage is an overlapping patch embedding
(strided conv + LayerNorm) followed by transformer blocks with spatial-reduction attention
(keys/values from a ``sr x sr`` strided conv of the tokens) and a Mix-FFN (MLP with a 3x3
depthwise conv for position), both with residual connections::

    x = x + attn(norm1(x), H, W)
    x = x + mlp(norm2(x), H, W)

Channels (16, 32, 64, 160, 256).  Any input size works: tokens are zero-padded to a
multiple of the reduction ratio before the reduction conv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modnet.backbones.registry import BACKBONES

DIMS = (16, 32, 64, 160, 256)
DEPTHS = (1, 2, 2, 2, 2)
HEADS = (1, 1, 2, 5, 8)
SR_RATIOS = (16, 8, 4, 2, 1)
MLP_RATIO = 4


class SRAttention(nn.Module):
    """Multi-head attention whose keys/values come from a spatially reduced token map."""

    def __init__(self, dim: int, heads: int, sr: int):
        super().__init__()
        self.heads = heads
        self.sr = sr
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        if sr > 1:
            self.reduce = nn.Conv2d(dim, dim, sr, sr)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        d = c // self.heads
        q = self.q(x).reshape(b, n, self.heads, d).transpose(1, 2)
        src = x
        if self.sr > 1:
            m = x.transpose(1, 2).reshape(b, c, h, w)
            m = F.pad(m, (0, (-w) % self.sr, 0, (-h) % self.sr))
            src = self.norm(self.reduce(m).flatten(2).transpose(1, 2))
        k, v = self.kv(src).reshape(b, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class MixFFN(nn.Module):
    """Linear -> 3x3 depthwise conv -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.fc1(x)
        b, n, c = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(self.act(x))


class Block(nn.Module):
    """Pre-norm transformer block with residual connections around attention and MLP."""

    def __init__(self, dim: int, heads: int, sr: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SRAttention(dim, heads, sr)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MixFFN(dim, dim * MLP_RATIO)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x), h, w)


class Stage(nn.Module):
    """Overlapping patch embedding (stride 2) + blocks + LayerNorm; returns (B,C,H,W)."""

    def __init__(self, cin: int, dim: int, depth: int, heads: int, sr: int, kernel: int):
        super().__init__()
        self.embed = nn.Conv2d(cin, dim, kernel, 2, kernel // 2)
        self.embed_norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(Block(dim, heads, sr) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        b, c, h, w = x.shape
        t = self.embed_norm(x.flatten(2).transpose(1, 2))
        for blk in self.blocks:
            t = blk(t, h, w)
        return self.norm(t).transpose(1, 2).reshape(b, c, h, w)


class PVT(nn.Module):
    def __init__(self, in_channels: int = 3):
        super().__init__()
        cins = (in_channels, *DIMS[:-1])
        self.stages = nn.ModuleList(
            Stage(cin, dim, depth, heads, sr, 7 if i == 0 else 3)
            for i, (cin, dim, depth, heads, sr) in enumerate(
                zip(cins, DIMS, DEPTHS, HEADS, SR_RATIOS, strict=True)
            )
        )
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@BACKBONES.register("pvt")
class PVTBackbone(nn.Module):
    """``forward(x) -> [enc2x, enc4x, enc8x, enc16x, enc32x]`` (one per stage)."""

    name = "pvt"
    enc_channels = DIMS

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.model = PVT(in_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.model.stages:
            x = stage(x)
            feats.append(x)
        return feats

    @staticmethod
    def convert_state_dict(state: dict) -> dict:
        """Own layout only: ``stages.*``, ``model.stages.*`` or ``backbone.model.stages.*``."""
        out = {}
        for k, v in state.items():
            if k.startswith("backbone."):
                k = k[len("backbone.") :]
            if not k.startswith("model."):
                k = "model." + k
            out[k] = v
        return out
