"""Training augmentations for matting samples: pure functions on numpy arrays.

Arrays follow the core conventions: RGB ``uint8 (H, W, 3)``, alpha / masks ``uint8 (H, W)``.
All randomness comes from an explicit ``rng: np.random.Generator`` so a sample's
augmentation is a function of ``(seed, epoch, rank, position)`` only (see
:mod:`modnet.data`), independent of how many loader workers produce it.

Alpha is resized with area filtering when shrinking 2x or more and bilinear otherwise
(never nearest: a nearest-resized matte loses the fractional boundary the detail branch learns).
OpenCV is used for resizing because it is the fastest well-kept resampler available here.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

Box = tuple[int, int, int, int]  # (y0, x0, height, width)


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of the training augmentation.

    ``scale``: range of the crop area as a fraction of the image area; ``ratio``: range of
    the crop aspect ratio relative to the output's; ``flip``: probability of a horizontal
    flip; ``brightness``/``contrast``/``saturation``: jitter amplitudes (factor drawn from
    ``[1 - a, 1 + a]``); ``trimap_rel_range``: relative unknown-band width range handed to
    :func:`matdata.trimap.random_trimap_params`.
    """

    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    trimap_rel_range: tuple[float, float] = (0.005, 0.03)

    def to_dict(self) -> dict:
        return {
            "scale": list(self.scale),
            "ratio": list(self.ratio),
            "flip": self.flip,
            "brightness": self.brightness,
            "contrast": self.contrast,
            "saturation": self.saturation,
            "trimap_rel_range": list(self.trimap_rel_range),
        }


