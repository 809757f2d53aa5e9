"""The generic name registry (matdata.registry) and the four registries built on it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from matdata.errors import ConfigError, MatdataError, SourceError
from matdata.registry import Registry

ROOT = Path(__file__).resolve().parents[1]


def test_register_create_defaults_and_override() -> None:
    reg: Registry = Registry("widget")

    @reg.register("pair", scale=2)
    def pair(x: int, scale: int = 1, shift: int = 0) -> tuple[int, int]:
        return x * scale, shift

    reg.register("plain", dict)
    assert reg.names() == ["pair", "plain"]
    assert list(reg) == ["pair", "plain"] and len(reg) == 2
    assert "pair" in reg and "nope" not in reg and 3 not in reg
    assert reg.get("pair") is pair and reg["plain"] is dict
    assert pair(5) == (5, 0)  # the decorator returns the function unchanged
    assert reg.create("pair", 5) == (10, 0)  # registered default applied
    assert reg.create("pair", 5, scale=3, shift=1) == (15, 1)  # caller overrides
    assert reg.create("plain", a=1) == {"a": 1}
    assert reg.defaults("pair") == {"scale": 2}
    reg.defaults("pair")["scale"] = 99  # a copy: the registry is not changed
    assert reg.create("pair", 1) == (2, 0)


def test_unknown_name_is_one_clear_error_listing_the_names() -> None:
    reg: Registry = Registry("gadget")
    reg.register("beta", int)
    reg.register("alpha", float)
    for call in (reg.get, reg.create, reg.defaults, reg.__getitem__):
        with pytest.raises(ConfigError) as info:
            call("gamma")
        assert info.value.one_line() == "unknown gadget 'gamma' (choose one of alpha, beta)"
    typed: Registry = Registry("source kind", error=SourceError)
    with pytest.raises(SourceError, match="unknown source kind 'x'"):
        typed.get("x")


def test_duplicate_name_is_refused() -> None:
    reg: Registry = Registry("thing")
    reg.register("a", int)
    with pytest.raises(ValueError, match="'a' is registered twice"):
        reg.register("a", float)
    assert reg.get("a") is int


def test_modules_load_on_first_lookup(tmp_path: Path) -> None:
    """A registry imports its modules only when asked for a name, and only once."""
    pkg = tmp_path / "regpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from matdata.registry import Registry\n"
        "THINGS = Registry('thing', modules=('regpkg.one', 'regpkg.two'))\n"
    )
    (pkg / "one.py").write_text(
        "from regpkg import THINGS\nLOADS = []\nLOADS.append(1)\n"
        "@THINGS.register('one', n=1)\nclass One:\n    def __init__(self, n):\n        self.n = n\n"
    )
    (pkg / "two.py").write_text("from regpkg import THINGS\nTHINGS.register('two', len)\n")
    script = textwrap.dedent(
        """
        import sys
        from regpkg import THINGS
        before = [m for m in ('regpkg.one', 'regpkg.two') if m in sys.modules]
        names = THINGS.names()
        obj = THINGS.create('one')
        THINGS.names()
        import regpkg.one
        print(before, names, obj.n, regpkg.one.LOADS)
        """
    )
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[] ['one', 'two'] 1 [1]"


def test_the_four_registries() -> None:
    """Sources, networks, backbones and foreground estimators are all Registries whose
    old entry points still work."""
    from harmonization import NETWORKS, build_network, create_network, get_config
    from matdata.foreground import ESTIMATORS, METHODS
    from matdata.sources import REGISTRY, SOURCES, create_source, make_source, source_class
    from modnet.backbones import BACKBONES, create_backbone

    for reg in (SOURCES, NETWORKS, BACKBONES, ESTIMATORS):
        assert isinstance(reg, Registry)
        with pytest.raises(MatdataError, match=f"unknown {reg.kind} 'nope'"):
            reg.get("nope")
    assert REGISTRY is SOURCES and make_source is create_source
    # registration order follows import order: compare the set
    assert sorted(SOURCES) == ["aisegment", "coco", "demo", "folder", "places365", "supervisely"]
    assert source_class("demo").__name__ == "DemoSource"
    assert build_network is create_network
    assert type(build_network("issam256")).__name__ == type(NETWORKS.create("issam256")).__name__
    assert get_config("rainnet512").size == 512
    assert sorted(BACKBONES) == ["mobilenetv2", "pvt", "resnet18"]
    four = create_backbone("resnet18", in_channels=4)
    assert four.enc_channels == BACKBONES["resnet18"]().enc_channels
    assert next(four.parameters()).shape[1] == 4  # in_channels reached the constructor
    assert tuple(ESTIMATORS.names()) == METHODS and METHODS[0] == "blur_fusion"
    # one function per algorithm (issue 14), no flags chosen by registry defaults
    import matdata.foreground as fg

    assert ESTIMATORS.get("blur_fusion") is fg.estimate_blur_fusion
    assert ESTIMATORS.get("blur_fusion_fine") is fg.estimate_blur_fusion_fine
    assert ESTIMATORS.get("blur_fusion_v1") is fg.estimate_blur_fusion_v1
    assert all(ESTIMATORS.defaults(m) == {} for m in METHODS)


def test_unknown_foreground_method_is_config_and_value_error() -> None:
    import numpy as np

    from matdata.foreground import estimate_foreground

    rgb = np.zeros((4, 4, 3), np.uint8)
    alpha = np.zeros((4, 4), np.uint8)
    with pytest.raises(ConfigError, match="unknown foreground method 'x'"):
        estimate_foreground(rgb, alpha, "x")
    with pytest.raises(ValueError):
        estimate_foreground(rgb, alpha, "x")
