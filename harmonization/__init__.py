"""Image harmonization: RainNet, iDIH, iSSAM (strictly loading the authors' released
weights) and a classical Reinhard transfer, behind one interface.

    >>> from harmonization import load_harmonizer
    >>> h = load_harmonizer("reinhard")                                   # no weights needed
    >>> h = load_harmonizer("idih256", checkpoint="idih256.pth", device="auto")
    >>> out = h(composite_uint8_hw3, mask_float_hw)                      # uint8, same size

See ``docs/harmonization.md``.
"""

from harmonization.device import resolve_device
from harmonization.harmonizers import (
    Harmonizer,
    NetworkHarmonizer,
    NoneHarmonizer,
    ReinhardHarmonizer,
    load_harmonizer,
    load_network,
    mask_kind,
    paste_back,
    reinhard_transfer,
)
from harmonization.registry import (
    NETWORKS,
    REGISTRY,
    NetworkConfig,
    available,
    build_network,
    create_network,
    get_config,
)

__all__ = [
    "NETWORKS",
    "REGISTRY",
    "Harmonizer",
    "NetworkConfig",
    "NetworkHarmonizer",
    "NoneHarmonizer",
    "ReinhardHarmonizer",
    "available",
    "build_network",
    "create_network",
    "get_config",
    "load_harmonizer",
    "load_network",
    "mask_kind",
    "paste_back",
    "reinhard_transfer",
    "resolve_device",
]
