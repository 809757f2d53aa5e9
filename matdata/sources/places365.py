"""Places365 scene images as compositing backgrounds.

Any of the published layouts under ROOT (or ROOT being one of them)::

    data_256/<letter>/<category...>/<8 digits>.jpg     train, 256x256
    data_large/<letter>/<category...>/<8 digits>.jpg   train, short side 512
    places365_standard/{train,val}/<category...>/x.jpg "easy format"
    val_256/Places365_val_<8 digits>.jpg               val, labels in places365_val.txt
    val_large/Places365_val_<8 digits>.jpg
    test_256/, test_large/                             test, no labels

Metadata files, used when present anywhere under ROOT:

* ``categories_places365.txt``: ``/a/airfield 0`` (category path, index);
* ``IO_places365.txt``: ``/a/airfield 2`` (1 indoor, 2 outdoor);
* ``places365_val.txt``: ``Places365_val_00000001.jpg 165`` (val labels);
* ``places365_train_standard.txt``: ``/a/airfield/00000001.jpg 0`` (not needed: train
  paths carry their category).

Nested categories keep their sub-level: ``s/swimming_pool/indoor`` -> category
``swimming_pool/indoor``.  The split is the layout's (``data_*`` / ``train`` -> train,
``val*`` -> val, ``test*`` -> test).  Grayscale JPEGs are ordinary backgrounds (decoded
to RGB).

Options: ``categories`` (names, comma-separated or list; ``swimming_pool`` also matches
``swimming_pool/indoor``), ``io`` (``indoor`` | ``outdoor`` | 1 | 2), ``verify``,
``workers``.  Images excluded by a filter are neither items nor rejects; their number is
``self.filtered`` (reported by ``matdata ingest``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from matdata.errors import ConfigError, MatdataError
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
    rel_parts,
    split_kwargs,
    stem_ext,
    validate_image,
)
from matdata.sources.base import (
    COMMON_OPTIONS,
    SOURCES,
    Item,
    Progress,
    Source,
    assign_split,
    safe_id,
)

CATEGORIES_FILE = "categories_places365.txt"
IO_FILE = "IO_places365.txt"
VAL_LIST = "places365_val.txt"
TRAIN_LISTS = ("places365_train_standard.txt", "places365_train_challenge.txt")
META_FILES = (CATEGORIES_FILE, IO_FILE, VAL_LIST, "places365_test.txt", *TRAIN_LISTS)

#: layout dir -> (split, has a letter level, has category dirs)
LAYOUTS = {
    "data_256": ("train", True, True),
    "data_large": ("train", True, True),
    "val_256": ("val", False, False),
    "val_large": ("val", False, False),
    "test_256": ("test", False, False),
    "test_large": ("test", False, False),
}


def category_name(path: str) -> str:
    """``/s/swimming_pool/indoor`` -> ``swimming_pool/indoor``; ``airfield`` stays."""
    parts = [p for p in path.strip().split("/") if p]
    if len(parts) >= 2 and len(parts[0]) == 1:
        parts = parts[1:]
    return "/".join(parts)


def parse_index_file(text: str) -> dict[str, int]:
    """Lines ``KEY INT`` -> ``{KEY: INT}`` (blank lines ignored)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        bits = line.split()
        if len(bits) >= 2:
            try:
                out[bits[0]] = int(bits[1])
            except ValueError:
                continue
    return out


def _io_code(value: Any) -> int | None:
    if value is None or value == "":
        return None
    v = str(value).strip().lower()
    table = {"indoor": 1, "1": 1, "outdoor": 2, "2": 2}
    if v not in table:
        raise ConfigError(f"option io={value!r} must be indoor, outdoor, 1 or 2")
    return table[v]


