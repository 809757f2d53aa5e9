"""The bad-file corpus through matdata.imageio, and through a folder scan that must not abort.

Every kind of file gets the outcome documented in docs/sources.md ("Bad files").
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matdata import imageio
from matdata.errors import ImageDecodeError
from matdata.rejects import Reject
from matdata.sources.base import Item
from matdata.sources.folder import FolderSource

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 255, (48, 64, 3), dtype=np.uint8)


def save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def png_header_only(w: int, h: int) -> bytes:
    """A valid PNG signature + IHDR declaring ``w x h`` 8-bit gray, with a token IDAT."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + png_chunk(b"IEND", b"")
    )


def exif_rotated_jpeg() -> tuple[bytes, np.ndarray]:
    """A 64x32 JPEG tagged orientation 6 (display rotated 90 degrees clockwise)."""
    raw = np.zeros((32, 64, 3), np.uint8)
    raw[:, :32] = (255, 0, 0)  # left half red
    raw[:, 32:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6
    data = save(Image.fromarray(raw), "JPEG", quality=95, exif=exif.tobytes())
    undecorated = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # raw pixel order
    return data, np.rot90(undecorated, k=-1)  # clockwise, as the tag asks


PALETTE = [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12)


def palette_png(transparent: bool) -> bytes:
    idx = (np.arange(40 * 30) % 4).reshape(30, 40).astype(np.uint8)
    img = Image.fromarray(idx, "P")
    img.putpalette(PALETTE)
    return save(img, "PNG", **({"transparency": 0} if transparent else {}))


def make_corpus() -> dict[str, bytes]:
    good_jpg = save(Image.fromarray(RGB), "JPEG", quality=90)
    good_png = save(Image.fromarray(RGB), "PNG")
    rgba = np.dstack([RGB, np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))])
    return {
        "trunc_jpeg.jpg": good_jpg[: len(good_jpg) // 2],
        "trunc_png.png": good_png[: len(good_png) // 2],
        "zero.jpg": b"",
        "text.jpg": b"this is not an image, just text named .jpg\n",
        "one.png": save(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"),
        "huge.png": png_header_only(100_000, 100_000),  # over PIL's own bomb limit
        "bomb.png": png_header_only(12_000, 9_000),  # over matdata's 64 MP guard only
        "anim.gif": save(Image.new("RGB", (32, 32), (9, 9, 9)), "GIF"),
        "cmyk.jpg": save(Image.new("RGB", (32, 24), (200, 50, 30)).convert("CMYK"), "JPEG"),
        "sixteen.png": save(Image.fromarray(np.full((24, 32), 32768, np.uint16)), "PNG"),
        "gray.jpg": save(Image.fromarray(RGB[..., 1]), "JPEG", quality=95),
        "palette.png": palette_png(False),
        "palette_alpha.png": palette_png(True),
        "exif6.jpg": exif_rotated_jpeg()[0],
        "rgba.png": save(Image.fromarray(rgba, "RGBA"), "PNG"),
        "photo.webp": save(Image.fromarray(RGB), "WEBP", lossless=True),
    }


#: The documented outcome of decode_image per corpus file: a reject reason or "ok".
DECODE_OUTCOME = {
    "trunc_jpeg.jpg": "truncated",
    "trunc_png.png": "truncated",
    "zero.jpg": "zero_size",
    "text.jpg": "not_an_image",
    "one.png": "too_small",
    "huge.png": "too_large",
    "bomb.png": "too_large",
    "anim.gif": "unsupported_format",
    "cmyk.jpg": "ok",
    "sixteen.png": "ok",
    "gray.jpg": "ok",
    "palette.png": "ok",
    "palette_alpha.png": "ok",
    "exif6.jpg": "ok",
    "rgba.png": "ok",
    "photo.webp": "ok",
}

CORPUS = make_corpus()


def outcome(fn, data: bytes, name: str) -> str:
    try:
        fn(data, name)
    except ImageDecodeError as err:
        assert err.name == name and name in str(err)  # the error names the file
        return err.reason
    return "ok"


def test_corpus_decode_outcomes() -> None:
    got = {name: outcome(imageio.decode_image, data, name) for name, data in CORPUS.items()}
    assert got == DECODE_OUTCOME


def test_corpus_decodes_to_the_fixed_layout() -> None:
    for name, want in DECODE_OUTCOME.items():
        if want != "ok":
            continue
        arr = imageio.decode_image(CORPUS[name], name)
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, name


def test_colour_conversions() -> None:
    cmyk = imageio.decode_image(CORPUS["cmyk.jpg"])
    assert np.abs(cmyk.astype(int) - (200, 50, 30)).max() <= 3
    six = imageio.decode_image(CORPUS["sixteen.png"])
    assert (six == 128).all()  # 32768 / 65535 * 255 = 127.5 -> 128
    assert (imageio.decode_alpha(CORPUS["sixteen.png"]) == 128).all()
    gray = imageio.decode_image(CORPUS["gray.jpg"])
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    assert np.abs(gray[..., 0].astype(int) - RGB[..., 1]).mean() < 4
    pal = imageio.decode_image(CORPUS["palette.png"])
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    idx = (np.arange(40 * 30) % 4).reshape(30, 40)
    np.testing.assert_array_equal(pal, colours[idx])
    _, alpha = imageio.decode_rgba(CORPUS["palette_alpha.png"])
    np.testing.assert_array_equal(alpha, np.where(idx == 0, 0, 255))
    rgb, alpha = imageio.decode_rgba(CORPUS["rgba.png"])
    np.testing.assert_array_equal(rgb, RGB)
    np.testing.assert_array_equal(alpha[0], np.arange(64) * 4)
    np.testing.assert_array_equal(imageio.decode_image(CORPUS["photo.webp"]), RGB)


def test_exif_orientation_is_applied_by_decode_and_probe() -> None:
    data, expected = exif_rotated_jpeg()
    arr = imageio.decode_image(data, "exif6.jpg")
    assert arr.shape == (64, 32, 3)
    np.testing.assert_array_equal(arr, expected)
    assert arr[5, 16, 0] > 200 and arr[60, 16, 2] > 200  # red on top, blue below
    assert imageio.probe(data)[:2] == (32, 64)


def test_wrong_channel_counts() -> None:
    assert outcome(imageio.decode_rgba, CORPUS["cmyk.jpg"], "x") == "bad_channels"
    assert outcome(imageio.decode_alpha, CORPUS["palette.png"], "x") == "bad_channels"
    assert outcome(imageio.decode_alpha, CORPUS["gray.jpg"], "x") == "ok"


def test_probe_reports_header_sizes_and_bombs() -> None:
    assert outcome(imageio.probe, CORPUS["huge.png"], "huge.png") == "too_large"
    assert imageio.probe(CORPUS["bomb.png"]) == (12_000, 9_000, "PNG")
    assert imageio.probe(CORPUS["trunc_jpeg.jpg"]) == (64, 48, "JPEG")  # header is intact
    assert outcome(imageio.probe, b"", "z") == "zero_size"
    assert outcome(imageio.probe, CORPUS["text.jpg"], "t") == "not_an_image"


# ----------------------------------------------------------- the corpus through a scan


def write_corpus(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in CORPUS.items():
        (root / name).write_bytes(data)


def scan(root: Path, **opts) -> dict[str, str]:
    got: dict[str, str] = {}
    for x in FolderSource(str(root), **opts).scan():
        if isinstance(x, Item):
            got[Path(x.image).name] = "ok"
        else:
            assert isinstance(x, Reject)
            got[Path(x.path).name] = x.reason
    return got


def test_background_folder_scan_over_the_whole_corpus(tmp_path: Path) -> None:
    write_corpus(tmp_path / "c")
    expected = dict(DECODE_OUTCOME)
    expected["anim.gif"] = "unexpected_file"  # not an image extension the sources take
    assert scan(tmp_path / "c", mode="bg") == expected


def test_cutout_folder_scan_over_the_whole_corpus(tmp_path: Path) -> None:
    write_corpus(tmp_path / "c")
    got = scan(tmp_path / "c", mode="rgba")
    usable = {k for k, v in got.items() if v == "ok"}
    assert usable == {"rgba.png", "palette_alpha.png"}
    for name in ("cmyk.jpg", "gray.jpg", "sixteen.png", "palette.png", "exif6.jpg"):
        assert got[name] == "bad_channels", name
    assert got["trunc_png.png"] == "truncated" and got["zero.jpg"] == "zero_size"


def test_probe_mode_scan_documented_outcomes(tmp_path: Path) -> None:
    write_corpus(tmp_path / "c")
    got = scan(tmp_path / "c", mode="bg", verify="probe")
    # header-only: truncation after an intact header is not seen; sizes still are
    assert got["trunc_jpeg.jpg"] == "ok" and got["trunc_png.png"] == "ok"
    assert got["huge.png"] == "too_large" and got["bomb.png"] == "too_large"
    assert got["one.png"] == "too_small" and got["text.jpg"] == "not_an_image"


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_load_image_from_a_memory_url(name: str) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe(f"/corpus/{name}", CORPUS[name])
    try:
        imageio.load_image(f"memory://corpus/{name}")
        got = "ok"
    except ImageDecodeError as err:
        got = err.reason
    assert got == DECODE_OUTCOME[name]
    with pytest.raises(ImageDecodeError) as ei:
        imageio.load_image("memory://corpus/does-not-exist.jpg")
    assert ei.value.reason == "unreadable"


def test_fast_decode_jpeg_orders_and_reductions() -> None:
    from matdata.imageio import encode_jpeg, fast_decode_jpeg

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    data = encode_jpeg(img, 95)
    rgb = fast_decode_jpeg(data)
    assert np.array_equal(fast_decode_jpeg(data, "bgr"), rgb[:, :, ::-1])
    grey = fast_decode_jpeg(data, "grey")
    assert grey.shape == (64, 48)
    luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    assert np.abs(grey - luma).mean() < 1.5
    assert fast_decode_jpeg(data, "rgb", 2).shape == (32, 24, 3)
    assert fast_decode_jpeg(data, "grey", 8).shape == (8, 6)
    with pytest.raises(ValueError):
        fast_decode_jpeg(data, "hsv")
    with pytest.raises(ValueError):
        fast_decode_jpeg(data, "rgb", 3)


def test_declared_size_reads_headers_only() -> None:
    """PNG / JPEG sizes from their headers (any size, odd ones too), other formats by PIL;
    the same limits as a decode, applied before any pixel is decoded."""
    import io as _io
    import struct

    from PIL import Image

    from matdata.errors import ImageDecodeError
    from matdata.imageio import (
        check_declared,
        declared_size,
        encode_jpeg,
        encode_png,
        fast_decode_jpeg,
        fast_decode_png_gray,
    )

    rng = np.random.default_rng(0)
    for h, w in ((1, 1), (17, 3), (480, 641)):
        rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        assert declared_size(encode_png(rgb)) == (w, h, "PNG")
        assert declared_size(encode_jpeg(rgb)) == (w, h, "JPEG")
        buf = _io.BytesIO()
        Image.fromarray(rgb).save(buf, "WEBP")
        assert declared_size(buf.getvalue()) == (w, h, "WEBP")
        buf = _io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", progressive=True)
        assert declared_size(buf.getvalue())[:2] == (w, h)
    for data, reason in ((b"", "zero_size"), (b"\x89PNG\r\n\x1a\n", "truncated"),
                         (b"\xff\xd8\xff", "truncated"), (b"text", "not_an_image")):  # fmt: skip
        with pytest.raises(ImageDecodeError) as err:
            declared_size(data)
        assert err.value.reason == reason
    # a PNG header declaring 30000^2 (and nothing else): refused before decoding
    body = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + body + b"\0" * 4
    with pytest.raises(ImageDecodeError, match="30000x30000 exceeds"):
        check_declared(head)
    with pytest.raises(ImageDecodeError, match="too large"):
        fast_decode_png_gray(head)
    jpeg = bytearray(encode_jpeg(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)))
    i = jpeg.index(b"\xff\xc0")
    struct.pack_into(">HH", jpeg, i + 5, 30000, 30000)
    with pytest.raises(ImageDecodeError, match="too large"):
        fast_decode_jpeg(bytes(jpeg))
    gray = encode_png(rng.integers(0, 255, (9, 7), dtype=np.uint8))
    assert fast_decode_png_gray(gray).shape == (9, 7)
    assert check_declared(gray, max_pixels=63, min_side=7) == (7, 9, "PNG")
    with pytest.raises(ImageDecodeError) as err:
        check_declared(gray, min_side=8)
    assert err.value.reason == "too_small"
