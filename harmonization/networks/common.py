"""Building blocks shared by the iharm-family networks (iDIH, iSSAM).

Module attribute names mirror the released checkpoints' key layout (``block.0`` conv,
``block.1`` norm-or-Identity, ``block.2`` activation) so the released state_dicts load
strictly; see ``tests/data/specs/*.state_dict.json``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

NormFactory = Callable[[int], nn.Module] | None
ActFactory = Callable[[], nn.Module]

#: ImageNet statistics the iharm networks were trained with (image only, not the mask).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvBlock(nn.Module):
    """``Sequential(conv, norm | Identity, activation)`` under the attribute ``block``.

    Shapes: (B, Cin, H, W) -> (B, Cout, H', W') with the conv's stride and padding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 4,
        stride: int = 2,
        padding: int = 1,
        norm: NormFactory = None,
        activation: ActFactory = nn.ELU,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias),
            norm(out_channels) if norm is not None else nn.Identity(),
            activation(),
        )

    def forward(self, x):
        return self.block(x)
