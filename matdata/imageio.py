"""Safe image decoding and deterministic encoding: the one module every reader goes through.

Conventions (everywhere in matdata):

* colour images are ``uint8`` arrays of shape ``(H, W, 3)`` in **RGB** order;
* alpha mattes, masks and trimaps are ``uint8`` arrays of shape ``(H, W)``;
* EXIF orientation is applied on decode, so an image and its matte stay aligned.

Every failure raises :class:`~matdata.errors.ImageDecodeError` with the file name and a
reason code from :data:`DECODE_REASONS`; nothing here prints, retries or falls back.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from matdata.errors import ImageDecodeError

#: Reason codes an :class:`ImageDecodeError` may carry.
DECODE_REASONS = (
    "zero_size",  # the file is empty
    "not_an_image",  # no known image signature (e.g. text named .jpg)
    "unsupported_format",  # an image, but not JPEG / PNG / WebP
    "truncated",  # the stream ends early or is corrupt
    "too_large",  # declared dimensions beyond max_pixels (decompression-bomb guard)
    "too_small",  # a side below min_side
    "bad_channels",  # a channel layout that cannot give what was asked for
    "unreadable",  # the path could not be opened / read
)

#: Formats accepted on decode.
FORMATS = ("JPEG", "PNG", "WEBP", "MPO")

#: Default decompression-bomb guard: 64 megapixels (a 8000x8000 photo).
MAX_PIXELS = 64_000_000

#: Default smallest side of a usable image.
MIN_SIDE = 16


def read_bytes(path: str, max_bytes: int | None = None) -> bytes:
    """Read a local path or any fsspec URL (``s3://``, ``gcs://``, ``memory://``...) whole.

    ``max_bytes``: refuse (``too_large``) a file longer than that, reading at most one
    byte more.
    """
    limit = -1 if max_bytes is None else max_bytes + 1
    try:
        if "://" in path:
            import fsspec

            with fsspec.open(path, "rb") as f:
                data = f.read(limit)
        else:
            with open(path, "rb") as f:
                data = f.read(limit)
    except (OSError, ValueError) as exc:
        raise ImageDecodeError(path, "unreadable", str(exc)) from exc
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageDecodeError(path, "too_large", f"file larger than {max_bytes} bytes")
    return data


_PNG_SIG = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (SOF0..SOF15 less DHT, JPG and DAC), which carry the size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the first start-of-frame segment of JPEG ``data``; None
    when the segments end before one (truncated or not a JPEG)."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers: no length
            i += 2
            continue
        (length,) = struct.unpack_from(">H", data, i + 2)
        if marker in _JPEG_SOF:
            if i + 9 > n:
                return None
            h, w = struct.unpack_from(">HH", data, i + 5)
            return w, h
        if length < 2:
            return None
        i += 2 + length
    return None


def _lazy_open(data: bytes, name: str) -> Image.Image:
    """PIL's lazy open (header only, no pixels), every failure an :class:`ImageDecodeError`.

    PIL warns before it errors on bombs; sizes are checked by the callers, so the warning
    is silenced (PIL still refuses > 2x its pixel limit on open: ``too_large``)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(name, "not_an_image") from exc
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(name, "too_large", str(exc)) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(name, "truncated", str(exc)) from exc


def declared_size(data: bytes, name: str = "<bytes>") -> tuple[int, int, str]:
    """``(width, height, format)`` an image's header declares, read without decoding any
    pixel (PNG and JPEG parsed here, in microseconds; other formats by PIL's lazy open).

    The size is as stored (before EXIF orientation, which only swaps the sides).
    """
    if len(data) == 0:
        raise ImageDecodeError(name, "zero_size")
    if data[:8] == _PNG_SIG:
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageDecodeError(name, "truncated", "no PNG header")
        w, h = struct.unpack_from(">II", data, 16)
        return w, h, "PNG"
    if data[:2] == b"\xff\xd8":
        size = _jpeg_size(data)
        if size is None:
            raise ImageDecodeError(name, "truncated", "no JPEG frame header")
        return size[0], size[1], "JPEG"
    img = _lazy_open(data, name)
    return img.size[0], img.size[1], str(img.format)


def check_size(
    width: int, height: int, name: str, *, max_pixels: int = MAX_PIXELS, min_side: int = 1
) -> None:
    """The size limits every decode applies: ``too_large`` beyond ``max_pixels`` (the
    decompression-bomb guard), ``too_small`` below ``min_side`` (and for a side of 0)."""
    if width * height > max_pixels:
        raise ImageDecodeError(name, "too_large", f"{width}x{height} exceeds {max_pixels} pixels")
    side = max(min_side, 1)
    if min(width, height) < side:
        raise ImageDecodeError(
            name, "too_small", f"{width}x{height}, smallest side must be >= {side}"
        )


def check_declared(
    data: bytes, name: str = "<bytes>", *, max_pixels: int = MAX_PIXELS, min_side: int = 1
) -> tuple[int, int, str]:
    """:func:`declared_size` checked against :func:`check_size` *before* anything is
    decoded: the one guard every decode path of matdata goes through (a small file that
    declares 30000x30000 pixels must not allocate gigabytes)."""
    w, h, fmt = declared_size(data, name)
    check_size(w, h, name, max_pixels=max_pixels, min_side=min_side)
    return w, h, fmt


def _open(data: bytes, name: str, max_pixels: int, min_side: int) -> Image.Image:
    """Open and fully decode ``data`` with every check applied; returns an oriented image."""
    if len(data) == 0:
        raise ImageDecodeError(name, "zero_size")
    img = _lazy_open(data, name)
    if img.format not in FORMATS:
        raise ImageDecodeError(name, "unsupported_format", str(img.format))
    w, h = img.size
    check_size(w, h, name, max_pixels=max_pixels, min_side=min_side)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
            # in place: without it Pillow returns a copy even when nothing is rotated
            ImageOps.exif_transpose(img, in_place=True)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(name, "too_large", str(exc)) from exc
    except (OSError, SyntaxError, ValueError, IndexError, struct.error) as exc:
        raise ImageDecodeError(name, "truncated", str(exc)) from exc
    return img


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale 16-bit / 32-bit integer data to 8 bits with rounding (65535 -> 255)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    a = arr.astype(np.int64)
    top = 65535 if a.max(initial=0) <= 65535 else int(np.iinfo(arr.dtype).max)
    return np.clip((a * 255 + top // 2) // top, 0, 255).astype(np.uint8)


#: PIL modes whose Arrow export :func:`_pixel_view` reads: 4 bytes per pixel (RGB padded
#: with a 4th byte) or 1 byte per pixel.
_VIEW_CHANNELS = {"RGB": 4, "RGBA": 4, "L": 1}


def _pixel_view(img: Image.Image) -> np.ndarray | None:
    """A zero-copy ``(H, W, 4)`` (RGB: 4th byte padding, RGBA) or ``(H, W)`` (L) uint8 view of
    a loaded image's pixels through Pillow's Arrow export (Pillow >= 11.2), or None where it
    is not available (older Pillow, other modes, an image stored in several blocks).

    ``np.array(img)`` copies the pixels three times (PIL's raw encoder in 64 KB chunks, a
    join, numpy's copy): 1.5 ms for a 683x512 photo, about half of its JPEG decode.  Read
    through the view, the one copy a caller makes (``cv2.cvtColor``, ``.copy()``) is all;
    the pixels are the same bytes.  The view keeps the image's memory alive."""
    ch = _VIEW_CHANNELS.get(img.mode)
    if ch is None or not hasattr(img, "__arrow_c_array__"):
        return None
    w, h = img.size
    try:
        import pyarrow as pa

        arr = pa.array(img)
        flat = arr.values if ch > 1 else arr
        view = flat.to_numpy(zero_copy_only=True)
    except (ImportError, ValueError, TypeError, NotImplementedError, AttributeError):
        return None  # e.g. "Image rows are not contiguous in memory" (several blocks)
    if view.dtype != np.uint8 or view.size != w * h * ch:
        return None
    return view.reshape((h, w, ch) if ch > 1 else (h, w))


def _rgb_and_alpha(img: Image.Image, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert any PIL mode to an RGB array plus the alpha channel if the image has one."""
    import cv2

    mode = img.mode
    view = _pixel_view(img)
    if view is not None and mode == "RGB":
        return cv2.cvtColor(view, cv2.COLOR_RGBA2RGB), None
    if view is not None and mode == "RGBA":
        return cv2.cvtColor(view, cv2.COLOR_RGBA2RGB), cv2.extractChannel(view, 3)
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        gray = _to_uint8(np.asarray(img))
        return np.repeat(gray[:, :, None], 3, axis=2), None
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(img.convert("RGBA"))
        # copies (never views of PIL's read-only buffer, even where a slice is contiguous)
        return rgba[:, :, :3].copy(), rgba[:, :, 3].copy()
    if mode == "RGB":  # one copy out of PIL (convert("RGB") would copy once more)
        return np.array(img), None
    if mode in ("L", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(img.convert("RGB")).copy(), None
    raise ImageDecodeError(name, "bad_channels", f"PIL mode {mode!r}")


def decode_image(
    data: bytes, name: str = "<bytes>", *, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE
) -> np.ndarray:
    """Decode JPEG / PNG / WebP bytes to an ``(H, W, 3)`` uint8 RGB array.

    Grayscale, palette, CMYK and 16-bit inputs are converted to RGB; an alpha channel, if
    any, is dropped (use :func:`decode_rgba` to keep it).
    """
    rgb, _ = _rgb_and_alpha(_open(data, name, max_pixels, min_side), name)
    return rgb


def decode_rgba(
    data: bytes, name: str = "<bytes>", *, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a cut-out with transparency to ``(rgb (H,W,3), alpha (H,W))`` uint8 arrays.

    Raises ``bad_channels`` when the image has no alpha channel.
    """
    rgb, alpha = _rgb_and_alpha(_open(data, name, max_pixels, min_side), name)
    if alpha is None:
        raise ImageDecodeError(name, "bad_channels", "expected an alpha channel (RGBA / LA)")
    return rgb, alpha


def decode_alpha(
    data: bytes,
    name: str = "<bytes>",
    *,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
    channel: str = "auto",
) -> np.ndarray:
    """Decode a matte to an ``(H, W)`` uint8 array.

    ``channel="auto"``: the alpha channel of RGBA / LA images (AISegment mattes), else the
    gray level of a 1-channel image (8- or 16-bit, scaled to 8-bit).  A colour image
    without alpha is refused (``bad_channels``) unless its three channels are equal.
    ``channel="alpha"`` insists on an alpha channel; ``channel="gray"`` takes luminance.
    """
    img = _open(data, name, max_pixels, min_side)
    if channel == "gray":
        return np.asarray(img.convert("L")).copy()
    mode = img.mode
    view = _pixel_view(img) if mode in ("RGBA", "L") else None
    if view is not None:  # the alpha band or the gray level, one copy
        if mode == "RGBA":
            import cv2

            return cv2.extractChannel(view, 3)
        if channel == "auto":
            return view.copy()
    if mode in ("L", "1", "I;16", "I;16B", "I;16L", "I", "F") and channel == "auto":
        return np.array(_to_uint8(np.asarray(img)))  # a writable copy
    if mode in ("RGBA", "LA"):  # the alpha band alone (no copy of the colours)
        return np.array(img.getchannel("A"))
    rgb, alpha = _rgb_and_alpha(img, name)
    if alpha is not None:
        return alpha
    if (
        channel == "auto"
        and np.array_equal(rgb[:, :, 0], rgb[:, :, 1])
        and np.array_equal(rgb[:, :, 0], rgb[:, :, 2])
    ):
        return rgb[:, :, 0].copy()
    raise ImageDecodeError(name, "bad_channels", f"a matte needs 1 channel or alpha, got {mode}")


def probe(data: bytes, name: str = "<bytes>") -> tuple[int, int, str]:
    """Header-only look: ``(width, height, format)`` after EXIF orientation, without decoding."""
    if len(data) == 0:
        raise ImageDecodeError(name, "zero_size")
    img = _lazy_open(data, name)
    w, h = img.size
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block only loses the orientation
        orientation = 1
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return w, h, str(img.format)


def load_image(path: str, **kw: Any) -> np.ndarray:
    """:func:`decode_image` of a local path or fsspec URL."""
    return decode_image(read_bytes(path), path, **kw)


def load_alpha(path: str, **kw: Any) -> np.ndarray:
    """:func:`decode_alpha` of a local path or fsspec URL."""
    return decode_alpha(read_bytes(path), path, **kw)


# --------------------------------------------------------------------------- encoding
# OpenCV's encoders are deterministic for fixed parameters and several times faster than
# PIL's on large images; both take RGB here and convert once.


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 RGB array as baseline JPEG (4:2:0, no metadata)."""
    import cv2

    _check_image(rgb, 3)
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:  # pragma: no cover - OpenCV only fails on invalid input, checked above
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


#: zlib settings of the PNGs matdata writes.  Masks (alpha, trimap, ignore: one channel,
#: long runs of 0 and 255) use level 1, the run-length strategy and no row filter: on 512 px
#: portrait mattes about 3.7x faster to encode than level 3 with adaptive filters, at about
#: the same size (``benchmarks/png_settings.py``).  RGB keeps level 3 with adaptive filters.
#: Pixels are the same either way (PNG is lossless); only the bytes differ.
PNG_MASK_PARAMS = (
    ("IMWRITE_PNG_COMPRESSION", 1),
    ("IMWRITE_PNG_STRATEGY", "IMWRITE_PNG_STRATEGY_RLE"),
    ("IMWRITE_PNG_FILTER", "IMWRITE_PNG_FILTER_NONE"),
)
PNG_RGB_PARAMS = (("IMWRITE_PNG_COMPRESSION", 3),)


def _png_params(spec: tuple[tuple[str, Any], ...]) -> list[int]:
    import cv2

    out: list[int] = []
    for key, value in spec:
        out += [getattr(cv2, key), getattr(cv2, value) if isinstance(value, str) else value]
    return out


def encode_png(arr: np.ndarray) -> bytes:
    """Encode an ``(H, W)`` uint8 mask (:data:`PNG_MASK_PARAMS`) or ``(H, W, 3)`` uint8 RGB
    array (:data:`PNG_RGB_PARAMS`) as PNG."""
    import cv2

    if arr.ndim == 3:
        _check_image(arr, 3)
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
        params = _png_params(PNG_RGB_PARAMS)
    else:
        _check_image(arr, None)
        params = _png_params(PNG_MASK_PARAMS)
    ok, buf = cv2.imencode(".png", arr, params)
    if not ok:  # pragma: no cover
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def _check_image(arr: np.ndarray, channels: int | None) -> None:
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8, got {arr.dtype}")
    if channels is None and arr.ndim != 2:
        raise ValueError(f"expected an (H, W) array, got shape {arr.shape}")
    if channels is not None and (arr.ndim != 3 or arr.shape[2] != channels):
        raise ValueError(f"expected an (H, W, {channels}) array, got shape {arr.shape}")


def fast_decode_jpeg(data: bytes, order: str = "rgb", reduce: int = 1) -> np.ndarray:
    """Decode JPEG bytes that matdata itself wrote (no EXIF, 8-bit RGB) with OpenCV.

    For the hot path of readers of built shards; untrusted input goes through
    :func:`decode_image`.  ``order``: ``"rgb"`` (the library's convention), ``"bgr"``
    (OpenCV's, no conversion) or ``"grey"`` (the luma plane only: libjpeg skips the chroma
    work, about a quarter of a colour decode).  ``reduce`` 1, 2, 4 or 8: decode at that
    fraction of the size with libjpeg's scaled IDCT (for thumbnails).
    """
    import cv2

    modes = _JPEG_MODES.get((order, reduce))
    if modes is None:
        raise ValueError(f"order must be rgb|bgr|grey and reduce 1|2|4|8, got {order} {reduce}")
    check_declared(data, "<jpeg>")
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), getattr(cv2, modes))
    if arr is None:
        raise ImageDecodeError("<jpeg>", "truncated")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB) if order == "rgb" else arr


#: OpenCV read-mode names of :func:`fast_decode_jpeg` by ``(order, reduce)``.
_JPEG_MODES = {
    **{
        (o, 1): "IMREAD_GRAYSCALE" if o == "grey" else "IMREAD_COLOR"
        for o in ("rgb", "bgr", "grey")
    },
    **{
        (o, f): f"IMREAD_REDUCED_{'GRAYSCALE' if o == 'grey' else 'COLOR'}_{f}"
        for o in ("rgb", "bgr", "grey")
        for f in (2, 4, 8)
    },
}


def fast_decode_png_gray(data: bytes) -> np.ndarray:
    """Decode an 8-bit single-channel PNG that matdata wrote (alpha, trimap, ignore)."""
    import cv2

    check_declared(data, "<png>")
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 2:
        raise ImageDecodeError("<png>", "truncated" if arr is None else "bad_channels")
    return arr


Decoder = Callable[[bytes, str], np.ndarray]
