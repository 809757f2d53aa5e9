"""The compositor's fast paths give the bytes of the plain computation, over random sizes.

* ``_blend_into`` (the blend over the box of ``alpha > 0`` only, in place) equals
  :func:`composite_rgb` of the whole canvas;
* ``compose_sample(..., fg_rgba=rgba_layer(F, alpha))`` (one 4-channel resize) equals
  ``compose_sample`` with separate colour and alpha resizes.

Sizes: tiny, odd, non-square, foreground larger than the canvas, partly or wholly off the
canvas; alpha: a soft blob, per-pixel noise, fully transparent, fully opaque.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matdata.compose import (
    ComposeConfig,
    _blend_into,
    compose_sample,
    composite_rgb,
    rgba_layer,
)

PROPS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
side = st.integers(1, 120)
ALPHAS = ("blob", "noise", "zero", "one", "binary")


def _layer(rng: np.random.Generator, h: int, w: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if kind == "noise":
        alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
    elif kind in ("blob", "binary"):
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = max(1.0, h * rng.uniform(0.1, 0.7)), max(1.0, w * rng.uniform(0.1, 0.7))
        d = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
        alpha = np.clip((1.2 - d) * 5 * 255, 0, 255).astype(np.uint8)
        if kind == "binary":
            alpha = np.where(alpha > 127, 255, 0).astype(np.uint8)
    else:
        alpha = np.full((h, w), 255 if kind == "one" else 0, np.uint8)
    return rgb, alpha


@given(
    ch=side,
    cw=side,
    lh=side,
    lw=side,
    x0=st.integers(-130, 130),
    y0=st.integers(-130, 130),
    kind=st.sampled_from(ALPHAS),
    seed=st.integers(0, 2**32 - 1),
)
@PROPS
def test_box_blend_equals_full_canvas_composite_any_sizes(
    ch: int, cw: int, lh: int, lw: int, x0: int, y0: int, kind: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    canvas = rng.integers(0, 256, (ch, cw, 3), dtype=np.uint8)
    layer, la = _layer(rng, lh, lw, kind)
    # the full-canvas F and alpha that _blend_into stands for (0 outside the layer)
    f_full = np.zeros_like(canvas)
    a_full = np.zeros((ch, cw), np.uint8)
    ys, xs = slice(max(y0, 0), min(y0 + lh, ch)), slice(max(x0, 0), min(x0 + lw, cw))
    if ys.start < ys.stop and xs.start < xs.stop:
        src = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
        f_full[ys, xs] = layer[src]
        a_full[ys, xs] = la[src]
    want = composite_rgb(f_full, a_full, canvas)
    layer0 = layer.copy()
    got = _blend_into(canvas.copy(), layer, a_full, x0, y0)
    assert got.dtype == np.uint8 and got.shape == canvas.shape
    assert np.array_equal(got, want)
    assert np.array_equal(layer, layer0)  # the layer is only read


@given(
    fh=st.integers(1, 150),
    fw=st.integers(1, 150),
    bh=st.integers(1, 150),
    bw=st.integers(1, 150),
    out=st.one_of(st.none(), st.tuples(st.integers(1, 120), st.integers(1, 120))),
    augment=st.booleans(),
    flip=st.sampled_from([0.0, 0.5, 1.0]),
    fg_scale=st.sampled_from([(0.75, 1.0), (1.0, 2.5), (0.2, 0.3)]),
    kind=st.sampled_from(ALPHAS),
    with_ignore=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
@PROPS
def test_rgba_layer_path_gives_the_same_composite(
    fh: int,
    fw: int,
    bh: int,
    bw: int,
    out: tuple[int, int] | None,
    augment: bool,
    flip: float,
    fg_scale: tuple[float, float],
    kind: str,
    with_ignore: bool,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    f, a = _layer(rng, fh, fw, kind)
    bg = rng.integers(0, 256, (bh, bw, 3), dtype=np.uint8)
    ignore = (rng.random((fh, fw)) < 0.1).astype(np.uint8) * 255 if with_ignore else None
    cfg = ComposeConfig(size=out, augment=augment, flip_prob=flip, fg_scale=fg_scale, jitter=0.3)
    rgba = rgba_layer(f, a)
    assert np.array_equal(rgba, np.dstack([f, a]))
    plain = compose_sample(f, a, bg, np.random.default_rng(seed), cfg, ignore)
    fast = compose_sample(f, a, bg, np.random.default_rng(seed), cfg, ignore, fg_rgba=rgba)
    assert plain.params == fast.params
    assert np.array_equal(plain.image, fast.image)
    assert np.array_equal(plain.alpha, fast.alpha)
    if with_ignore:
        assert fast.ignore is not None and np.array_equal(plain.ignore, fast.ignore)
    assert np.array_equal(rgba, np.dstack([f, a]))  # inputs untouched


@pytest.mark.parametrize(("fg", "out"), [((600, 800), (512, 512)), ((1001, 1000), (1000, 999))])
def test_rgba_layer_path_at_real_sizes(fg: tuple[int, int], out: tuple[int, int]) -> None:
    """The build's case (AISegment 600x800 into 512x512) and a scale that rounds to the
    canvas; several draws each (scales, flips, offsets)."""
    rng = np.random.default_rng(3)
    f, a = _layer(rng, fg[1], fg[0], "blob")
    bg = rng.integers(0, 256, (512, 683, 3), dtype=np.uint8)
    rgba = rgba_layer(f, a)
    cfg = ComposeConfig(size=out)
    for s in range(4):
        plain = compose_sample(f, a, bg, np.random.default_rng(s), cfg)
        fast = compose_sample(f, a, bg, np.random.default_rng(s), cfg, fg_rgba=rgba)
        assert np.array_equal(plain.image, fast.image) and np.array_equal(plain.alpha, fast.alpha)


def test_fg_rgba_of_the_wrong_shape_is_refused() -> None:
    rng = np.random.default_rng(0)
    f, a = _layer(rng, 20, 10, "blob")
    bg = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="fg_rgba"):
        compose_sample(f, a, bg, rng, ComposeConfig(), fg_rgba=np.dstack([f, a])[:10])
    with pytest.raises(ValueError, match="do not match"):
        rgba_layer(f, a[:10])
