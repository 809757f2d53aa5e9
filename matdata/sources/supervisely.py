"""Supervisely-format projects (Supervisely Person): coarse person masks from annotations.

Layout::

    ROOT/meta.json                       classes [{title, shape, color}], tags
    ROOT/<dataset>/img/<image name>      images
    ROOT/<dataset>/ann/<image name>.json annotations

An annotation is ``{"size": {"height": H, "width": W}, "tags": [...], "objects": [...]}``;
each object has ``classTitle`` and ``geometryType``:

* ``bitmap``: ``bitmap.data`` is base64 of a zlib-compressed PNG whose alpha channel (or
  gray level) marks the pixels, placed with its top-left corner at ``bitmap.origin``
  ``[x, y]`` and clipped to the image;
* ``polygon``: ``points.exterior`` ``[[x, y], ...]`` filled, minus each ring of
  ``points.interior`` (holes);
* ``rectangle``: ``points.exterior`` = two opposite corners, filled inclusive.

Objects of a *neutral* class (default ``neutral``) go to a separate ignore mask; the
others form the person mask.  The masks are coarse: items carry ``coarse=True``.  Image
tags (e.g. ``not-marked-people``) are recorded in ``Item.tags``; ``Item.alpha`` is the
annotation path.  The split unit is the dataset folder.

Scan outcomes: ``missing_annotation``, ``missing_image`` (annotation without image),
``bad_annotation`` (unparseable JSON, bad geometry), ``unsupported_geometry``,
``size_mismatch`` (annotation size != image size), ``empty_mask`` (no person pixels),
``macos_resource_fork``, ``unexpected_file`` and the :mod:`matdata.imageio` reasons.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from matdata.errors import ItemError, MatdataError
from matdata.rejects import Reject
from matdata.sources._common import (
    IMAGE_EXTS,
    VERIFY_MODES,
    basename,
    content_hash,
    extra_json,
    is_resource_fork,
    list_files,
    opt_choice,
    opt_list,
    opt_workers,
    ordered_map,
    read_checked,
    rel_parts,
    split_kwargs,
    stem_ext,
    validate_image,
)
from matdata.sources.base import (
    COMMON_OPTIONS,
    SOURCES,
    Foreground,
    Item,
    Progress,
    Source,
    assign_split,
    safe_id,
)

#: JSON files a project may hold at its root besides ``meta.json``.
PROJECT_FILES = ("meta.json", "key_id_map.json", "obj_class_to_machine_color.json")


# ------------------------------------------------------------------- pure mask drawing

#: Largest annotation file read (a Supervisely JSON of a 12 MP image is a few MB).
MAX_ANNOTATION_BYTES = 64 * 1000**2
#: Pixels a bitmap may always declare, however small its image (larger ones are clipped).
_MIN_BITMAP_BOUND = 1 << 22
#: Bytes a PNG may hold besides its pixel rows (ancillary chunks: palette, ICC, text).
_PNG_SLACK = 1 << 20


def parse_annotation(data: bytes, name: str = "<ann>") -> dict[str, Any]:
    """Annotation bytes -> JSON object, or ``bad_annotation`` (not UTF-8, not JSON, nested
    too deep, a NaN / Infinity literal, not an object)."""

    def _no_constant(token: str) -> Any:
        raise ValueError(f"non-finite number {token}")

    try:
        ann = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise ItemError(name, "bad_annotation", "JSON: nested too deep") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ItemError(name, "bad_annotation", f"JSON: {exc}") from None
    if not isinstance(ann, dict):
        raise ItemError(name, "bad_annotation", "not a JSON object")
    return ann


def annotation_size(ann: dict[str, Any], name: str = "<ann>") -> tuple[int, int]:
    """``(height, width)`` an annotation claims, checked (positive integers, at most
    :data:`matdata.imageio.MAX_PIXELS` pixels) without allocating anything."""
    from matdata.imageio import MAX_PIXELS

    size = ann.get("size")
    hw = []
    for key in ("height", "width"):
        v = size.get(key) if isinstance(size, dict) else None
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool):
            raise ItemError(name, "bad_annotation", "no size {height, width} of integers")
        hw.append(v)
    h, w = hw
    if h <= 0 or w <= 0:
        raise ItemError(name, "bad_annotation", f"size {w}x{h}")
    if h * w > MAX_PIXELS:
        raise ItemError(name, "too_large", f"size {w}x{h} exceeds {MAX_PIXELS} pixels")
    return h, w


def _inflate_bitmap(raw: bytes, name: str, max_pixels: int) -> bytes:
    """zlib-inflate a bitmap's PNG, never to more than a PNG of its declared size holds."""
    from matdata import imageio
    from matdata.errors import ImageDecodeError

    z = zlib.decompressobj()
    try:
        head = z.decompress(raw, 64)
        if head[:8] != b"\x89PNG\r\n\x1a\n":
            raise ItemError(name, "bad_annotation", "bitmap data is not a PNG")
        w, h, _ = imageio.check_declared(head, name, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        raise ItemError(name, "bad_annotation", f"bitmap PNG: {exc.reason}") from None
    except zlib.error as exc:
        raise ItemError(name, "bad_annotation", f"bitmap data: {exc}") from None
    # rows of 16-bit RGBA (8 bytes a pixel) plus filter bytes, stored uncompressed
    limit = h * (1 + 8 * w)
    limit += limit // 100 + _PNG_SLACK
    try:
        rest = z.decompress(z.unconsumed_tail, limit - len(head) + 1)
    except zlib.error as exc:
        raise ItemError(name, "bad_annotation", f"bitmap data: {exc}") from None
    if len(head) + len(rest) > limit:
        raise ItemError(
            name, "bad_annotation", f"bitmap data inflates beyond what a {w}x{h} PNG holds"
        )
    return head + rest


def decode_bitmap(
    data: str, name: str = "<bitmap>", *, max_pixels: int | None = None
) -> np.ndarray:
    """A Supervisely ``bitmap.data`` string -> boolean mask ``(h, w)``.

    ``data`` = base64( zlib( PNG ) ); the mask is the PNG's alpha channel if it has one,
    else its non-zero pixels.  The inflate stops at what a PNG of the declared size can
    hold, and the declared size must be within ``max_pixels`` (default
    :data:`matdata.imageio.MAX_PIXELS`): a zlib bomb is a ``bad_annotation``.
    """
    from matdata import imageio
    from matdata.errors import ImageDecodeError

    max_px = imageio.MAX_PIXELS if max_pixels is None else max_pixels
    if not isinstance(data, str):
        raise ItemError(name, "bad_annotation", "bitmap data is not a string")
    try:
        raw = base64.b64decode(data)
    except (binascii.Error, ValueError) as exc:
        raise ItemError(name, "bad_annotation", f"bitmap data: {exc}") from exc
    png = _inflate_bitmap(raw, name, max_px)
    try:
        return imageio.decode_alpha(png, name, min_side=1, max_pixels=max_px) > 0
    except ImageDecodeError as exc:
        if exc.reason != "bad_channels":
            raise ItemError(name, "bad_annotation", f"bitmap PNG: {exc.reason}") from exc
    return imageio.decode_image(png, name, min_side=1, max_pixels=max_px).any(axis=2)


def paste_mask(target: np.ndarray, mask: np.ndarray, x: int, y: int) -> None:
    """OR boolean ``mask`` into ``target`` with its top-left at ``(x, y)``, clipped."""
    H, W = target.shape
    h, w = mask.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, W), min(y + h, H)
    if x1 <= x0 or y1 <= y0:
        return
    target[y0:y1, x0:x1] |= mask[y0 - y : y1 - y, x0 - x : x1 - x]


