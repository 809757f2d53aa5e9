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


def resize(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an image or a matte: area filter when shrinking by 2x or more, bilinear
    otherwise (below 2x bilinear does not alias and OpenCV's non-integer area filter is
    several times slower).  Never nearest."""
    import cv2

    h, w = arr.shape[:2]
    if (h, w) == (height, width):
        return arr
    interp = cv2.INTER_AREA if h >= 2 * height and w >= 2 * width else cv2.INTER_LINEAR
    return cv2.resize(arr, (width, height), interpolation=interp)


def crop_resize(arr: np.ndarray, box: Box, height: int, width: int) -> np.ndarray:
    y0, x0, ch, cw = box
    return resize(np.ascontiguousarray(arr[y0 : y0 + ch, x0 : x0 + cw]), height, width)


#: ITU-R 601 luma weights (R, G, B).
LUMA = np.array([0.299, 0.587, 0.114])


def color_jitter(
    rgb: np.ndarray, rng: np.random.Generator, brightness: float, contrast: float, saturation: float
) -> np.ndarray:
    """Brightness, contrast and saturation jitter of an RGB ``uint8`` image.

    Factors ``b, c, s`` are drawn from ``[1 - amp, 1 + amp]``; with ``m`` the mean luma
    of ``x`` and ``L`` the luma row vector, the three steps ``y = b x``,
    ``y' = c y + (1 - c) b m`` and ``z = s y' + (1 - s) L y'`` compose into one affine
    colour transform ``z = c b (s I + (1 - s) 1 L) x + (1 - c) b m`` (the rows of the
    saturation matrix sum to 1), applied in a single OpenCV pass with rounding and
    saturation to uint8.
    """
    import cv2

    b = rng.uniform(1 - brightness, 1 + brightness)
    c = rng.uniform(1 - contrast, 1 + contrast)
    s = rng.uniform(1 - saturation, 1 + saturation)
    if b == c == s == 1.0:
        return rgb
    m = float(np.dot(cv2.mean(rgb)[:3], LUMA))
    sat = s * np.eye(3) + (1.0 - s) * np.tile(LUMA, (3, 1))
    mat = np.empty((3, 4))
    mat[:, :3] = c * b * sat
    mat[:, 3] = (1.0 - c) * b * m
    return cv2.transform(rgb, mat)


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
    """Random resized crop to ``size = (H, W)``, horizontal flip, colour jitter.

    Returns ``(image (H,W,3) uint8, alpha (H,W) uint8, ignore (H,W) uint8 | None)``; the
    ignore mask is resized bilinearly and re-binarised at 128 (any doubt stays ignored
    above half coverage).
    """
    height, width = size
    box = random_crop_box(*alpha.shape, rng, width / height, cfg.scale, cfg.ratio)
    image = crop_resize(image, box, height, width)
    alpha = crop_resize(alpha, box, height, width)
    if ignore is not None:
        ignore = np.where(crop_resize(ignore, box, height, width) >= 128, 255, 0).astype(np.uint8)
    if rng.random() < cfg.flip:
        import cv2

        image, alpha = cv2.flip(image, 1), cv2.flip(alpha, 1)
        ignore = cv2.flip(ignore, 1) if ignore is not None else None
    image = color_jitter(image, rng, cfg.brightness, cfg.contrast, cfg.saturation)
    return image, alpha, ignore


def eval_transform(
    image: np.ndarray, alpha: np.ndarray, size: tuple[int, int], ignore: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Deterministic centre crop of aspect ``W/H`` resized to ``size = (H, W)``."""
    height, width = size
    box = center_box(*alpha.shape, width / height)
    image = crop_resize(image, box, height, width)
    alpha = crop_resize(alpha, box, height, width)
    if ignore is not None:
        ignore = np.where(crop_resize(ignore, box, height, width) >= 128, 255, 0).astype(np.uint8)
    return image, alpha, ignore
