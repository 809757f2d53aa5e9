"""Places365 source: every published layout, metadata lists, nested categories, filters."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matdata.errors import ConfigError
from matdata.rejects import Reject
from matdata.sources.base import Item
from matdata.sources.places365 import Places365Source, category_name


def jpeg(seed: int, gray: bool = False, size=(40, 32)) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if gray else (size[1], size[0], 3)
    img = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


CATS = ["airfield", "bedroom", "swimming_pool/indoor", "swimming_pool/outdoor"]


def build(root: Path, meta: bool = True) -> None:
    if meta:
        put(
            root / "categories_places365.txt",
            b"/a/airfield 0\n/b/bedroom 1\n/s/swimming_pool/indoor 2\n/s/swimming_pool/outdoor 3\n",
        )
        put(
            root / "IO_places365.txt",
            b"/a/airfield 2\n/b/bedroom 1\n/s/swimming_pool/indoor 1\n/s/swimming_pool/outdoor 2\n",
        )
        put(
            root / "places365_val.txt",
            b"Places365_val_00000001.jpg 1\nPlaces365_val_00000002.jpg 2\n"
            b"Places365_val_00000003.jpg 0\n",
        )
        put(root / "places365_train_standard.txt", b"/a/airfield/00000001.jpg 0\n")
    d = root / "data_256"
    put(d / "a" / "airfield" / "00000001.jpg", jpeg(1))
    put(d / "a" / "airfield" / "00000002.jpg", jpeg(2, gray=True))  # grayscale: a normal bg
    put(d / "b" / "bedroom" / "00000001.jpg", jpeg(3))
    put(d / "s" / "swimming_pool" / "indoor" / "00000001.jpg", jpeg(4))
    put(d / "s" / "swimming_pool" / "outdoor" / "00000001.jpg", jpeg(5))
    put(root / "data_large" / "b" / "bedroom" / "00000001.jpg", jpeg(6, size=(64, 48)))
    put(root / "val_256" / "Places365_val_00000001.jpg", jpeg(7))
    put(root / "val_256" / "Places365_val_00000002.jpg", jpeg(8))
    put(root / "val_large" / "Places365_val_00000003.jpg", jpeg(9)[:200])  # truncated
    put(root / "places365_standard" / "train" / "airfield" / "00000009.jpg", jpeg(10))
    put(root / "places365_standard" / "val" / "swimming_pool-outdoor" / "x.jpg", jpeg(11))
    put(d / "a" / "airfield" / "._00000001.jpg", b"\x00\x05\x16\x07")
    put(d / "a" / "airfield" / "notes.txt", b"x")
    put(root / "stray.jpg", jpeg(12))  # outside every layout


def scan(root: Path, **opts) -> tuple[Places365Source, list[Item], list[Reject]]:
    src = Places365Source(str(root), **opts)
    out = list(src.scan())
    return (
        src,
        [x for x in out if isinstance(x, Item)],
        [x for x in out if isinstance(x, Reject)],
    )


def test_category_name_strips_the_letter_level() -> None:
    assert category_name("/s/swimming_pool/indoor") == "swimming_pool/indoor"
    assert category_name("/a/airfield") == "airfield"
    assert category_name("airfield") == "airfield"


def test_all_layouts_counts_categories_io_and_splits(tmp_path: Path) -> None:
    build(tmp_path)
    src, items, rejects = scan(tmp_path)
    assert Counter(r.reason for r in rejects) == {
        "truncated": 1,
        "macos_resource_fork": 1,
        "unexpected_file": 2,
    }
    assert len(items) == 10 and len(items) + len(rejects) == src.total == 14
    by = {(Path(i.image).parent.name, Path(i.image).name): i for i in items}
    pool = by[("indoor", "00000001.jpg")]
    assert (pool.category, pool.io, pool.split) == ("swimming_pool/indoor", 1, "train")
    gray = by[("airfield", "00000002.jpg")]
    assert (gray.category, gray.io, gray.split) == ("airfield", 2, "train")
    v1 = by[("val_256", "Places365_val_00000001.jpg")]
    assert (v1.category, v1.io, v1.split) == ("bedroom", 1, "val")
    v2 = by[("val_256", "Places365_val_00000002.jpg")]
    assert v2.category == "swimming_pool/indoor" and v2.io == 1
    easy = by[("swimming_pool-outdoor", "x.jpg")]
    assert (easy.category, easy.io, easy.split) == ("swimming_pool/outdoor", 2, "val")
    large = next(i for i in items if "data_large" in i.image)
    assert (large.category, large.width, large.height) == ("bedroom", 64, 48)
    assert all(i.role == "bg" and i.source == "places365" for i in items)
    assert len({i.id for i in items}) == len(items)  # data_256 and data_large bedrooms differ
    assert Counter(i.split for i in items) == {"train": 7, "val": 3}
    # A grayscale JPEG loads as an ordinary RGB background.
    rgb = src.load_background(gray)
    assert rgb.shape == (32, 40, 3) and np.array_equal(rgb[..., 0], rgb[..., 2])


def test_filters_by_category_and_indoor_outdoor(tmp_path: Path) -> None:
    build(tmp_path)
    src, items, rejects = scan(tmp_path, categories="swimming_pool")
    assert sorted(i.category for i in items) == [
        "swimming_pool/indoor",
        "swimming_pool/indoor",
        "swimming_pool/outdoor",
        "swimming_pool/outdoor",
    ]
    # 11 images in layouts, 4 kept; the truncated val image (label 0 = airfield) is filtered
    # out before it is read, so it is no reject here.
    assert src.filtered == 7 and Counter(r.reason for r in rejects)["truncated"] == 0
    src, items, _ = scan(tmp_path, io="indoor")
    assert sorted(i.category for i in items) == [
        "bedroom",
        "bedroom",
        "bedroom",
        "swimming_pool/indoor",
        "swimming_pool/indoor",
    ]
    _, items, _ = scan(tmp_path, categories=["swimming_pool/outdoor", "airfield"], io=2)
    assert Counter(i.category for i in items) == {"airfield": 3, "swimming_pool/outdoor": 2}
    with pytest.raises(ConfigError):
        Places365Source(str(tmp_path), io="sideways")


def test_layout_dir_as_root_and_no_metadata(tmp_path: Path) -> None:
    build(tmp_path, meta=False)
    _, items, rejects = scan(tmp_path / "data_256")
    assert sorted(i.category for i in items) == [
        "airfield",
        "airfield",
        "bedroom",
        "swimming_pool/indoor",
        "swimming_pool/outdoor",
    ]
    assert all(i.io is None for i in items)
    assert Counter(r.reason for r in rejects) == {"macos_resource_fork": 1, "unexpected_file": 1}
    _, items, _ = scan(tmp_path / "val_256")
    assert [i.category for i in items] == [None, None] and {i.split for i in items} == {"val"}


def test_threaded_scan_matches_single_thread(tmp_path: Path) -> None:
    build(tmp_path)
    a, items1, rejects1 = scan(tmp_path, workers=1, io="outdoor")
    b, items4, rejects4 = scan(tmp_path, workers=4, io="outdoor")
    assert items1 == items4 and rejects1 == rejects4 and a.filtered == b.filtered == 5


def test_hostile_category_index_costs_no_allocation(tmp_path: Path) -> None:
    """An index read off disk never sizes an allocation: a category file claiming index
    10^12 (a list of that length would need terabytes) scans like any other."""
    import resource

    build(tmp_path)
    put(
        tmp_path / "categories_places365.txt",
        b"/a/airfield 0\n/b/bedroom 999999999999\n/s/swimming_pool/indoor 2\n",
    )
    put(tmp_path / "places365_val.txt", b"Places365_val_00000001.jpg 999999999999\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    got = list(Places365Source(str(tmp_path)).scan())
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    items = [x for x in got if isinstance(x, Item)]
    assert items and grown_mb < 200
    by_name = {Path(x.image).name: x for x in items if "val_256" in x.image}
    assert by_name["Places365_val_00000001.jpg"].category == "bedroom"