#: Coordinates beyond this magnitude are refused outright (no image is that large, and
#: float64 loses whole pixels there).
_MAX_COORD = 1e15


#: Polygon rings are clipped to the image grown by this margin (pixels) on every side.
_CLIP_MARGIN = 1 << 20


def _coords(value: Any, name: str, what: str) -> np.ndarray:
    """``[[x, y], ...]`` -> float64 ``(N, 2)``, or ``bad_annotation`` unless every
    coordinate is a finite JSON number (not a string, a bool or NaN / Infinity)."""
    if not isinstance(value, list):
        raise ItemError(name, "bad_annotation", f"{what} is not a list of [x, y] points")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ItemError(name, "bad_annotation", f"{what}: {exc}") from None
    if arr.size and arr.dtype.kind not in "iuf":
        raise ItemError(name, "bad_annotation", f"{what}: coordinates must be numbers")
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ItemError(name, "bad_annotation", f"{what} needs [x, y] points, got {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all() or np.abs(arr).max(initial=0) > _MAX_COORD:
        raise ItemError(name, "bad_annotation", f"{what}: non-finite or absurd coordinates")
    return arr


def _clip_ring(ring: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Sutherland-Hodgman: the polygon ``ring`` (float ``(N, 2)``) cut to ``box`` =
    ``(x0, y0, x1, y1)``.  Inside the box the filled region is unchanged."""
    pts = ring
    for axis, bound, upper in ((0, box[0], False), (1, box[1], False), (0, box[2], True),
                               (1, box[3], True)):  # fmt: skip
        if len(pts) == 0:
            break
        inside = pts[:, axis] <= bound if upper else pts[:, axis] >= bound
        if inside.all():
            continue
        out = []
        prev, prev_in = pts[-1], bool(inside[-1])
        for p, p_in in zip(pts, inside.tolist(), strict=True):
            if p_in != prev_in:
                t = (bound - prev[axis]) / (p[axis] - prev[axis])
                q = prev + t * (p - prev)
                q[axis] = bound
                out.append(q)
            if p_in:
                out.append(p)
            prev, prev_in = p, p_in
        pts = np.asarray(out, dtype=np.float64).reshape(-1, 2)
    return pts


def _ring(points: Any, name: str, shape: tuple[int, int]) -> np.ndarray | None:
    """A polygon ring as int32 ``(N, 2)`` for ``cv2.fillPoly``; far-out coordinates are
    clipped to a margin around the image first (the fill inside the image is the same,
    and the rasterizer's work stays proportional to the image).  None if nothing is left."""
    arr = _coords(points, name, "polygon ring")
    if len(arr) < 3:
        raise ItemError(
            name, "bad_annotation", f"polygon ring needs >= 3 [x, y] points, got {len(arr)}"
        )
    H, W = shape
    # a margin wide enough that rounding the cut points moves the edges inside the image
    # by far less than a pixel, and small enough to rasterize in milliseconds
    m = float(max(H, W) + _CLIP_MARGIN)
    box = (-m, -m, W - 1 + m, H - 1 + m)
    if (arr.min(axis=0) < box[:2]).any() or (arr.max(axis=0) > box[2:]).any():
        arr = _clip_ring(arr, box)
        if len(arr) < 3:
            return None
    return np.rint(arr).astype(np.int32)


def _origin(value: Any, name: str) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise ItemError(name, "bad_annotation", "bitmap origin is not [x, y]")
    xy = _coords([value], name, "bitmap origin")[0]
    return int(xy[0]), int(xy[1])


def draw_object(obj: dict[str, Any], shape: tuple[int, int], name: str) -> np.ndarray:
    """One annotation object -> boolean mask of the image ``shape`` (H, W)."""
    import cv2

    geom = obj.get("geometryType") or obj.get("shape")
    out = np.zeros(shape, dtype=bool)
    H, W = shape
    if geom == "bitmap":
        bm = obj.get("bitmap")
        if not isinstance(bm, dict) or "data" not in bm or "origin" not in bm:
            raise ItemError(name, "bad_annotation", "bitmap object needs {origin, data}")
        x, y = _origin(bm["origin"], name)
        # (clipped to the image when pasted: bound its size by the image's, generously)
        from matdata.imageio import MAX_PIXELS

        bound = min(MAX_PIXELS, max(4 * H * W, _MIN_BITMAP_BOUND))
        mask = decode_bitmap(bm["data"], name, max_pixels=bound)
        paste_mask(out, mask, x, y)
    elif geom in ("polygon", "rectangle"):
        pts = obj.get("points")
        if not isinstance(pts, dict):
            raise ItemError(name, "bad_annotation", f"{geom} points is not an object")
        if geom == "polygon":
            holes = pts.get("interior") or []
            if not isinstance(holes, list):
                raise ItemError(name, "bad_annotation", "polygon interior is not a list")
            canvas = np.zeros(shape, dtype=np.uint8)
            ring = _ring(pts.get("exterior"), name, shape)
            if ring is not None:
                cv2.fillPoly(canvas, [ring], 1)
            for hole in holes:
                ring = _ring(hole, name, shape)
                if ring is not None:
                    cv2.fillPoly(canvas, [ring], 0)
            out = canvas.astype(bool)
        else:
            ext = _coords(pts.get("exterior"), name, "rectangle")
            if ext.shape != (2, 2):
                raise ItemError(name, "bad_annotation", "rectangle needs two [x, y] corners")
            # corners clipped to just outside the image (exact for a rectangle)
            ext[:, 0] = np.clip(ext[:, 0], -1, W)
            ext[:, 1] = np.clip(ext[:, 1], -1, H)
            (xa, ya), (xb, yb) = np.rint(ext).astype(int)
            x0, x1 = sorted((xa, xb))
            y0, y1 = sorted((ya, yb))
            out[max(y0, 0) : max(y1 + 1, 0), max(x0, 0) : max(x1 + 1, 0)] = True
    else:
        raise ItemError(name, "unsupported_geometry", f"geometryType {geom!r}")
    return out


def render_annotation(
    ann: dict[str, Any],
    name: str = "<ann>",
    *,
    neutral_classes: tuple[str, ...] = ("neutral",),
    person_classes: tuple[str, ...] = (),
    expect: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Annotation JSON -> ``(person mask, ignore mask, counts)``; masks uint8 0/255 (H, W).

    ``person_classes`` empty = every class that is not neutral.  Objects of other classes
    are counted as ``other`` and not drawn.  ``expect``: the image's ``(H, W)``; a claimed
    size that differs is a ``size_mismatch``, found before any mask is allocated.
    """
    if not isinstance(ann, dict):
        raise ItemError(name, "bad_annotation", "not a JSON object")
    H, W = annotation_size(ann, name)
    if expect is not None and tuple(expect) != (H, W):
        raise ItemError(name, "size_mismatch", f"image {expect[1]}x{expect[0]}, annotation {W}x{H}")
    objects = ann.get("objects") or []
    if not isinstance(objects, list):
        raise ItemError(name, "bad_annotation", "objects is not a list")
    person = np.zeros((H, W), dtype=bool)
    ignore = np.zeros((H, W), dtype=bool)
    counts = {"person": 0, "neutral": 0, "other": 0}
    for obj in objects:
        if not isinstance(obj, dict):
            raise ItemError(name, "bad_annotation", "an object is not a JSON object")
        cls = str(obj.get("classTitle", ""))
        if cls in neutral_classes:
            ignore |= draw_object(obj, (H, W), name)
            counts["neutral"] += 1
        elif not person_classes or cls in person_classes:
            person |= draw_object(obj, (H, W), name)
            counts["person"] += 1
        else:
            counts["other"] += 1
    return person.astype(np.uint8) * 255, ignore.astype(np.uint8) * 255, counts


def image_tags(ann: dict[str, Any], name: str = "<ann>") -> tuple[tuple[str, ...], dict[str, Any]]:
    """``(sorted tag names, {name: value} for valued tags)`` of an annotation."""
    names: set[str] = set()
    values: dict[str, Any] = {}
    tags = ann.get("tags") or []
    if not isinstance(tags, list):
        raise ItemError(name, "bad_annotation", "tags is not a list")
    for t in tags:
        if isinstance(t, str):
            names.add(t)
        elif isinstance(t, dict) and t.get("name"):
            names.add(str(t["name"]))
            if t.get("value") is not None:
                values[str(t["name"])] = t["value"]
    return tuple(sorted(names)), values


# ----------------------------------------------------------------------------- source


@SOURCES.register("supervisely")
class SuperviselySource(Source):
    """Coarse person masks from a Supervisely project.

    Options: ``neutral_classes`` (default ``neutral``), ``person_classes`` (default: all
    others), ``verify``, ``workers``, ``val_fraction``, ``test_fraction``, ``salt``.
    """

    kind = "supervisely"
    known_options = (*COMMON_OPTIONS, "neutral_classes", "person_classes")
    roles = ("fg",)

    def __init__(self, root: str, **options: Any):
        super().__init__(root, **options)
        self.verify = opt_choice(options, "verify", "decode", VERIFY_MODES)
        self.workers = opt_workers(options)
        self.split_kw = split_kwargs(options)
        self.neutral = tuple(opt_list(options, "neutral_classes") or ["neutral"])
        self.person = tuple(opt_list(options, "person_classes"))
        self.total: int | None = None
        self.filtered = 0

    def _render(self, ann: dict[str, Any], name: str, expect: tuple[int, int] | None = None):
        return render_annotation(
            ann, name, neutral_classes=self.neutral, person_classes=self.person, expect=expect
        )

    def scan(self, progress: Progress | None = None) -> Iterator[Item | Reject]:
        files = list_files(self.root)
        tick = progress or (lambda n: None)
        images: dict[tuple[str, str], str] = {}  # (dataset, image name) -> path
        anns: dict[tuple[str, str], str] = {}  # (dataset, annotation name) -> path
        strays: list[Reject] = []
        for path in files:
            parts = rel_parts(self.root, path)
            name = parts[-1] if parts else basename(path)
            if is_resource_fork(name):
                strays.append(Reject(self.kind, path, "macos_resource_fork", "AppleDouble file"))
            elif len(parts) == 1 and name in PROJECT_FILES:
                continue  # project metadata, not an input
            elif len(parts) >= 3 and parts[-2] == "img" and stem_ext(name)[1] in IMAGE_EXTS:
                images[("/".join(parts[:-2]), name)] = path
            elif len(parts) >= 3 and parts[-2] == "ann" and name.lower().endswith(".json"):
                anns[("/".join(parts[:-2]), name)] = path
            else:
                strays.append(
                    Reject(self.kind, path, "unexpected_file", "not in <dataset>/img|ann")
                )
        used: set[tuple[str, str]] = set()
        pairs: list[tuple[str, str, str, str | None]] = []
        for (ds, name), path in sorted(images.items()):
            ann = None
            for cand in (f"{name}.json", f"{stem_ext(name)[0]}.json"):
                if (ds, cand) in anns and (ds, cand) not in used:
                    ann = anns[(ds, cand)]
                    used.add((ds, cand))
                    break
            pairs.append((ds, name, path, ann))
        orphans = sorted(k for k in anns if k not in used)
        self.total = len(strays) + len(pairs) + len(orphans)

        for rej in strays:
            yield rej
            tick(1)
        for key in orphans:
            yield Reject(self.kind, anns[key], "missing_image", "annotation without an image")
            tick(1)
        for out in ordered_map(lambda p: self._item(*p), pairs, self.workers):
            yield out
            tick(1)

    def _item(self, ds: str, name: str, path: str, ann_path: str | None) -> Item | Reject:
        from matdata import imageio

        if ann_path is None:
            return Reject(self.kind, path, "missing_annotation", f"no ann/{name}.json")
        try:
            data = imageio.read_bytes(path)
            w, h = validate_image(data, path, self.verify)
        except MatdataError as err:
            return Reject.from_error(self.kind, path, err)
        try:
            adata = imageio.read_bytes(ann_path, MAX_ANNOTATION_BYTES)
            ann = parse_annotation(adata, ann_path)
            person, _ignore, counts = self._render(ann, ann_path, expect=(h, w))
            tags, values = image_tags(ann, ann_path)
        except MatdataError as err:
            return Reject.from_error(self.kind, ann_path, err)
        if not person.any():
            return Reject(
                self.kind, path, "empty_mask", f"{counts['person']} person objects, no pixels"
            )
        group = ds or "."
        return Item(
            id=safe_id(f"{ds}-{stem_ext(name)[0]}" if ds else stem_ext(name)[0]),
            source=self.kind,
            role="fg",
            split=assign_split(group, **self.split_kw),
            image=path,
            width=w,
            height=h,
            sha256=content_hash(data, adata),
            group=group,
            alpha=ann_path,
            coarse=True,
            tags=tags,
            extra=extra_json(
                dataset=ds,
                objects=counts["person"],
                neutral=counts["neutral"],
                other=counts["other"],
                tag_values=values or None,
                coverage=round(float(person.mean()) / 255.0, 6),
            ),
        )

    def load_foreground(self, item: Item) -> Foreground:
        """RGB image, person mask as alpha (0/255), neutral regions as ``ignore`` (or None)."""
        from matdata import imageio

        if not item.alpha:
            raise ItemError(item.id, "missing_annotation", "manifest row has no annotation path")
        data, raw = read_checked(
            item, item.image, item.alpha, max_bytes=(None, MAX_ANNOTATION_BYTES)
        )
        rgb = imageio.decode_image(data, item.image)
        ann = parse_annotation(raw, item.alpha)
        person, ignore, _ = self._render(ann, item.alpha, expect=rgb.shape[:2])
        return Foreground(
            rgb=rgb, alpha=person, ignore=ignore if ignore.any() else None, coarse=True
        )
