"""Plain-PyTorch implementations of the wrapped harmonization networks."""

from harmonization.networks.dih import DeepImageHarmonization, dih256, idih256
from harmonization.networks.rainnet import RainNet, rainnet
from harmonization.networks.ssam import SSAMImageHarmonization, issam256

__all__ = [
    "DeepImageHarmonization",
    "RainNet",
    "SSAMImageHarmonization",
    "dih256",
    "idih256",
    "issam256",
    "rainnet",
]
