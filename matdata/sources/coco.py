"""COCO images as compositing backgrounds (``matdata ingest coco ROOT``).

The official layout::

    ROOT/annotations/instances_train2017.json   (or instances_train2014.json)
    ROOT/annotations/instances_val2017.json     (or instances_val2014.json)
    ROOT/train2017/000000000009.jpg ...         (train2014/COCO_train2014_000000000009.jpg)
    ROOT/val2017/...

Role ``bg``; the split is COCO's own (``train`` / ``val``).  When both years are present,
2017 is used (it re-splits the same photos); ``-o year=2014`` picks the other.

An image that shows a category of ``exclude`` (default ``person``; any annotation counts,
crowd regions and tiny ones included: a person left in a background teaches a matting
model that people are background) is *filtered*: neither an item nor a reject, counted
in ``filtered`` with its reason (``category person``).  ``-o exclude=person,dog`` changes
the list, ``-o exclude=none`` keeps every image.  Images without annotations are usable.
An image listed in the JSON but not on disk is a ``missing_image`` reject, one that does
not decode a reject with the :mod:`matdata.imageio` reason, a file in an image folder
that the JSON does not list an ``unexpected_file`` reject.  Each item's ``tags`` are the
names of the categories annotated in it, so ``matdata build --bg-category car`` keeps
the images that show a car.

The annotation JSON (450 MB for train2017) is streamed with ``ijson`` (yajl2 C backend):
three passes (categories, images, annotations), keeping per image only its id, size,
annotation count and a bit set of its categories (a file name only when it does not
follow COCO's naming), so parsing needs a few MB, not the gigabytes ``json.load`` takes.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matdata.errors import ConfigError, MatdataError, SourceError
from matdata.rejects import Reject
from matdata.sources._common import (
    IMAGE_EXTS,
    VERIFY_MODES,
    basename,
    content_hash,
    extra_json,
    is_resource_fork,
    iter_files,
    opt_choice,
    opt_list,
    opt_workers,
    ordered_map,
    stem_ext,
    validate_image,
)
from matdata.sources.base import SOURCES, Item, Progress, Source, safe_id

ANN_RE = re.compile(r"^instances_(train|val)(2014|2017)\.json$")
YEARS = ("2017", "2014")


def image_set(split: str, year: str) -> str:
    """``train2017``: the image folder (and set name) of a split and year."""
    return f"{split}{year}"


def default_name(set_name: str, image_id: int) -> str:
    """COCO's own file name of an image: ``000000000139.jpg`` (2017) or
    ``COCO_val2014_000000000139.jpg`` (2014)."""
    if set_name.endswith("2014"):
        return f"COCO_{set_name}_{image_id:012d}.jpg"
    return f"{image_id:012d}.jpg"


@dataclass
class CocoIndex:
    """What an instances JSON says, compactly: arrays sorted by image id."""

    set_name: str
    ids: np.ndarray  # int64, sorted
    width: np.ndarray  # int32
    height: np.ndarray  # int32
    n_ann: np.ndarray  # uint32: annotations per image
    cats: np.ndarray  # (n, words) uint64 bit set over category bit numbers
    names: dict[int, str] = field(default_factory=dict)  # file names not in COCO's form
    category_names: list[str] = field(default_factory=list)  # bit number -> name
    unknown_categories: int = 0  # annotations whose category_id is not in "categories"
    unknown_images: int = 0  # annotations whose image_id is not in "images"

    def __len__(self) -> int:
        return len(self.ids)

    def file_name(self, row: int) -> str:
        i = int(self.ids[row])
        return self.names.get(i) or default_name(self.set_name, i)

    def categories(self, row: int) -> list[str]:
        """Sorted names of the categories annotated in image ``row``."""
        out = []
        for w, word in enumerate(self.cats[row].tolist()):
            while word:
                low = word & -word
                out.append(self.category_names[w * 64 + low.bit_length() - 1])
                word ^= low
        return sorted(out)

    def nbytes(self) -> int:
        arrays = (self.ids, self.width, self.height, self.n_ann, self.cats)
        return int(sum(a.nbytes for a in arrays))


def _items(path: str, prefix: str) -> Iterator[Any]:
    import ijson

    from matdata.storage import open_input

    with open_input(path) as f:
        yield from ijson.items(f, prefix, use_float=True)


def parse_instances(path: str, set_name: str) -> CocoIndex:
    """Stream a COCO ``instances_*.json`` into a :class:`CocoIndex` (three passes).

    Raises :class:`SourceError` when the file is not valid JSON or lacks ``images``."""
    import ijson

    try:
        return _parse(path, set_name)
    except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()
        raise SourceError(
            f"{path} is not a valid COCO annotation file: {first}",
            hint="re-download or re-extract the annotations",
        ) from exc


def _parse(path: str, set_name: str) -> CocoIndex:
    bit_of, cat_names = _parse_categories(path)
    id_arr, width, height, names = _parse_images(path, set_name)
    words = max(1, (len(cat_names) + 63) // 64)
    n_ann, cats, unknown_cat, unknown_img = _parse_annotations(path, bit_of, id_arr, words)
    return CocoIndex(
        set_name=set_name,
        ids=id_arr,
        width=width,
        height=height,
        n_ann=n_ann,
        cats=cats,
        names=names,
        category_names=cat_names,
        unknown_categories=unknown_cat,
        unknown_images=unknown_img,
    )


def _parse_categories(path: str) -> tuple[dict[int, int], list[str]]:
    """Pass 1, ``categories`` (at the end of the official files; small): ``(bit number
    of each category id, name of each bit)``."""
    bit_of: dict[int, int] = {}
    cat_names: list[str] = []
    for c in _items(path, "categories.item"):
        if isinstance(c, dict) and "id" in c:
            bit_of[int(c["id"])] = len(cat_names)
            cat_names.append(str(c.get("name", c["id"])))
    return bit_of, cat_names


def _parse_images(
    path: str, set_name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, str]]:
    """Pass 2, ``images``: ``(ids, widths, heights)`` sorted by id, and the file names
    that are not COCO's own form."""
    ids, ws, hs = array("q"), array("i"), array("i")
    names: dict[int, str] = {}
    n_images = 0
    for im in _items(path, "images.item"):
        if not isinstance(im, dict) or "id" not in im:
            continue
        n_images += 1
        i = int(im["id"])
        ids.append(i)
        ws.append(int(im.get("width") or 0))
        hs.append(int(im.get("height") or 0))
        name = str(im.get("file_name") or "")
        if name != default_name(set_name, i):
            names[i] = name
    if n_images == 0:
        raise SourceError(f"{path} lists no images", hint="check that it is an instances file")
    id_arr = np.frombuffer(ids, dtype=np.int64)
    order = np.argsort(id_arr, kind="stable")
    width = np.frombuffer(ws, dtype=np.int32)[order]
    height = np.frombuffer(hs, dtype=np.int32)[order]
    return id_arr[order], width, height, names


