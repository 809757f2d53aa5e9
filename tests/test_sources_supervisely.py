"""Supervisely source: masks from bitmap / polygon objects against independently drawn masks."""

from __future__ import annotations

import base64
import io
import json
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from matdata.errors import ItemError
from matdata.rejects import Reject
from matdata.sources.base import Item, assign_split
from matdata.sources.supervisely import SuperviselySource, decode_bitmap, render_annotation

W, H = 64, 48


# ------------------------------------------------------------------------ fixtures


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def encode_bitmap(mask: np.ndarray, style: str = "palette") -> str:
    """base64(zlib(PNG)) like Supervisely writes it (palette + transparency), or RGBA / L."""
    m = mask.astype(np.uint8)
    if style == "palette":
        img = Image.fromarray(m, "P")
        img.putpalette([0, 0, 0, 255, 255, 255])
        buf = io.BytesIO()
        img.save(buf, "PNG", transparency=0)
        data = buf.getvalue()
    elif style == "rgba":
        rgba = np.zeros((*m.shape, 4), np.uint8)
        rgba[..., :3] = 255
        rgba[..., 3] = m * 255
        data = png_bytes(Image.fromarray(rgba, "RGBA"))
    else:
        data = png_bytes(Image.fromarray(m * 255, "L"))
    return base64.b64encode(zlib.compress(data)).decode()


def bitmap_obj(mask: np.ndarray, origin: tuple[int, int], cls="person_bmp", style="palette"):
    return {
        "classTitle": cls,
        "geometryType": "bitmap",
        "tags": [],
        "bitmap": {"data": encode_bitmap(mask, style), "origin": list(origin)},
    }


def poly_obj(exterior, interior=(), cls="person_poly"):
    return {
        "classTitle": cls,
        "geometryType": "polygon",
        "tags": [],
        "points": {
            "exterior": [list(p) for p in exterior],
            "interior": [[list(p) for p in r] for r in interior],
        },
    }


def ann(objects, tags=(), size=(H, W)):
    return {
        "description": "",
        "size": {"height": size[0], "width": size[1]},
        "tags": [{"name": t, "value": None} for t in tags],
        "objects": objects,
    }


def put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def photo(seed: int, size=(W, H)) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return png_bytes(Image.fromarray(arr))


META = {
    "classes": [
        {"title": "person_poly", "shape": "polygon", "color": "#FF0000"},
        {"title": "person_bmp", "shape": "bitmap", "color": "#00FF00"},
        {"title": "neutral", "shape": "polygon", "color": "#0000FF"},
    ],
    "tags": [{"name": "not-marked-people", "value_type": "none", "color": "#FFFF00"}],
}

# A bitmap pattern with structure (so misplacement by one pixel is visible).
PATTERN = np.random.default_rng(7).random((10, 12)) > 0.4


def pil_polygon(points, holes=()) -> np.ndarray:
    """The independent reference: PIL's rasteriser."""
    im = Image.new("L", (W, H), 0)
    d = ImageDraw.Draw(im)
    d.polygon([tuple(p) for p in points], fill=1)
    for ring in holes:
        d.polygon([tuple(p) for p in ring], fill=0)
    return np.asarray(im).astype(bool)


# --------------------------------------------------------------------- mask drawing


def test_polygon_with_hole_matches_pil() -> None:
    ext = [(5, 5), (30, 5), (30, 25), (5, 25)]
    hole = [(10, 10), (15, 10), (15, 15), (10, 15)]
    person, ignore, counts = render_annotation(ann([poly_obj(ext, [hole])]))
    expected = pil_polygon(ext, [hole])
    np.testing.assert_array_equal(person > 0, expected)
    # and by hand: the hole is really empty, the ring filled
    assert person[12, 12] == 0 and person[7, 7] == 255 and person[25, 30] == 255
    assert not ignore.any() and counts == {"person": 1, "neutral": 0, "other": 0}