def random_crop_box(
    height: int,
    width: int,
    rng: np.random.Generator,
    out_aspect: float = 1.0,
    scale: tuple[float, float] = (0.35, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    tries: int = 10,
) -> Box:
    """A random crop box for a random-resized crop.

    The box covers ``s * H * W`` pixels with ``s ~ U(scale)`` and has aspect ratio
    ``w / h = out_aspect * r`` with ``log r ~ U(log ratio)``; after ``tries`` misses it falls
    back to the largest centred box of aspect ``out_aspect``.
    """
    area = float(height * width)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(tries):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = out_aspect * math.exp(rng.uniform(log_lo, log_hi))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= width and 0 < ch <= height:
            y0 = int(rng.integers(0, height - ch + 1))
            x0 = int(rng.integers(0, width - cw + 1))
            return y0, x0, ch, cw
    return center_box(height, width, out_aspect)


def center_box(height: int, width: int, out_aspect: float = 1.0) -> Box:
    """The largest centred box with ``w / h = out_aspect``."""
    if width / height > out_aspect:
        ch, cw = height, max(1, int(round(height * out_aspect)))
    else:
        ch, cw = max(1, int(round(width / out_aspect))), width
    return (height - ch) // 2, (width - cw) // 2, ch, cw


def resize_interp(src_hw: tuple[int, int], height: int, width: int) -> int:
    """The resampling rule for images and mattes: area filter when shrinking by 2x or more
    in both directions, bilinear otherwise (below 2x bilinear does not alias and OpenCV's
    non-integer area filter is several times slower).  Never nearest."""
    import cv2

    h, w = src_hw
    return cv2.INTER_AREA if h >= 2 * height and w >= 2 * width else cv2.INTER_LINEAR


def resize(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an image or a matte with :func:`resize_interp`'s rule."""
    import cv2

    if arr.shape[:2] == (height, width):
        return arr
    return cv2.resize(
        arr, (width, height), interpolation=resize_interp(arr.shape[:2], height, width)
    )


def crop_resize(arr: np.ndarray, box: Box, height: int, width: int) -> np.ndarray:
    y0, x0, ch, cw = box
    return resize(np.ascontiguousarray(arr[y0 : y0 + ch, x0 : x0 + cw]), height, width)


#: ITU-R 601 luma weights (R, G, B).
LUMA = np.array([0.299, 0.587, 0.114])
_DIAG = (np.arange(3), np.arange(3))


def jitter_matrix(rgb: np.ndarray, b: float, c: float, s: float) -> np.ndarray:
    """The ``3 x 4`` affine colour transform of brightness ``b``, contrast ``c`` (around the
    mean luma ``m`` of ``rgb``) and saturation ``s`` factors: with ``L`` the luma row vector,
    ``y = b x``, ``y' = c y + (1 - c) b m`` and ``z = s y' + (1 - s) L y'`` compose into
    ``z = c b (s I + (1 - s) 1 L) x + (1 - c) b m`` (the rows of the saturation matrix sum
    to 1), for ``cv2.transform`` (one pass, rounding and saturating to uint8)."""
    import cv2

    m = float(np.dot(cv2.mean(rgb)[:3], LUMA))
    mat = np.empty((3, 4))
    mat[:, :3] = (c * b * (1.0 - s)) * LUMA
    mat[_DIAG] += c * b * s
    mat[:, 3] = (1.0 - c) * b * m
    return mat


def draw_jitter(
    rng: np.random.Generator, brightness: float, contrast: float, saturation: float
) -> tuple[float, float, float]:
    """Brightness, contrast and saturation factors drawn from ``[1 - amp, 1 + amp]``."""
    return (
        float(rng.uniform(1 - brightness, 1 + brightness)),
        float(rng.uniform(1 - contrast, 1 + contrast)),
        float(rng.uniform(1 - saturation, 1 + saturation)),
    )


def color_jitter(
    rgb: np.ndarray, rng: np.random.Generator, brightness: float, contrast: float, saturation: float
) -> np.ndarray:
    """Brightness, contrast and saturation jitter of an RGB ``uint8`` image: factors from
    :func:`draw_jitter`, applied as :func:`jitter_matrix`."""
    import cv2

    b, c, s = draw_jitter(rng, brightness, contrast, saturation)
    if b == c == s == 1.0:
        return rgb
    return cv2.transform(rgb, jitter_matrix(rgb, b, c, s))


def draw_augment(
    shape_hw: tuple[int, int], rng: np.random.Generator, size: tuple[int, int], cfg: AugmentConfig
) -> tuple[Box, bool, tuple[float, float, float]]:
    """The random draws of one training sample, in this order: crop box
    (:func:`random_crop_box` for output ``size = (H, W)``), flip, jitter factors."""
    height, width = size
    box = random_crop_box(*shape_hw, rng, width / height, cfg.scale, cfg.ratio)
    flip = bool(rng.random() < cfg.flip)
    return box, flip, draw_jitter(rng, cfg.brightness, cfg.contrast, cfg.saturation)


def crop_into(
    src: np.ndarray,
    box: Box,
    dst: np.ndarray,
    flip: bool = False,
    jitter: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """``dst <- jitter(flip(resize(src[box])))`` for an image or a matte, in one pass per
    step with the last one written into ``dst`` (any uint8 array or view of the output
    shape).  Resizing follows :func:`resize_interp`.  Flip and jitter
    (:func:`jitter_matrix`, contrast around the mean luma of the pixels it sees) are per
    pixel, so they run before the resize when the crop has fewer pixels than ``dst``
    (flipped into a reused scratch buffer, jittered there in place) and after it otherwise
    (in place in ``dst``).  The result does not depend on the order: the mean of the
    crop is the same flipped or not.
    """
    import cv2

    y0, x0, ch, cw = box
    crop = src[y0 : y0 + ch, x0 : x0 + cw]
    h, w = dst.shape[:2]
    jit = jitter is not None and jitter != (1.0, 1.0, 1.0)
    if not (flip or jit):
        return _resize_into(crop, dst)
    if ch * cw < h * w:
        t = _scratch(crop.shape)
        if flip:
            cv2.flip(crop, 1, dst=t)
        if jit:
            cv2.transform(t if flip else crop, jitter_matrix(crop, *jitter), dst=t)  # type: ignore[misc]
        return _resize_into(t, dst)
    _resize_into(crop, dst)
    if flip:
        _written(cv2.flip(dst, 1, dst=dst), dst)
    if jit:
        _written(cv2.transform(dst, jitter_matrix(dst, *jitter), dst=dst), dst)  # type: ignore[misc]
    return dst


_SCRATCH = threading.local()


def _scratch(shape: tuple[int, ...]) -> np.ndarray:
    """A uint8 array of ``shape`` on this thread's reused scratch memory (its contents are
    undefined; valid until the next call).  Fresh arrays of a crop's size come from the
    system for many crops (page faults cost about as much as the flip itself)."""
    n = int(np.prod(shape))
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.size < n:
        buf = _SCRATCH.buf = np.empty(max(n, 1 << 20), np.uint8)
    return buf[:n].reshape(shape)


def _resize_into(
    src: np.ndarray, dst: np.ndarray | None, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Resize ``src`` to ``dst``'s shape (or ``size = (H, W)`` into a new array)."""
    import cv2

    h, w = dst.shape[:2] if dst is not None else size  # type: ignore[misc]
    if src.shape[:2] == (h, w):
        if dst is None:
            return src
        np.copyto(dst, src)
        return dst
    interp = resize_interp(src.shape[:2], h, w)
    out = cv2.resize(src, (w, h), dst=dst, interpolation=interp)
    return out if dst is None else _written(out, dst)


def binarize(mask: np.ndarray) -> np.ndarray:
    """``mask <- 255 where mask >= 128 else 0``, in place (a resized ignore mask)."""
    import cv2

    return _written(cv2.threshold(mask, 127, 255, cv2.THRESH_BINARY, dst=mask)[1], mask)


def _written(res: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """OpenCV put ``res`` in ``dst`` (copy it there if it had to allocate)."""
    if res is not dst and not np.shares_memory(res, dst):
        np.copyto(dst, res)
    return dst


def recompose(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Composite ``I = a F + (1 - a) B`` (``a = alpha / 255``); ``bg`` is resized to fit."""
    h, w = alpha.shape
    bg = crop_resize(bg, center_box(*bg.shape[:2], w / h), h, w)
    a = alpha.astype(np.float32)[..., None] / 255.0
    out = a * fg.astype(np.float32) + (1.0 - a) * bg.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def augment(
    image: np.ndarray,
    alpha: np.ndarray,
    rng: np.random.Generator,
    size: tuple[int, int],
    cfg: AugmentConfig,
    ignore: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Random resized crop to ``size = (H, W)``, horizontal flip, colour jitter: the
    training loader's transform (:func:`draw_augment`, :func:`crop_into`) on new arrays.

    Returns ``(image (H,W,3) uint8, alpha (H,W) uint8, ignore (H,W) uint8 | None)``; the
    ignore mask is resized bilinearly and re-binarised at 128 (any doubt stays ignored
    above half coverage).
    """
    box, flip, jitter = draw_augment(alpha.shape, rng, size, cfg)
    return _crop_all(image, alpha, ignore, box, size, flip, jitter)


def eval_transform(
    image: np.ndarray, alpha: np.ndarray, size: tuple[int, int], ignore: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Deterministic centre crop of aspect ``W/H`` resized to ``size = (H, W)``."""
    box = center_box(*alpha.shape, size[1] / size[0])
    return _crop_all(image, alpha, ignore, box, size, False, None)


def _crop_all(
    image: np.ndarray,
    alpha: np.ndarray,
    ignore: np.ndarray | None,
    box: Box,
    size: tuple[int, int],
    flip: bool,
    jitter: tuple[float, float, float] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    h, w = size
    out_i = crop_into(image, box, np.empty((h, w, 3), np.uint8), flip, jitter)
    out_a = crop_into(alpha, box, np.empty((h, w), np.uint8), flip)
    out_g = None
    if ignore is not None:
        out_g = binarize(crop_into(ignore, box, np.empty((h, w), np.uint8), flip))
    return out_i, out_a, out_g
