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
    rel_parts,
    split_kwargs,
    stem_ext,
    validate_image,
)
from matdata.sources.base import (
    COMMON_OPTIONS,
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


def decode_bitmap(data: str, name: str = "<bitmap>") -> np.ndarray:
    """A Supervisely ``bitmap.data`` string -> boolean mask ``(h, w)``.

    ``data`` = base64( zlib( PNG ) ); the mask is the PNG's alpha channel if it has one,
    else its non-zero pixels.
    """
    from matdata import imageio
    from matdata.errors import ImageDecodeError

    try:
        png = zlib.decompress(base64.b64decode(data))
    except (binascii.Error, zlib.error, ValueError, TypeError) as exc:
        raise ItemError(name, "bad_annotation", f"bitmap data: {exc}") from exc
    try:
        return imageio.decode_alpha(png, name, min_side=1) > 0
    except ImageDecodeError as exc:
        if exc.reason != "bad_channels":
            raise ItemError(name, "bad_annotation", f"bitmap PNG: {exc.reason}") from exc
    return imageio.decode_image(png, name, min_side=1).any(axis=2)


def paste_mask(target: np.ndarray, mask: np.ndarray, x: int, y: int) -> None:
    """OR boolean ``mask`` into ``target`` with its top-left at ``(x, y)``, clipped."""
    H, W = target.shape
    h, w = mask.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, W), min(y + h, H)
    if x1 <= x0 or y1 <= y0:
        return
    target[y0:y1, x0:x1] |= mask[y0 - y : y1 - y, x0 - x : x1 - x]


def _ring(points: Any, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < 3:
        raise ItemError(
            name, "bad_annotation", f"polygon ring needs >= 3 [x, y] points, got {arr.shape}"
        )
    return np.rint(arr).astype(np.int32)


def draw_object(obj: dict[str, Any], shape: tuple[int, int], name: str) -> np.ndarray:
    """One annotation object -> boolean mask of the image ``shape`` (H, W)."""
    import cv2

    geom = obj.get("geometryType") or obj.get("shape")
    out = np.zeros(shape, dtype=bool)
    if geom == "bitmap":
        bm = obj.get("bitmap") or {}
        try:
            x, y = (int(v) for v in bm["origin"])
            mask = decode_bitmap(bm["data"], name)
        except (KeyError, TypeError, ValueError) as exc:
            raise ItemError(name, "bad_annotation", f"bitmap object: {exc!r}") from exc
        paste_mask(out, mask, x, y)
    elif geom == "polygon":
        pts = obj.get("points") or {}
        canvas = np.zeros(shape, dtype=np.uint8)
        cv2.fillPoly(canvas, [_ring(pts.get("exterior"), name)], 1)
        for hole in pts.get("interior") or []:
            cv2.fillPoly(canvas, [_ring(hole, name)], 0)
        out = canvas.astype(bool)
    elif geom == "rectangle":
        ext = np.asarray((obj.get("points") or {}).get("exterior"), dtype=np.float64)
        if ext.shape != (2, 2):
            raise ItemError(name, "bad_annotation", "rectangle needs two [x, y] corners")
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
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Annotation JSON -> ``(person mask, ignore mask, counts)``; masks uint8 0/255 (H, W).

    ``person_classes`` empty = every class that is not neutral.  Objects of other classes
    are counted as ``other`` and not drawn.
    """
    try:
        H, W = int(ann["size"]["height"]), int(ann["size"]["width"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ItemError(name, "bad_annotation", "no size {height, width}") from exc
    if H <= 0 or W <= 0:
        raise ItemError(name, "bad_annotation", f"size {W}x{H}")
    person = np.zeros((H, W), dtype=bool)
    ignore = np.zeros((H, W), dtype=bool)
    counts = {"person": 0, "neutral": 0, "other": 0}
    objects = ann.get("objects") or []
    if not isinstance(objects, list):
        raise ItemError(name, "bad_annotation", "objects is not a list")
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


def image_tags(ann: dict[str, Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """``(sorted tag names, {name: value} for valued tags)`` of an annotation."""
    names: set[str] = set()
    values: dict[str, Any] = {}
    for t in ann.get("tags") or []:
        if isinstance(t, str):
            names.add(t)
        elif isinstance(t, dict) and t.get("name"):
            names.add(str(t["name"]))
            if t.get("value") is not None:
                values[str(t["name"])] = t["value"]
    return tuple(sorted(names)), values


# ----------------------------------------------------------------------------- source


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

    def _render(self, ann: dict[str, Any], name: str):
        return render_annotation(
            ann, name, neutral_classes=self.neutral, person_classes=self.person
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
            adata = imageio.read_bytes(ann_path)
            try:
                ann = json.loads(adata.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise ItemError(ann_path, "bad_annotation", f"JSON: {exc}") from exc
            if not isinstance(ann, dict):
                raise ItemError(ann_path, "bad_annotation", "not a JSON object")
            person, _ignore, counts = self._render(ann, ann_path)
        except MatdataError as err:
            return Reject.from_error(self.kind, ann_path, err)
        if person.shape != (h, w):
            return Reject(
                self.kind,
                ann_path,
                "size_mismatch",
                f"image {w}x{h}, annotation {person.shape[1]}x{person.shape[0]}",
            )
        if not person.any():
            return Reject(
                self.kind, path, "empty_mask", f"{counts['person']} person objects, no pixels"
            )
        tags, values = image_tags(ann)
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
        rgb = imageio.load_image(item.image)
        raw = imageio.read_bytes(item.alpha)
        try:
            ann = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ItemError(item.alpha, "bad_annotation", f"JSON: {exc}") from exc
        person, ignore, _ = self._render(ann, item.alpha)
        if person.shape != rgb.shape[:2]:
            raise ItemError(item.id, "size_mismatch", "annotation size differs from the image")
        return Foreground(
            rgb=rgb, alpha=person, ignore=ignore if ignore.any() else None, coarse=True
        )
