"""Folder source: image + alpha pairs, RGBA cut-outs and background folders."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matdata.errors import ConfigError, ItemError
from matdata.rejects import Reject
from matdata.sources.base import Item, assign_split
from matdata.sources.folder import FolderSource

W, H = 40, 30


def enc(arr: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, fmt)
    return buf.getvalue()


def rgb(seed: int, size=(W, H)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)


def alpha(seed: int, size=(W, H)) -> np.ndarray:
    return np.random.default_rng(100 + seed).integers(0, 256, (size[1], size[0]), dtype=np.uint8)


def put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def collect(src: FolderSource) -> tuple[list[Item], list[Reject]]:
    out = list(src.scan())
    return [x for x in out if isinstance(x, Item)], [x for x in out if isinstance(x, Reject)]


def build_pairs(root: Path) -> dict[str, np.ndarray]:
    truth = {}
    for i, stem in enumerate(["anna-01", "anna-02", "ben-01"]):
        put(root / "images" / f"{stem}.png", enc(rgb(i)))
        a = alpha(i)
        put(root / "alphas" / f"{stem}.png", enc(a))
        truth[stem] = a
    # nested folder, JPEG image, 16-bit alpha
    put(root / "images" / "studio" / "cara-01.jpg", enc(rgb(5), "JPEG"))
    a16 = (alpha(5).astype(np.uint16) * 257).astype(np.uint16)
    put(root / "alphas" / "studio" / "cara-01.png", enc(a16))
    truth["studio/cara-01"] = alpha(5)
    put(root / "images" / "dan-01.png", enc(rgb(6)))  # missing_matte
    put(root / "alphas" / "ghost.png", enc(alpha(7)))  # missing_image
    put(root / "images" / "anna-01.jpg", enc(rgb(0), "JPEG"))  # duplicate stem
    put(root / "images" / "eve-01.png", enc(rgb(8)))
    put(root / "alphas" / "eve-01.png", enc(alpha(8, (W + 1, H))))  # size_mismatch
    put(root / "images" / "fay-01.png", enc(rgb(9)))
    put(root / "alphas" / "fay-01.png", enc(alpha(9))[:80])  # truncated
    put(root / "images" / "._anna-01.png", b"\x00\x05\x16\x07")  # macos_resource_fork
    put(root / "README.txt", b"my data")  # unexpected_file
    return truth


def test_pairs_counts_and_pixels(tmp_path: Path) -> None:
    truth = build_pairs(tmp_path)
    src = FolderSource(str(tmp_path))
    items, rejects = collect(src)
    assert src.resolved_mode == "pairs"
    assert Counter(r.reason for r in rejects) == {
        "missing_matte": 1,
        "missing_image": 1,
        "duplicate": 1,
        "size_mismatch": 1,
        "truncated": 1,
        "macos_resource_fork": 1,
        "unexpected_file": 1,
    }
    assert len(items) + len(rejects) == src.total == 11
    by_id = {it.id: it for it in items}
    assert set(by_id) == {"anna-01", "anna-02", "ben-01", "studio_cara-01-" + by_id_suffix(by_id)}
    for it in items:
        stem = Path(it.alpha).stem if "studio" not in it.image else "studio/cara-01"
        fg = src.load_foreground(it)
        np.testing.assert_array_equal(fg.alpha, truth[stem])
        assert fg.rgb.shape == (H, W, 3) and it.role == "fg" and not it.coarse
        assert it.group == stem and it.split == assign_split(stem)
    dup = next(r for r in rejects if r.reason == "duplicate")
    assert dup.path.endswith("anna-01.png")  # anna-01.jpg sorts first and is kept
    assert by_id["anna-01"].image.endswith("anna-01.jpg")


def by_id_suffix(by_id: dict[str, Item]) -> str:
    nested = [k for k in by_id if k.startswith("studio_cara-01-")]
    assert len(nested) == 1
    return nested[0].rsplit("-", 1)[1]


def test_group_options(tmp_path: Path) -> None:
    build_pairs(tmp_path)
    items, _ = collect(FolderSource(str(tmp_path), group=r"^(?:.*/)?([a-z]+)-\d+$"))
    assert {it.group for it in items} == {"anna", "ben", "cara"}
    anna = [it for it in items if it.group == "anna"]
    assert len(anna) == 2 and len({it.split for it in anna}) == 1
    items, _ = collect(FolderSource(str(tmp_path), group="dir"))
    assert {it.group for it in items} == {".", "studio"}
    with pytest.raises(ConfigError):
        FolderSource(str(tmp_path), group="(unclosed")


def test_rgba_cutouts(tmp_path: Path) -> None:
    rgba = np.dstack([rgb(1), alpha(1)])
    put(tmp_path / "a.png", enc(rgba, mode="RGBA"))
    put(tmp_path / "sub" / "b.webp", enc(np.dstack([rgb(2), alpha(2)]), "WEBP", "RGBA"))
    put(tmp_path / "c.jpg", enc(rgb(3), "JPEG"))  # no alpha channel
    src = FolderSource(str(tmp_path))
    items, rejects = collect(src)
    assert src.resolved_mode == "rgba"
    assert [r.reason for r in rejects] == ["bad_channels"]
    assert sorted(Path(i.image).name for i in items) == ["a.png", "b.webp"]
    a = next(i for i in items if i.image.endswith("a.png"))
    assert a.alpha is None
    fg = src.load_foreground(a)
    np.testing.assert_array_equal(fg.alpha, alpha(1))
    np.testing.assert_array_equal(fg.rgb, rgb(1))


def test_background_folder(tmp_path: Path) -> None:
    put(tmp_path / "x.jpg", enc(rgb(1), "JPEG"))
    put(tmp_path / "y.png", enc(np.dstack([rgb(2), alpha(2)]), mode="RGBA"))
    put(tmp_path / "z.png", enc(rgb(3)[:4, :4]))  # too_small
    src = FolderSource(str(tmp_path), role="bg")
    items, rejects = collect(src)
    assert [r.reason for r in rejects] == ["too_small"]
    assert {i.role for i in items} == {"bg"} and len(items) == 2
    bg = src.load_background(next(i for i in items if i.image.endswith("y.png")))
    np.testing.assert_array_equal(bg, rgb(2))
    with pytest.raises(ItemError):
        src.load_foreground(items[0])
    with pytest.raises(ConfigError):
        FolderSource(str(tmp_path), mode="pairs", role="bg")


def test_relative_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_pairs(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    src = FolderSource("data")
    items, rejects = collect(src)
    assert src.resolved_mode == "pairs" and len(items) == 4 and len(rejects) == 7
    assert all(Path(it.image).is_absolute() and Path(it.image).exists() for it in items)
