"""The embedded demo source: deterministic, soft hair-like edges, varied backgrounds."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from matdata.errors import SourceError
from matdata.sources import Item, make_source
from matdata.sources.demo import (
    DemoSource,
    _render_bg,
    _render_fg,
    demo_foreground_layers,
    demo_true_foreground,
)


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _all_pixels(src: DemoSource) -> str:
    parts = []
    for it in src.scan():
        if it.role == "fg":
            fg = src.load_foreground(it)
            parts += [fg.rgb, fg.alpha]
        else:
            parts.append(src.load_background(it))
    return _digest(*parts)


def test_scan_items_and_splits() -> None:
    src = make_source("demo", "")
    items = list(src.scan())
    assert all(isinstance(i, Item) for i in items)
    fgs = [i for i in items if i.role == "fg"]
    bgs = [i for i in items if i.role == "bg"]
    assert len(fgs) == 24 and len(bgs) == 16
    assert fgs[3].id == "demo-fg-0003" and fgs[3].image == "demo://fg/0003"
    assert bgs[0].id == "demo-bg-0000"
    assert len({i.id for i in items}) == len(items)
    assert len({i.sha256 for i in items}) == len(items)
    for role_items in (fgs, bgs):
        splits = {i.split for i in role_items}
        assert splits == {"train", "val"}
    # group-aware: every group lands in one split
    by_group: dict[str, set[str]] = {}
    for i in items:
        by_group.setdefault(i.group, set()).add(i.split)
    assert all(len(s) == 1 for s in by_group.values())
    assert max(sum(1 for i in fgs if i.group == g) for g in by_group) >= 2
    assert all(i.category and i.category.startswith("demo/") and i.io in (1, 2) for i in bgs)
    assert {i.io for i in bgs} == {1, 2}
    assert all((i.width, i.height) == (192, 256) for i in fgs)


def test_deterministic_bytes_and_hashes() -> None:
    a = DemoSource("", n_fg=3, n_bg=3)
    first = _all_pixels(a)
    hashes = [i.sha256 for i in a.scan()]
    _render_fg.cache_clear()
    _render_bg.cache_clear()
    b = DemoSource("/ignored", n_fg=3, n_bg=3)
    assert _all_pixels(b) == first
    assert [i.sha256 for i in b.scan()] == hashes
    c = DemoSource("", n_fg=3, n_bg=3, seed=1)
    assert _all_pixels(c) != first
    assert [i.sha256 for i in c.scan()] != hashes


def test_soft_hair_like_edges() -> None:
    src = DemoSource("", n_fg=6, n_bg=0)
    for it in src.scan():
        fg = src.load_foreground(it)
        a = fg.alpha
        assert a.dtype == np.uint8 and a.shape == (256, 192)
        assert fg.rgb.shape == (256, 192, 3) and fg.rgb.dtype == np.uint8
        nonzero = a > 0
        soft = nonzero & (a < 255)
        assert 0.1 < nonzero.mean() < 0.8
        assert soft.sum() / nonzero.sum() > 0.1  # a substantial fractional-alpha region
        assert len(np.unique(a[soft])) > 150  # true fractional values, not a few levels
        # thin structures: many soft pixels have no opaque neighbour within 2 px (strands)
        near_opaque = cv2.dilate((a == 255).astype(np.uint8), np.ones((5, 5), np.uint8))
        assert (soft & (near_opaque == 0)).sum() > 0.3 * soft.sum()


def test_photo_is_fg_over_a_different_backdrop() -> None:
    src = DemoSource("", n_fg=2, n_bg=0)
    it = next(iter(src.scan()))
    fg = src.load_foreground(it)
    f_true = demo_true_foreground(it)
    assert np.array_equal(f_true, demo_true_foreground(0))
    opaque = fg.alpha == 255
    assert np.array_equal(fg.rgb[opaque], f_true[opaque])
    soft = (fg.alpha > 20) & (fg.alpha < 200)
    halo = np.abs(fg.rgb[soft].astype(int) - f_true[soft]).mean()
    assert halo > 10  # the backdrop shows through soft pixels
    f2, a2, p2 = demo_foreground_layers(0)
    assert np.array_equal(a2, fg.alpha) and np.array_equal(p2, fg.rgb)


def test_backgrounds_varied() -> None:
    src = DemoSource("", n_fg=0, n_bg=16)
    bgs = [(it, src.load_background(it)) for it in src.scan()]
    sizes = {(it.width, it.height) for it, _ in bgs}
    assert len(sizes) >= 4
    assert all(abs(w / h - 192 / 256) > 0.05 for w, h in sizes)
    greyish = 0
    for it, img in bgs:
        assert img.shape == (it.height, it.width, 3) and img.dtype == np.uint8
        assert img.std() > 3  # not flat
        chroma = np.abs(img.astype(int) - img.mean(axis=2, keepdims=True)).mean()
        greyish += chroma < 5
    assert greyish >= 2
    assert len({_digest(img) for _, img in bgs}) == 16


def test_options_errors_and_speed() -> None:
    src = DemoSource("", n_fg=2, n_bg=1, size="96x128")
    fg_item, _, bg_item = list(src.scan())
    assert (fg_item.width, fg_item.height) == (96, 128)
    assert src.load_foreground(fg_item).alpha.shape == (128, 96)
    with pytest.raises(SourceError):
        src.load_foreground(bg_item)
    with pytest.raises(SourceError):
        src.load_background(fg_item)
    with pytest.raises(SourceError):
        DemoSource("", size="big")
    _render_fg.cache_clear()
    _render_bg.cache_clear()
    full = DemoSource("")
    items = list(full.scan())
    for _ in range(2):
        for it in items:
            (full.load_foreground if it.role == "fg" else full.load_background)(it)
    # cheap by construction (no timing): each of the 40 items is rendered once, a second
    # load is a cache hit (speed itself is a benchmark's business, not a test's)
    n_fg = sum(it.role == "fg" for it in items)
    assert _render_fg.cache_info().misses == n_fg and _render_fg.cache_info().hits >= n_fg
    assert _render_bg.cache_info().misses == len(items) - n_fg
