"""Plain-PyTorch implementations of the wrapped harmonization networks."""

from harmonization.networks.backboned import (
    BackbonedIDIH,
    deeplab_r34_idih256,
    hrnet18_idih256,
    hrnet18_v2p_idih256,
    hrnet18s_idih256,
    hrnet32_idih256,
)
from harmonization.networks.dih import DeepImageHarmonization, dih256, idih256
from harmonization.networks.rainnet import RainNet, rainnet
from harmonization.networks.ssam import SSAMImageHarmonization, issam256

__all__ = [
    "BackbonedIDIH",
    "DeepImageHarmonization",
    "RainNet",
    "SSAMImageHarmonization",
    "deeplab_r34_idih256",
    "dih256",
    "hrnet18_idih256",
    "hrnet18_v2p_idih256",
    "hrnet18s_idih256",
    "hrnet32_idih256",
    "idih256",
    "issam256",
    "rainnet",
]
