"""Registry of the wrapped networks: one frozen config per weight set (timm-style).

Each config records how to build the network, the input conventions it was trained with,
the resolution it runs at and the side constraint, which released files fit it, whether
half-precision autocast is tolerated on a GPU, and a ``filter_fn`` that converts
third-party checkpoint layouts (it leaves native layouts unchanged).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from harmonization.networks import dih256, idih256, issam256, rainnet
from harmonization.networks.backboned import (
    deeplab_r34_idih256,
    hrnet18_idih256,
    hrnet18_v2p_idih256,
    hrnet18s_idih256,
    hrnet32_idih256,
)
from matdata.checkpoints import FilterFn, StateDict
from matdata.registry import Registry


def strip_common_prefix(*prefixes: str) -> FilterFn:
    """A filter that drops ``prefix`` when *every* key carries it (native layouts pass)."""

    def _filter(state: StateDict) -> StateDict:
        for prefix in prefixes:
            if state and all(k.startswith(prefix) for k in state):
                return {k[len(prefix) :]: v for k, v in state.items()}
        return state

    return _filter


@dataclass(frozen=True)
class NetworkConfig:
    """How one network is built, fed and loaded."""

    name: str
    builder: Callable[[], nn.Module]
    #: "imagenet": image ImageNet-normalised, soft 0..1 mask;
    #: "tanh": image in [-1, 1], binary mask.
    convention: str
    #: Default (square) side the network runs at.
    size: int
    #: Sides of the network input must be multiples of this.
    multiple: int
    #: Smallest side the network accepts (iDIH's last 4x4 conv needs 4x4 input at 1/64).
    min_size: int = 8
    released_files: tuple[str, ...] = ()
    paper: str = ""
    origin: str = ""
    #: Half-precision autocast on CUDA (see docs/harmonization.md, "GPU").
    autocast: bool = False
    filter_fn: FilterFn | None = None
    extra: dict = field(default_factory=dict)

    def __call__(self, **kwargs: Any) -> nn.Module:
        """A fresh network from :attr:`builder` (what ``NETWORKS.create(name)`` returns)."""
        return self.builder(**kwargs)


_IHARM = "Sofiiuk, Popenova, Konushin: Foreground-aware Semantic Representations for Image Harmonization (WACV 2021)"  # noqa: E501
_IHARM_ORIGIN = "github.com/SamsungLabs/image_harmonization"
_RAIN = "Ling, Xue, Song, Xie, Gu: Region-aware Adaptive Instance Normalization for Image Harmonization (CVPR 2021)"  # noqa: E501
_RAIN_ORIGIN = "github.com/junleen/RainNet"

_IHARM_FILTER = strip_common_prefix("model.", "net.")
_RAIN_FILTER = strip_common_prefix("netG.", "net_G.", "generator.")

#: The wrapped networks by name; ``NETWORKS.create(name)`` builds one.
NETWORKS: Registry[NetworkConfig] = Registry("network")
#: The former name of :data:`NETWORKS`.
REGISTRY = NETWORKS

_CONFIGS: tuple[NetworkConfig, ...] = (
        NetworkConfig(
            "idih256", idih256, "imagenet", 256, 128, 256, ("idih256.pth",), _IHARM, _IHARM_ORIGIN,
            autocast=True, filter_fn=_IHARM_FILTER,
        ),
        NetworkConfig(
            "issam256", issam256, "imagenet", 256, 8, 8, ("issam256.pth",), _IHARM, _IHARM_ORIGIN,
            autocast=True, filter_fn=_IHARM_FILTER,
        ),
        NetworkConfig(
            "dih256", dih256, "imagenet", 256, 128, 256, (), _IHARM, _IHARM_ORIGIN,
            autocast=True, filter_fn=_IHARM_FILTER,
        ),
        NetworkConfig(
            "rainnet", rainnet, "tanh", 256, 256, 256, ("net_G_last.pth",), _RAIN, _RAIN_ORIGIN,
            autocast=False, filter_fn=_RAIN_FILTER,
        ),
        NetworkConfig(
            "rainnet512", rainnet, "tanh", 512, 256, 256, ("the 512 RainNet model",), _RAIN,
            _RAIN_ORIGIN, autocast=False, filter_fn=_RAIN_FILTER,
        ),
        # The backboned iDIH models (same paper): sides multiples of 128, at least 256; the
        # released inference resizes to 256x256 and never pads.  float32 only: the deep
        # HRNets' activations reach ~6e3 and the fusion gate amplifies rounding.
        *(
            NetworkConfig(
                name, builder, "imagenet", 256, 128, 256, (released,), _IHARM, _IHARM_ORIGIN,
                autocast=False, filter_fn=_IHARM_FILTER,
            )
            for name, builder, released in (
                ("hrnet18s_idih256", hrnet18s_idih256, "hrnet18s_idih256.pth"),
                ("hrnet18_idih256", hrnet18_idih256, "hrnet18_idih256.pth"),
                ("hrnet18_v2p_idih256", hrnet18_v2p_idih256, "hrnet18_v2p_idih256.pth"),
                ("hrnet32_idih256", hrnet32_idih256, "hrnet32_idih256.pth"),
                ("deeplab_r34_idih256", deeplab_r34_idih256, "deeplab_idih256.pth"),
            )
        ),
)  # fmt: skip
for _cfg in _CONFIGS:
    NETWORKS.register(_cfg.name, _cfg)

#: Harmonizers that need no weights.
CLASSICAL = ("reinhard", "none")


def available() -> list[str]:
    """Every name ``load_harmonizer`` accepts."""
    return [*CLASSICAL, *REGISTRY]


def get_config(name: str) -> NetworkConfig:
    """The config registered as ``name`` (:class:`~matdata.errors.ConfigError` if none)."""
    return NETWORKS.get(name)


def create_network(name: str, **kwargs: Any) -> nn.Module:
    """A fresh network (random init, train mode) whose ``forward(image, mask)`` follows the
    spec conventions; load weights with :func:`load_network`."""
    return NETWORKS.create(name, **kwargs)


build_network = create_network