def test_slanted_polygon_differs_from_pil_only_on_the_outline() -> None:
    pts = [(3, 40), (30, 30), (20, 47)]
    person, _, _ = render_annotation(ann([poly_obj(pts)]))
    ref = pil_polygon(pts)
    diff = (person > 0) ^ ref
    edge = ndimage.binary_dilation(ref) & ~ndimage.binary_erosion(ref)
    assert not (diff & ~edge).any()
    assert ((person > 0) & ref).sum() / ((person > 0) | ref).sum() > 0.9


@pytest.mark.parametrize("style", ["palette", "rgba", "gray"])
def test_bitmap_with_origin_offset(style: str) -> None:
    person, _, _ = render_annotation(ann([bitmap_obj(PATTERN, (40, 20), style=style)]))
    expected = np.zeros((H, W), bool)
    expected[20:30, 40:52] = PATTERN
    np.testing.assert_array_equal(person > 0, expected)


def test_bitmaps_and_polygons_touching_and_crossing_the_border() -> None:
    objects = [
        bitmap_obj(PATTERN, (58, 40)),  # runs off the right and bottom edges
        bitmap_obj(PATTERN, (-3, -2)),  # starts above-left of the image
        poly_obj([(56, -5), (70, -5), (70, 6), (56, 6)]),  # crosses the top-right corner
    ]
    person, _, counts = render_annotation(ann(objects))
    expected = np.zeros((H, W), bool)
    expected[40:48, 58:64] |= PATTERN[:8, :6]
    expected[0:8, 0:9] |= PATTERN[2:, 3:]
    expected[0:7, 56:64] = True
    np.testing.assert_array_equal(person > 0, expected)
    assert counts["person"] == 3


def test_neutral_objects_go_to_the_ignore_mask_only() -> None:
    body = [(5, 5), (30, 5), (30, 40), (5, 40)]
    neutral = [(40, 10), (60, 10), (60, 30), (40, 30)]
    person, ignore, counts = render_annotation(
        ann([poly_obj(body), poly_obj(neutral, cls="neutral")])
    )
    np.testing.assert_array_equal(person > 0, pil_polygon(body))
    np.testing.assert_array_equal(ignore > 0, pil_polygon(neutral))
    assert person.dtype == np.uint8 and set(np.unique(person)) == {0, 255}
    assert counts == {"person": 1, "neutral": 1, "other": 0}


def test_bad_bitmap_data_is_an_item_error() -> None:
    with pytest.raises(ItemError) as ei:
        decode_bitmap("!!! not base64 !!!")
    assert ei.value.reason == "bad_annotation"
    with pytest.raises(ItemError) as ei:
        render_annotation(ann([{"classTitle": "p", "geometryType": "point", "points": {}}]))
    assert ei.value.reason == "unsupported_geometry"


# ------------------------------------------------------------------------ the source


