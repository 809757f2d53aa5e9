"""AISegment.com ``matting_human_half``: portraits with fine alpha mattes.

Layout (as downloaded)::

    ROOT/clip_img/<group>/clip_<8 digits>/<group>-<8 digits>.jpg        images (600x800)
    ROOT/matting/<group>/matting_<8 digits>/<group>-<8 digits>.png      RGBA; matte = alpha

``<group>`` is the shoot (a timestamp such as ``1803151818``): the split unit, so one
person never lands in two splits.  Images and mattes are paired by file *stem*, never by
rewriting one path into the other.

Quirks of the real download, and what a scan reports (``usable + rejected == found``):

* macOS ``._*`` AppleDouble files: reject ``macos_resource_fork`` (one per file).
* an image whose stem has no matte: reject ``missing_matte``.
* a matte whose stem has no image: reject ``missing_image`` (one per stem).
* an undecodable image or matte: reject with the :mod:`matdata.imageio` reason
  (``truncated``, ``not_an_image``, ``zero_size``...).
* image and matte of different sizes: reject ``size_mismatch``; an all-zero matte:
  reject ``empty_matte``.
* the Kaggle copy holds the tree twice (``ROOT/clip_img/...`` and
  ``ROOT/matting_human_half/clip_img/...``): the copies of a portrait are tried
  shallowest tree first; the first valid one is the item and every later copy is a
  ``duplicate`` reject, so each portrait is usable at most once.  (A copy tried before
  and found broken is rejected with its own reason.)
* any other file (``.DS_Store``, stray text): reject ``unexpected_file``.

``found`` therefore counts image files, orphan matte stems (plus their extra copies, as
``duplicate``) and stray files; the matte of an image is part of that image's input.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import groupby
from typing import Any

from matdata.errors import ItemError, MatdataError
from matdata.rejects import Reject
from matdata.scratch import ScratchDB, pack, unpack
from matdata.sources._common import (
    IMAGE_EXTS,
    MATTE_EXTS,
    VERIFY_MODES,
    basename,
    content_hash,
    extra_json,
    is_resource_fork,
    iter_files,
    opt_choice,
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

IMAGE_DIR = "clip_img"
MATTE_DIR = "matting"


def _group_of(parts: list[str], i: int, stem: str) -> str:
    """The shoot group: the directory right under ``clip_img`` / ``matting``, else the
    stem up to its last ``-``."""
    if i + 2 < len(parts):
        return parts[i + 1]
    return stem.rsplit("-", 1)[0] if "-" in stem else stem


@SOURCES.register("aisegment")
class AISegmentSource(Source):
    """Fine-alpha portraits from the AISegment ``matting_human_half`` layout.

    Options: ``verify`` (``decode`` | ``probe``), ``workers`` (validation threads),
    ``val_fraction``, ``test_fraction``, ``salt`` (split hashing).
    """

    kind = "aisegment"
    known_options = COMMON_OPTIONS
    roles = ("fg",)

    def __init__(self, root: str, **options: Any):
        super().__init__(root, **options)
        self.verify = opt_choice(options, "verify", "decode", VERIFY_MODES)
        self.workers = opt_workers(options)
        self.split_kw = split_kwargs(options)
        self.total: int | None = None
        self.filtered = 0

    # -------------------------------------------------------------------- scanning
    def _classify(self, files: Iterable[str], db: ScratchDB) -> None:
        """Sort files into image copies and matte copies by stem, and strays, in the
        on-disk tables ``img``, ``mat`` and ``stray`` of ``db`` (flat memory)."""
        db.execute("CREATE TABLE img (stem BLOB, depth INT, prefix BLOB, path BLOB, grp BLOB)")
        db.execute("CREATE TABLE mat (stem BLOB, depth INT, prefix BLOB, path BLOB)")
        db.execute("CREATE TABLE stray (path BLOB, reason TEXT, detail TEXT)")
        for path in files:
            parts = rel_parts(self.root, path)
            name = basename(path)
            if is_resource_fork(name):
                row = (pack(path), "macos_resource_fork", "AppleDouble file")
                db.execute("INSERT INTO stray VALUES (?, ?, ?)", row)
                continue
            stem, ext = stem_ext(name)
            dirs = parts[:-1]
            if IMAGE_DIR in dirs and ext in IMAGE_EXTS:
                i = dirs.index(IMAGE_DIR)
                prefix = "/".join(parts[:i])
                row = (pack(stem), i, pack(prefix), pack(path), pack(_group_of(parts, i, stem)))
                db.execute("INSERT INTO img VALUES (?, ?, ?, ?, ?)", row)
            elif MATTE_DIR in dirs and ext in MATTE_EXTS:
                i = dirs.index(MATTE_DIR)
                row = (pack(stem), i, pack("/".join(parts[:i])), pack(path))
                db.execute("INSERT INTO mat VALUES (?, ?, ?, ?)", row)
            else:
                row = (pack(path), "unexpected_file", "not in clip_img/ or matting/")
                db.execute("INSERT INTO stray VALUES (?, ?, ?)", row)
        db.execute("CREATE INDEX img_stem ON img (stem, depth, prefix, path, grp)")
        db.execute("CREATE INDEX mat_stem ON mat (stem, depth, prefix, path)")

    def scan(self, progress: Progress | None = None) -> Iterator[Item | Reject]:
        # Pairing by stem needs every file name at once: the join runs in an on-disk
        # scratch table, so memory stays flat for any number of portraits.
        db = ScratchDB(prefix="matdata-aisegment-")
        try:
            yield from self._scan(db, progress)
        finally:
            db.close()

    def _scan(self, db: ScratchDB, progress: Progress | None) -> Iterator[Item | Reject]:
        self._classify(iter_files(self.root), db)
        orphan_sql = "FROM mat WHERE stem NOT IN (SELECT stem FROM img)"
        (n_img,) = db.execute("SELECT count(*) FROM img").fetchone()
        (n_stray,) = db.execute("SELECT count(*) FROM stray").fetchone()
        (n_orph,) = db.execute(f"SELECT count(*) {orphan_sql}").fetchone()
        self.total = n_img + n_stray + n_orph
        tick = progress or (lambda n: None)

        for path, reason, detail in db.execute("SELECT * FROM stray ORDER BY path"):
            yield Reject(self.kind, unpack(path), reason, detail)
            tick(1)
        orphans = db.execute(f"SELECT stem, path {orphan_sql} ORDER BY stem, depth, prefix, path")
        for stem_b, rows in groupby(orphans, key=lambda r: r[0]):
            stem = unpack(stem_b)
            paths = [unpack(r[1]) for r in rows]
            yield Reject(self.kind, paths[0], "missing_image", f"no image with stem {stem}")
            for path in paths[1:]:
                yield Reject(self.kind, path, "duplicate", f"another copy of matte {stem}")
            tick(len(paths))

        Copies = list[tuple[int, str, str, str]]
        Mattes = list[tuple[int, str, str]]

        def portraits() -> Iterator[tuple[str, Copies, Mattes]]:
            """``(stem, image copies, matte copies)`` in stem order, from the scratch db."""
            cur = db.execute("SELECT * FROM img ORDER BY stem, depth, prefix, path, grp")
            for stem_b, rows in groupby(cur, key=lambda r: r[0]):
                copies = [(d, unpack(p), unpack(f), unpack(g)) for _, d, p, f, g in rows]
                mats = db.execute(
                    "SELECT depth, prefix, path FROM mat WHERE stem = ? "
                    "ORDER BY depth, prefix, path",
                    (stem_b,),
                ).fetchall()
                yield unpack(stem_b), copies, [(d, unpack(p), unpack(f)) for d, p, f in mats]

        def portrait(job: tuple[str, Copies, Mattes]) -> list[Item | Reject]:
            """One output per copy of the portrait: the first valid copy is the item."""
            stem, copies, mats = job
            outs: list[Item | Reject] = []
            kept = False
            for _, prefix, path, group in copies:
                if kept:
                    outs.append(
                        Reject(self.kind, path, "duplicate", f"portrait {stem} already ingested")
                    )
                    continue
                out = self._pair(stem, prefix, path, group, mats)
                kept = isinstance(out, Item)
                outs.append(out)
            return outs

        for outs in ordered_map(portrait, portraits(), self.workers):
            yield from outs
            tick(len(outs))

    def _pair(
        self, stem: str, prefix: str, path: str, group: str, mattes: list[tuple[int, str, str]]
    ) -> Item | Reject:
        if not mattes:
            return Reject(self.kind, path, "missing_matte", f"no matte with stem {stem}")
        # Prefer the matte in the same copy of the tree, then the shallowest other copy.
        matte = sorted(mattes, key=lambda m: (m[1] != prefix, m[0], m[2]))[0][2]
        from matdata import imageio

        try:
            data = imageio.read_bytes(path)
            w, h = validate_image(data, path, self.verify)
        except MatdataError as err:
            return Reject.from_error(self.kind, path, err)
        try:
            mdata = imageio.read_bytes(matte)
            if self.verify == "decode":
                alpha = imageio.decode_alpha(mdata, matte)
                mh, mw = alpha.shape
                if int(alpha.max(initial=0)) == 0:
                    raise ItemError(matte, "empty_matte", "the alpha channel is all zero")
            else:
                mw, mh = validate_image(mdata, matte, "probe")
        except MatdataError as err:
            return Reject.from_error(self.kind, matte, err)
        if (mw, mh) != (w, h):
            return Reject(self.kind, path, "size_mismatch", f"image {w}x{h}, matte {mw}x{mh}")
        return Item(
            id=safe_id(stem),
            source=self.kind,
            role="fg",
            split=assign_split(group, **self.split_kw),
            image=path,
            width=w,
            height=h,
            sha256=content_hash(data, mdata),
            group=group,
            alpha=matte,
            coarse=False,
            extra=extra_json(copy=prefix),
        )

    # --------------------------------------------------------------------- loading
    def load_foreground(self, item: Item) -> Foreground:
        """RGB from the JPEG, alpha from the matte PNG's alpha channel."""
        from matdata import imageio

        if not item.alpha:
            raise ItemError(item.id, "missing_matte", "manifest row has no matte path")
        data, mdata = read_checked(item, item.image, item.alpha)
        rgb = imageio.decode_image(data, item.image)
        alpha = imageio.decode_alpha(mdata, item.alpha)
        if alpha.shape != rgb.shape[:2]:
            raise ItemError(
                item.id,
                "size_mismatch",
                f"image {rgb.shape[1]}x{rgb.shape[0]}, matte {alpha.shape[1]}x{alpha.shape[0]}",
            )
        return Foreground(rgb=rgb, alpha=alpha, ignore=None, coarse=False)


__all__ = ["AISegmentSource"]
