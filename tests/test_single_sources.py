"""One way to do each thing: the device resolver, the size convention of the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from matdata.errors import ConfigError, DeviceError
from matdata.sizes import parse_wxh


def test_one_device_resolver_for_harmonization_and_modnet() -> None:
    import harmonization.device
    import modnet.inference
    import modnet.train
    from matdata.device import resolve_device

    assert harmonization.device.resolve_device is resolve_device
    assert modnet.inference.resolve_device is resolve_device
    assert modnet.train.pick_device("cpu") == resolve_device("cpu") == torch.device("cpu")
    for bad in ("tpu", "cuda:x", "gpu0"):
        with pytest.raises(DeviceError, match="unknown device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        for spec in ("cuda", "cuda:0"):
            with pytest.raises(DeviceError, match="CUDA is not available"):
                modnet.train.pick_device(spec, local_rank=1)
    else:  # a bare "cuda" under DDP is this rank's GPU
        assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)


def test_sizes_are_width_first() -> None:
    assert parse_wxh("512", "--net-size") == (512, 512)
    assert parse_wxh("640x480", "--net-size") == (640, 480)
    assert parse_wxh(" 384 × 256 ", "--net-size") == (384, 256)
    for bad in ("480,640", "(480, 640)", "x480", "640x", "h480w640"):
        with pytest.raises(ConfigError) as exc:
            parse_wxh(bad, "--net-size")
        assert "W x H, width first" in exc.value.one_line()
    from matdata.options import parse_size

    assert parse_size("640x480") == parse_wxh("640x480", "--size")  # build agrees


def test_net_size_reaches_the_network_as_height_width() -> None:
    from harmonization.options import harmonizer_params

    assert harmonizer_params("idih256", None, "384x256") == {"size": (256, 384)}
    assert harmonizer_params("idih256", None, "256") == {"size": 256}


def test_net_size_other_form_is_one_line() -> None:
    cmd = [sys.executable, "-m", "matdata", "harmonize", "nowhere", "-m", "idih256"]
    cmd += ["--out", "x", "--net-size", "256,384"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "--net-size '256,384'" in lines[0] and "width first" in lines[0]
