"""AISegment source: the real matting_human_half layout with every quirk of the download."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matdata.errors import SourceError
from matdata.rejects import Reject
from matdata.sources.aisegment import AISegmentSource
from matdata.sources.base import Item, assign_split

W, H = 48, 64


def jpeg(seed: int, size: tuple[int, int] = (W, H)) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def matte_alpha(seed: int, size: tuple[int, int] = (W, H)) -> np.ndarray:
    rng = np.random.default_rng(1000 + seed)
    a = np.zeros((size[1], size[0]), np.uint8)
    a[8:-8, 6:-6] = rng.integers(1, 256, (size[1] - 16, size[0] - 12), dtype=np.uint8)
    return a


def rgba_png(alpha: np.ndarray) -> bytes:
    """An AISegment matte: RGBA PNG whose alpha channel is the matte."""
    rgb = np.full((*alpha.shape, 3), 200, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(buf, "PNG")
    return buf.getvalue()


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def img_path(base: Path, group: str, n: int, clip: int = 0) -> Path:
    return base / "clip_img" / group / f"clip_{clip:08d}" / f"{group}-{n:08d}.jpg"


def matte_path(base: Path, group: str, n: int, clip: int = 0) -> Path:
    return base / "matting" / group / f"matting_{clip:08d}" / f"{group}-{n:08d}.png"


GA, GB = "1803151818", "1803201916"


def build_tree(root: Path) -> dict[str, np.ndarray]:
    """A Kaggle-style AISegment download with every quirk.  Returns stem -> true alpha."""
    alphas: dict[str, np.ndarray] = {}
    # 5 good portraits in two shoot groups.
    for g, n in [(GA, 1), (GA, 2), (GA, 3), (GB, 1), (GB, 2)]:
        a = matte_alpha(n + (0 if g == GA else 50))
        put(img_path(root, g, n), jpeg(n + (0 if g == GA else 50)))
        # Pair by stem: this matte sits in a differently numbered clip folder.
        put(matte_path(root, g, n, clip=1 if (g, n) == (GB, 2) else 0), rgba_png(a))
        alphas[f"{g}-{n:08d}"] = a
    # macOS resource forks beside an image and a matte.
    put(img_path(root, GA, 1).with_name(f"._{GA}-00000001.jpg"), b"\x00\x05\x16\x07Mac OS X")
    put(matte_path(root, GA, 1).with_name(f"._{GA}-00000001.png"), b"\x00\x05\x16\x07Mac OS X")
    # An image without a matte.
    put(img_path(root, GB, 7), jpeg(7))
    # An undecodable (truncated) matte PNG.
    put(img_path(root, GB, 8), jpeg(8))
    put(matte_path(root, GB, 8), rgba_png(matte_alpha(8))[:150])
    # An undecodable (truncated) image.
    put(img_path(root, GB, 9), jpeg(9)[:300])
    put(matte_path(root, GB, 9), rgba_png(matte_alpha(9)))
    # Image and matte of different sizes.
    put(img_path(root, GB, 10), jpeg(10))
    put(matte_path(root, GB, 10), rgba_png(matte_alpha(10, (W, H + 2))))
    # An all-zero matte.
    put(img_path(root, GB, 11), jpeg(11))
    put(matte_path(root, GB, 11), rgba_png(np.zeros((H, W), np.uint8)))
    # A matte whose image is missing.
    put(matte_path(root, GB, 12), rgba_png(matte_alpha(12)))
    # Finder junk.
    put(root / "clip_img" / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    # The Kaggle copy holds the tree twice: copy three good portraits (+ their mattes).
    deep = root / "matting_human_half"
    for g, n in [(GA, 1), (GA, 2), (GB, 1)]:
        put(img_path(deep, g, n), img_path(root, g, n).read_bytes())
        put(matte_path(deep, g, n), matte_path(root, g, n).read_bytes())
    # ... and the orphan matte once more.
    put(matte_path(deep, GB, 12), matte_path(root, GB, 12).read_bytes())
    return alphas


def scan(root: Path, **opts) -> tuple[list[Item], list[Reject]]:
    items: list[Item] = []
    rejects: list[Reject] = []
    for x in AISegmentSource(str(root), **opts).scan():
        (items if isinstance(x, Item) else rejects).append(x)
    return items, rejects


def test_scan_counts_every_quirk_exactly(tmp_path: Path) -> None:
    alphas = build_tree(tmp_path)
    calls: list[int] = []
    src = AISegmentSource(str(tmp_path))
    out = list(src.scan(calls.append))
    items = [x for x in out if isinstance(x, Item)]
    rejects = [x for x in out if isinstance(x, Reject)]

    assert sorted(it.id for it in items) == sorted(alphas)
    assert Counter(r.reason for r in rejects) == {
        "macos_resource_fork": 2,
        "missing_matte": 1,
        "truncated": 2,  # the bad matte PNG and the bad JPEG
        "size_mismatch": 1,
        "empty_matte": 1,
        "missing_image": 1,
        "duplicate": 4,  # 3 deep portrait copies + the orphan matte's second copy
        "unexpected_file": 1,
    }
    # Every input found exactly once: usable + rejected == found == progress ticks.
    assert len(items) + len(rejects) == src.total == sum(calls) == 18
    # The truncated rejects name the broken file itself.
    trunc = {Path(r.path).name for r in rejects if r.reason == "truncated"}
    assert trunc == {f"{GB}-00000008.png", f"{GB}-00000009.jpg"}
    # Duplicates are the deeper copies; the kept items come from the shallow tree.
    assert all("matting_human_half" in r.path for r in rejects if r.reason == "duplicate")
    assert all("matting_human_half" not in it.image for it in items)


def test_items_fields_split_and_pixels(tmp_path: Path) -> None:
    alphas = build_tree(tmp_path)
    src = AISegmentSource(str(tmp_path), val_fraction=0.5)
    items = [x for x in src.scan() if isinstance(x, Item)]
    for it in items:
        group = it.id.split("-")[0]
        assert it.group == group
        assert it.split == assign_split(group, val_fraction=0.5)
        assert (it.width, it.height) == (W, H)
        assert it.role == "fg" and not it.coarse and it.source == "aisegment"
        assert Path(it.alpha).name == Path(it.image).with_suffix(".png").name
        assert len(it.sha256) == 64
        fg = src.load_foreground(it)
        assert fg.rgb.shape == (H, W, 3) and fg.rgb.dtype == np.uint8
        np.testing.assert_array_equal(fg.alpha, alphas[it.id])
        assert fg.ignore is None and fg.coarse is False
    # Group-aware: one split per shoot group.
    by_group: dict[str, set[str]] = {}
    for it in items:
        by_group.setdefault(it.group, set()).add(it.split)
    assert all(len(s) == 1 for s in by_group.values())
    # Content hashes differ per portrait and are stable across scans.
    again = [
        x for x in AISegmentSource(str(tmp_path), val_fraction=0.5).scan() if isinstance(x, Item)
    ]
    assert [i.sha256 for i in again] == [i.sha256 for i in items]
    assert len({i.sha256 for i in items}) == len(items)


def test_broken_shallow_copy_falls_back_to_the_deep_copy(tmp_path: Path) -> None:
    a = matte_alpha(3)
    put(img_path(tmp_path, GA, 3), jpeg(3))
    put(matte_path(tmp_path, GA, 3), rgba_png(a)[:100])  # broken in the first copy
    deep = tmp_path / "matting_human_half"
    put(img_path(deep, GA, 3), jpeg(3))
    put(matte_path(deep, GA, 3), rgba_png(a))
    items, rejects = scan(tmp_path)
    assert [r.reason for r in rejects] == ["truncated"]
    assert len(items) == 1 and "matting_human_half" in items[0].image
    assert "matting_human_half" in items[0].alpha  # paired within the same copy


def test_probe_mode_skips_pixel_decoding(tmp_path: Path) -> None:
    build_tree(tmp_path)
    items, rejects = scan(tmp_path, verify="probe")
    # Header-only checks cannot see truncation after the header or an empty matte.
    reasons = Counter(r.reason for r in rejects)
    assert "empty_matte" not in reasons
    assert reasons["size_mismatch"] == 1 and reasons["missing_matte"] == 1
    assert len(items) + len(rejects) == 18


def test_missing_root_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        list(AISegmentSource(str(tmp_path / "nope")).scan())


def test_threaded_validation_is_deterministic(tmp_path: Path) -> None:
    build_tree(tmp_path)
    one = list(AISegmentSource(str(tmp_path), workers=1).scan())
    many = list(AISegmentSource(str(tmp_path), workers=4).scan())
    assert one == many  # same items and rejects, same order
