"""Property tests of the training crop (:func:`modnet.augment.crop_into`) over sizes: odd,
tiny, non-square crops and outputs, shrinking and enlarging, writing into batch views."""

from __future__ import annotations

import cv2
import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from modnet.augment import crop_into, jitter_matrix, resize_interp


def _reference(
    src: np.ndarray,
    box: tuple[int, int, int, int],
    size: tuple[int, int],
    flip: bool,
    jitter: tuple[float, float, float] | None,
) -> np.ndarray:
    """The documented crop spelled out step by step on fresh arrays: flip and jitter at
    the crop's size when it has fewer pixels than the output, else after the resize."""
    y0, x0, ch, cw = box
    h, w = size

    def per_pixel(a: np.ndarray) -> np.ndarray:
        if flip:
            a = np.ascontiguousarray(a[:, ::-1])
        if jitter is not None:
            a = cv2.transform(a, jitter_matrix(a, *jitter))
        return a

    def resize(a: np.ndarray) -> np.ndarray:
        if a.shape[:2] == (h, w):
            return a.copy()
        return cv2.resize(a, (w, h), interpolation=resize_interp(a.shape[:2], h, w))

    crop = np.ascontiguousarray(src[y0 : y0 + ch, x0 : x0 + cw])
    if ch * cw < h * w:
        return resize(per_pixel(crop))
    return per_pixel(resize(crop))


@st.composite
def _case(draw: st.DrawFn) -> tuple:
    sh, sw = draw(st.integers(1, 41)), draw(st.integers(1, 41))
    ch, cw = draw(st.integers(1, sh)), draw(st.integers(1, sw))
    y0, x0 = draw(st.integers(0, sh - ch)), draw(st.integers(0, sw - cw))
    size = (draw(st.integers(1, 37)), draw(st.integers(1, 37)))
    colour = draw(st.booleans())
    flip = draw(st.booleans())
    jitter = None
    if colour and draw(st.booleans()):
        jitter = tuple(draw(st.floats(0.5, 1.5)) for _ in range(3))
    return (sh, sw), (y0, x0, ch, cw), size, colour, flip, jitter, draw(st.integers(0, 2**16))


@settings(max_examples=150, deadline=None)
@given(_case())
@example(((1, 1), (0, 0, 1, 1), (1, 1), True, True, (1.2, 0.8, 1.1), 0))
@example(((9, 7), (1, 2, 7, 5), (7, 5), True, True, (1.2, 0.8, 1.1), 1))  # same size
@example(((40, 33), (0, 0, 40, 33), (3, 17), True, True, (0.9, 1.3, 0.7), 2))  # shrink
@example(((5, 31), (0, 3, 5, 27), (36, 2), False, True, None, 3))  # odd, non-square
def test_crop_into_is_the_documented_crop(case: tuple) -> None:
    """Exactly the step-by-step reference, into a batch view or a standalone array, and
    the scratch buffer of one crop does not leak into the next."""
    (sh, sw), box, size, colour, flip, jitter, seed = case
    rng = np.random.default_rng(seed)
    shape = (sh, sw, 3) if colour else (sh, sw)
    src = cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (3, 3), 0)
    kept = src.copy()
    want = _reference(src, box, size, flip, jitter)
    batch = np.full((2, *size, *shape[2:]), 7, np.uint8)
    got = crop_into(src, box, batch[1], flip, jitter)
    assert got.shape == want.shape and np.array_equal(got, want)
    assert np.array_equal(batch[1], want) and (batch[0] == 7).all()
    # a second crop of other data through the same scratch memory
    other = 255 - src
    again = crop_into(other, box, np.empty_like(want), flip, jitter)
    assert np.array_equal(again, _reference(other, box, size, flip, jitter))
    assert np.array_equal(src, kept)  # the source is untouched