def _parse_annotations(
    path: str, bit_of: dict[int, int], ids: np.ndarray, words: int
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Pass 3, ``annotations``: ``(annotations per image, bit set of the categories in
    each image, annotations of an unknown category, annotations of an unknown image)``,
    images in ``ids`` order (no per-annotation storage: bits are set in batches)."""
    cats = np.zeros((len(ids), words), dtype=np.uint64)
    n_ann = np.zeros(len(ids), dtype=np.uint32)
    unknown_cat = unknown_img = 0
    batch_img, batch_bit = array("q"), array("q")
    for a in _items(path, "annotations.item"):
        if not isinstance(a, dict):
            continue
        try:
            img = int(a["image_id"])
        except (KeyError, TypeError, ValueError):
            unknown_img += 1
            continue
        bit = bit_of.get(a.get("category_id"), -1)  # type: ignore[arg-type]
        if bit < 0:
            unknown_cat += 1
        batch_img.append(img)
        batch_bit.append(bit)
        if len(batch_img) >= 65536:
            unknown_img += _set_bits(ids, batch_img, batch_bit, n_ann, cats)
    unknown_img += _set_bits(ids, batch_img, batch_bit, n_ann, cats)
    return n_ann, cats, unknown_cat, unknown_img


def _set_bits(
    ids: np.ndarray, batch_img: array, batch_bit: array, n_ann: np.ndarray, cats: np.ndarray
) -> int:
    """Count a batch of ``(image id, category bit)`` into ``n_ann`` and set the bits in
    ``cats`` (in place; the batch is emptied); return how many name an unknown image."""
    if not batch_img:
        return 0
    img = np.array(batch_img, dtype=np.int64)
    bit = np.array(batch_bit, dtype=np.int64)
    row = np.searchsorted(ids, img)
    ok = (row < len(ids)) & (ids[np.minimum(row, len(ids) - 1)] == img)
    row, bit = row[ok], bit[ok]
    np.add.at(n_ann, row, 1)
    has = bit >= 0
    r, b = row[has], bit[has]
    np.bitwise_or.at(cats, (r, b // 64), np.left_shift(np.uint64(1), (b % 64).astype(np.uint64)))
    del batch_img[:], batch_bit[:]
    return int((~ok).sum())


def find_annotations(root: str, year: str | None = None) -> list[tuple[str, str, str]]:
    """``[(split, set name, annotation path)]`` under ``ROOT/annotations`` for one year
    (``year`` or, by default, 2017 when present, else 2014); train before val."""
    from matdata.storage import get_fs, join

    fs, p = get_fs(join(root, "annotations"))
    try:
        names = [basename(n) for n in fs.ls(p, detail=False)] if fs.isdir(p) else []
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot list {root}/annotations: {exc}") from exc
    found: dict[str, dict[str, str]] = {}
    for n in names:
        m = ANN_RE.match(n)
        if m:
            found.setdefault(m.group(2), {})[m.group(1)] = join(root, "annotations", n)
    if not found:
        raise SourceError(
            f"no annotations/instances_{{train,val}}{{2017,2014}}.json under {root}",
            hint="point ROOT at the COCO folder that holds annotations/ and train2017/",
        )
    if year is None:
        year = next(y for y in YEARS if y in found)
    if year not in found:
        raise ConfigError(
            f"option year={year} has no annotation file under {root}/annotations",
            hint=f"years present: {', '.join(sorted(found))}",
        )
    return [
        (split, image_set(split, year), found[year][split])
        for split in ("train", "val")
        if split in found[year]
    ]


@SOURCES.register("coco")
class CocoSource(Source):
    """COCO photos as backgrounds (role ``bg``); see the module docstring.

    Options: ``exclude`` (category names, default ``person``; ``none`` keeps all),
    ``year`` (2017 | 2014), ``verify``, ``workers``.
    """

    kind = "coco"
    roles = ("bg",)
    split_hint = "add annotations/instances_val2017.json and val2017/ to ROOT (COCO's own val)"

    def __init__(self, root: str, **options: Any):
        super().__init__(root, **options)
        self.verify = opt_choice(options, "verify", "decode", VERIFY_MODES)
        self.workers = opt_workers(options)
        excl = opt_list(options, "exclude") if "exclude" in options else ["person"]
        self.exclude = tuple(sorted({e for e in excl if e.lower() != "none"}))
        year = options.get("year")
        self.year = None if year in (None, "") else str(year)
        if self.year is not None and self.year not in YEARS:
            raise ConfigError(f"option year={year!r} must be 2017 or 2014")
        self.total: int | None = None
        self.filtered = 0
        self.filtered_reasons: Counter[str] = Counter()

    def scan(self, progress: Progress | None = None) -> Iterator[Item | Reject]:
        from matdata.storage import get_fs, join

        tick = progress or (lambda n: None)
        sets = find_annotations(self.root, self.year)
        indexes = [(split, name, parse_instances(path, name)) for split, name, path in sets]
        self.total = sum(len(ix) for _, _, ix in indexes)
        self.filtered = 0
        self.filtered_reasons = Counter()
        for split, name, ix in indexes:
            folder = join(self.root, name)
            fs, p = get_fs(folder)
            # files in the image folder that the JSON does not list
            if fs.isdir(p):
                for path in _unlisted_files(folder, p, name, ix):
                    fork = is_resource_fork(basename(path))
                    why = "AppleDouble file" if fork else f"not listed in instances_{name}.json"
                    reason = "macos_resource_fork" if fork else "unexpected_file"
                    self.total += 1
                    yield Reject(self.kind, path, reason, why)
                    tick(1)
            wanted = set(self.exclude)
            rows = []
            for r in range(len(ix)):
                hit = sorted(wanted.intersection(ix.categories(r))) if wanted else []
                if hit:
                    self.filtered += 1
                    self.filtered_reasons[f"category {', '.join(hit)}"] += 1
                    tick(1)
                    continue
                rows.append(r)

            def _one(r: int, ix: CocoIndex = ix, split: str = split, name: str = name):
                return self._item(ix, r, split, name)

            for out in ordered_map(_one, rows, self.workers):
                yield out
                tick(1)

    def _item(self, ix: CocoIndex, row: int, split: str, set_name: str) -> Item | Reject:
        from matdata import imageio
        from matdata.storage import join

        fname = ix.file_name(row)
        path = join(self.root, set_name, fname)
        try:
            data = imageio.read_bytes(path)
        except MatdataError as err:
            if isinstance(err.__cause__, FileNotFoundError):
                return Reject(
                    self.kind, path, "missing_image", f"listed in instances_{set_name}.json"
                )
            return Reject.from_error(self.kind, path, err)
        try:
            w, h = validate_image(data, path, self.verify)
        except MatdataError as err:
            return Reject.from_error(self.kind, path, err)
        coco_id = int(ix.ids[row])
        item_id = safe_id(f"{set_name}-{stem_ext(fname)[0]}")
        return Item(
            id=item_id,
            source=self.kind,
            role="bg",
            split=split,
            image=path,
            width=w,
            height=h,
            sha256=content_hash(data),
            group=item_id,
            tags=tuple(ix.categories(row)),
            extra=extra_json(set=set_name, coco_id=coco_id, annotations=int(ix.n_ann[row])),
        )


def _unlisted_files(folder: str, local: str, set_name: str, ix: CocoIndex) -> Iterator[str]:
    """Files below the image folder that the JSON does not list, in :func:`iter_files`'s
    order (a depth-first walk sorted by name).

    A local folder (``local`` is its path) is streamed with ``os.scandir`` and of each
    directory only the unlisted files and the subdirectories are kept, so memory does not
    grow with the folder (118k names for train2017); the names the JSON lists are checked
    against the index arrays (and the set of file names not in COCO's form)."""
    import os

    custom = set(ix.names.values())
    if "://" in folder:  # other file systems: listed a directory at a time
        for path in iter_files(folder):
            if not _is_listed(basename(path), set_name, ix, custom):
                yield path
        return

    def walk(directory: str) -> Iterator[str]:
        keep: list[tuple[str, bool]] = []
        with os.scandir(directory) as entries:
            for e in entries:
                is_dir = e.is_dir(follow_symlinks=False)  # as iter_files: a link is a file
                if is_dir or not _is_listed(e.name, set_name, ix, custom):
                    keep.append((e.name, is_dir))
        for entry, is_dir in sorted(keep):
            path = os.path.join(directory, entry)
            if is_dir:
                yield from walk(path)
            else:
                yield path

    yield from walk(local)


def _is_listed(fname: str, set_name: str, ix: CocoIndex, listed: set[str] | None) -> bool:
    if listed is not None and fname in listed:
        return True
    stem, ext = stem_ext(fname)
    if ext not in IMAGE_EXTS:
        return False
    m = re.search(r"(\d+)$", stem)
    if not m:
        return False
    i = int(m.group(1))
    row = int(np.searchsorted(ix.ids, i))
    return row < len(ix.ids) and int(ix.ids[row]) == i and ix.file_name(row) == fname
