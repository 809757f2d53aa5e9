"""Decoding through Pillow's Arrow view (one copy instead of three) gives the same arrays as
``np.asarray`` of the PIL image, for every mode and size, and falls back where the view is
not available (images stored in several blocks, other modes)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from matdata.imageio import _pixel_view, _rgb_and_alpha, decode_alpha, decode_image, decode_rgba

PROPS = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _png(arr: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def _check(a: np.ndarray, want: np.ndarray) -> None:
    assert a.dtype == np.uint8 and a.shape == want.shape
    assert np.array_equal(a, want)
    assert a.flags.c_contiguous and a.flags.writeable  # callers own what they get
    a[...] = 0  # and may write to it


@given(
    h=st.integers(1, 90),
    w=st.integers(1, 90),
    mode=st.sampled_from(["RGB", "RGBA", "L", "LA", "P"]),
    seed=st.integers(0, 2**32 - 1),
)
@PROPS
def test_decoders_equal_the_pil_arrays(h: int, w: int, mode: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = _png(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), mode)
    ref = Image.open(io.BytesIO(data))
    ref.load()
    rgba = np.asarray(ref.convert("RGBA"))
    _check(decode_image(data, min_side=1), rgba[:, :, :3].copy())
    if mode in ("RGBA", "LA"):
        rgb, alpha = decode_rgba(data, min_side=1)
        _check(rgb, rgba[:, :, :3].copy())
        _check(alpha, rgba[:, :, 3].copy())
        _check(decode_alpha(data, min_side=1), rgba[:, :, 3].copy())
    if mode == "L":
        _check(decode_alpha(data, min_side=1), np.asarray(ref).copy())
        _check(decode_alpha(data, min_side=1, channel="gray"), np.asarray(ref).copy())


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_the_view_is_the_pixels(mode: str) -> None:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (7, 5, 4), dtype=np.uint8)
    img = Image.fromarray(arr).convert(mode)
    view = _pixel_view(img)
    if view is None:  # Pillow < 11.2: no Arrow export, the decoders use np.asarray
        pytest.skip("Pillow without Arrow export")
    want = np.asarray(img)
    got = view[:, :, : want.shape[2]] if want.ndim == 3 else view
    assert np.array_equal(got, want)


def test_an_image_in_several_blocks_falls_back() -> None:
    """Pillow stores big images in several blocks; its Arrow export refuses them, and the
    decoder takes the plain path with the same result."""
    img = Image.new("RGB", (6000, 4000), (1, 2, 3))
    img.putpixel((5999, 3999), (9, 8, 7))
    assert _pixel_view(img) is None
    rgb, alpha = _rgb_and_alpha(img, "big")
    assert alpha is None and rgb.shape == (4000, 6000, 3)
    assert tuple(rgb[0, 0]) == (1, 2, 3) and tuple(rgb[-1, -1]) == (9, 8, 7)


def test_other_modes_have_no_view() -> None:
    for mode in ("P", "LA", "CMYK", "I;16", "1"):
        assert _pixel_view(Image.new(mode, (4, 3))) is None