@SOURCES.register("places365")
class Places365Source(Source):
    """Background scenes from Places365 (role ``bg``)."""

    kind = "places365"
    known_options = (*COMMON_OPTIONS, "categories", "io")
    roles = ("bg",)
    split_hint = "add val_256/ (or val_large/) and places365_val.txt to ROOT (Places' own val)"

    def __init__(self, root: str, **options: Any):
        super().__init__(root, **options)
        self.verify = opt_choice(options, "verify", "decode", VERIFY_MODES)
        self.workers = opt_workers(options)
        self.split_kw = split_kwargs(options)
        self.want_categories = [category_name(c) for c in opt_list(options, "categories")]
        self.want_io = _io_code(options.get("io"))
        self.total: int | None = None
        self.filtered = 0
        # index -> name, from categories_places365.txt (a dict: an index read off disk
        # must not size an allocation; a hostile "/a/b 999999999999" costs one entry)
        self.categories: dict[int, str] = {}
        self._category_names: set[str] = set()
        self.io: dict[str, int] = {}  # name -> 1 | 2
        self.val_labels: dict[str, int] = {}  # file name -> category index

    def _load_meta(self, by_name: dict[str, str]) -> None:
        from matdata.imageio import read_bytes

        if CATEGORIES_FILE in by_name:
            idx = parse_index_file(read_bytes(by_name[CATEGORIES_FILE]).decode("utf-8", "replace"))
            self.categories = {i: category_name(path) for path, i in idx.items()}
            self._category_names = set(self.categories.values())
        if IO_FILE in by_name:
            raw = parse_index_file(read_bytes(by_name[IO_FILE]).decode("utf-8", "replace"))
            self.io = {category_name(k): v for k, v in raw.items()}
        if VAL_LIST in by_name:
            self.val_labels = parse_index_file(
                read_bytes(by_name[VAL_LIST]).decode("utf-8", "replace")
            )

    def _wanted(self, category: str | None, io: int | None) -> bool:
        if self.want_categories:
            if category is None:
                return False
            if not any(category == c or category.startswith(c + "/") for c in self.want_categories):
                return False
        return not (self.want_io is not None and io != self.want_io)

    def _locate(self, parts: list[str]) -> tuple[str, str, str | None] | None:
        """``(layout, split, category)`` of an image path, None outside known layouts."""
        base_name = basename(self.root)
        if base_name in LAYOUTS or base_name == "places365_standard":
            parts = [base_name, *parts]
        for i, p in enumerate(parts[:-1]):
            if p in LAYOUTS:
                split, letter, has_cat = LAYOUTS[p]
                cat_parts = parts[i + 1 + int(letter) : -1] if has_cat else []
                return p, split, "/".join(cat_parts) or None
            if (
                p == "places365_standard"
                and i + 1 < len(parts) - 1
                and parts[i + 1] in ("train", "val")
            ):
                return f"{p}/{parts[i + 1]}", parts[i + 1], "/".join(parts[i + 2 : -1]) or None
        return None

    def _canonical(self, category: str | None, fname: str) -> str | None:
        if category is None and fname in self.val_labels:
            name = self.categories.get(self.val_labels[fname])
            if name is not None:
                return name
        names = self._category_names
        if category is not None and names and category not in names:
            alt = category.replace("-", "/")  # easy-format dir names may flatten nesting
            if alt in names:
                return alt
        return category

    def scan(self, progress: Progress | None = None) -> Iterator[Item | Reject]:
        # Two streamed walks (Places has 1.8M files): the first counts the inputs and
        # finds the metadata lists, the second validates.  Nothing is held per file.
        meta: dict[str, str] = {}
        total = 0
        for path in iter_files(self.root):
            name = basename(path)
            if name in META_FILES:
                meta.setdefault(name, path)
            else:
                total += 1
        self._load_meta(meta)
        self.total = total
        self.filtered = 0
        tick = progress or (lambda n: None)
        inputs = (p for p in iter_files(self.root) if basename(p) not in META_FILES)
        for out in ordered_map(self._one, inputs, self.workers):
            if out is None:
                self.filtered += 1
            else:
                yield out
            tick(1)

    def _one(self, path: str) -> Item | Reject | None:
        """The outcome for one file; None when a filter excludes it."""
        from matdata import imageio

        name = basename(path)
        if is_resource_fork(name):
            return Reject(self.kind, path, "macos_resource_fork", "AppleDouble file")
        stem, ext = stem_ext(name)
        loc = self._locate(rel_parts(self.root, path))
        if ext not in IMAGE_EXTS or loc is None:
            return Reject(self.kind, path, "unexpected_file", "not an image in a Places365 layout")
        layout, split, category = loc
        category = self._canonical(category, name)
        io = self.io.get(category) if category else None
        if not self._wanted(category, io):
            return None
        try:
            data = imageio.read_bytes(path)
            w, h = validate_image(data, path, self.verify)
        except MatdataError as err:
            return Reject.from_error(self.kind, path, err)
        key = f"{layout}-{category}-{stem}" if category else f"{layout}-{stem}"
        item_id = safe_id(key)
        if split not in ("train", "val", "test"):  # pragma: no cover - layouts define it
            split = assign_split(item_id, **self.split_kw)
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
            category=category,
            io=io,
            extra=extra_json(layout=layout),
        )