def build_project(root: Path) -> dict[str, tuple]:
    """Two datasets with every quirk; returns item id -> (objects, tags) of good images."""
    put(root / "meta.json", json.dumps(META).encode())
    good = {
        ("ds1", "a.png"): (
            [
                poly_obj(
                    [(5, 5), (30, 5), (30, 25), (5, 25)], [[(10, 10), (15, 10), (15, 15), (10, 15)]]
                )
            ],
            (),
        ),
        ("ds1", "b.png"): (
            [
                bitmap_obj(PATTERN, (40, 20)),
                poly_obj([(0, 30), (10, 30), (10, 47), (0, 47)], cls="neutral"),
            ],
            ("not-marked-people",),
        ),
        ("ds2", "c.png"): ([bitmap_obj(PATTERN, (58, 40))], ()),
        ("ds2", "d.png"): ([poly_obj([(2, 2), (20, 2), (20, 20)])], ()),
    }
    for i, ((ds, name), (objs, tags)) in enumerate(sorted(good.items())):
        put(root / ds / "img" / name, photo(i))
        put(root / ds / "ann" / f"{name}.json", json.dumps(ann(objs, tags)).encode())
    # quirks
    put(root / "ds1" / "img" / "nomask.png", photo(10))  # missing_annotation
    put(root / "ds1" / "ann" / "ghost.png.json", json.dumps(ann([])).encode())  # missing_image
    put(root / "ds1" / "img" / "broken.png", photo(11))
    put(root / "ds1" / "ann" / "broken.png.json", b"{not json")  # bad_annotation
    put(root / "ds2" / "img" / "big.png", photo(12, (W + 4, H)))
    put(
        root / "ds2" / "ann" / "big.png.json",
        json.dumps(ann([poly_obj([(1, 1), (9, 1), (9, 9)])])).encode(),
    )  # size_mismatch
    put(root / "ds2" / "img" / "empty.png", photo(13))
    put(
        root / "ds2" / "ann" / "empty.png.json", json.dumps(ann([], ["not-marked-people"])).encode()
    )  # empty_mask
    put(root / "ds2" / "img" / "pt.png", photo(14))
    put(
        root / "ds2" / "ann" / "pt.png.json",
        json.dumps(
            ann(
                [
                    {
                        "classTitle": "x",
                        "geometryType": "point",
                        "points": {"exterior": [[1, 1]], "interior": []},
                    }
                ]
            )
        ).encode(),
    )  # unsupported_geometry
    put(root / "ds2" / "img" / "trunc.png", photo(15)[:120])  # truncated
    put(
        root / "ds2" / "ann" / "trunc.png.json",
        json.dumps(ann([poly_obj([(1, 1), (9, 1), (9, 9)])])).encode(),
    )
    put(root / "ds1" / "img" / "._a.png", b"\x00\x05\x16\x07")  # macos_resource_fork
    put(root / "ds1" / "notes.txt", b"hello")  # unexpected_file
    return {f"{ds}-{name[:-4]}": v for (ds, name), v in good.items()}


def test_project_scan_counts_masks_and_tags(tmp_path: Path) -> None:
    good = build_project(tmp_path)
    src = SuperviselySource(str(tmp_path), val_fraction=0.5)
    ticks: list[int] = []
    out = list(src.scan(ticks.append))
    items = {x.id: x for x in out if isinstance(x, Item)}
    rejects = [x for x in out if isinstance(x, Reject)]
    assert sorted(items) == sorted(good)
    assert Counter(r.reason for r in rejects) == {
        "missing_annotation": 1,
        "missing_image": 1,
        "bad_annotation": 1,
        "size_mismatch": 1,
        "empty_mask": 1,
        "unsupported_geometry": 1,
        "truncated": 1,
        "macos_resource_fork": 1,
        "unexpected_file": 1,
    }
    assert len(items) + len(rejects) == src.total == sum(ticks) == 13

    b = items["ds1-b"]
    assert b.tags == ("not-marked-people",) and b.coarse and b.alpha.endswith("b.png.json")
    assert items["ds1-a"].tags == ()
    for it in items.values():
        ds = it.id.split("-")[0]
        assert it.group == ds and it.split == assign_split(ds, val_fraction=0.5)
        assert (it.width, it.height) == (W, H) and it.role == "fg"

    fg = src.load_foreground(b)
    expected = np.zeros((H, W), bool)
    expected[20:30, 40:52] = PATTERN
    np.testing.assert_array_equal(fg.alpha > 0, expected)
    np.testing.assert_array_equal(
        fg.ignore > 0, pil_polygon([(0, 30), (10, 30), (10, 47), (0, 47)])
    )
    assert fg.coarse and fg.rgb.shape == (H, W, 3)
    a = src.load_foreground(items["ds1-a"])
    np.testing.assert_array_equal(
        a.alpha > 0,
        pil_polygon(
            [(5, 5), (30, 5), (30, 25), (5, 25)], [[(10, 10), (15, 10), (15, 15), (10, 15)]]
        ),
    )
    assert a.ignore is None
