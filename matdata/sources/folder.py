"""Plain folders of user data: image + alpha pairs, RGBA cut-outs, or backgrounds.

Modes (option ``mode``; default ``auto``):

* ``pairs``: ``ROOT/<images>/**/x.jpg`` with ``ROOT/<alphas>/**/x.png`` matched by the
  relative path *stem* (``images/a/x.jpg`` <-> ``alphas/a/x.png``).  ``images`` defaults
  to ``images``, ``alphas`` to the first of ``alphas, alpha, mattes, matte, masks, mask``
  that exists.  The alpha is an 8/16-bit gray image or the alpha channel of an RGBA one.
* ``rgba``: every image under ROOT is a cut-out; its alpha channel is the matte.
* ``bg``: every image under ROOT is a background (role ``bg``).

``auto`` picks ``bg`` when option ``role=bg``, ``pairs`` when the two folders exist,
else ``rgba``.  Groups (split units) default to the relative stem (each image its own
group); option ``group`` = ``dir`` uses the parent folder, any other value is a regular
expression whose first group is taken from the relative path (the stem when no match).

Scan outcomes: ``missing_matte``, ``missing_image``, ``duplicate`` (two images with one
stem, e.g. ``x.jpg`` and ``x.png``), ``size_mismatch``, ``bad_channels`` (an ``rgba``
image without alpha), ``macos_resource_fork``, ``unexpected_file`` and the
:mod:`matdata.imageio` reasons.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from itertools import groupby
from typing import Any

from matdata.errors import ConfigError, ItemError, MatdataError
from matdata.rejects import Reject
from matdata.scratch import ScratchDB, pack, unpack
from matdata.sources._common import (
    IMAGE_EXTS,
    MATTE_EXTS,
    VERIFY_MODES,
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

ALPHA_DIRS = ("alphas", "alpha", "mattes", "matte", "masks", "mask")
MODES = ("auto", "pairs", "rgba", "bg")


@SOURCES.register("folder")
class FolderSource(Source):
    """Generic folders.  Options: ``mode``, ``role``, ``images``, ``alphas``, ``group``,
    ``verify``, ``workers``, ``val_fraction``, ``test_fraction``, ``salt``."""

    kind = "folder"
    known_options = (*COMMON_OPTIONS, "mode", "role", "images", "alphas", "group")
    roles = ("fg", "bg")

    def __init__(self, root: str, **options: Any):
        super().__init__(root, **options)
        self.mode = opt_choice(options, "mode", "auto", MODES)
        role = options.get("role")
        if role not in (None, "fg", "bg"):
            raise ConfigError(f"option role={role!r} must be fg or bg")
        if self.mode == "bg" and role == "fg" or self.mode in ("pairs", "rgba") and role == "bg":
            raise ConfigError(f"option role={role} contradicts mode={self.mode}")
        self.role = role
        self.verify = opt_choice(options, "verify", "decode", VERIFY_MODES)
        self.workers = opt_workers(options)
        self.split_kw = split_kwargs(options)
        self.images_dir = str(options.get("images", "images"))
        self.alphas_dir = options.get("alphas")
        group = str(options.get("group", "stem"))
        self.group_mode = group
        self.group_re = None
        if group not in ("stem", "dir"):
            try:
                self.group_re = re.compile(group)
            except re.error as exc:
                raise ConfigError(
                    f"option group={group!r} is not a regular expression: {exc}"
                ) from None
        self.total: int | None = None
        self.filtered = 0

    # ------------------------------------------------------------------- helpers
    def _resolve_mode(self, files: Iterable[str]) -> tuple[str, str | None]:
        """``(mode, alphas dir name)`` after auto-detection (``files`` is only walked when
        the mode depends on the top folders that hold files)."""
        if self.mode == "bg" or (self.mode == "auto" and self.role == "bg"):
            return "bg", None
        tops = set()
        for f in files:
            parts = rel_parts(self.root, f)
            if len(parts) > 1:
                tops.add(parts[0])
        alphas = self.alphas_dir or next((d for d in ALPHA_DIRS if d in tops), None)
        if self.mode == "pairs":
            if self.images_dir not in tops or not alphas or alphas not in tops:
                raise ConfigError(
                    f"mode=pairs needs {self.root}/{self.images_dir}/ and an alphas folder "
                    f"({'/'.join(ALPHA_DIRS)})",
                    hint="set options images=DIR alphas=DIR",
                )
            return "pairs", alphas
        if self.mode == "auto" and self.images_dir in tops and alphas in tops:
            return "pairs", alphas
        return "rgba", None

    def _group(self, rel_stem: str) -> str:
        if self.group_mode == "stem":
            return rel_stem
        if self.group_mode == "dir":
            return rel_stem.rsplit("/", 1)[0] if "/" in rel_stem else "."
        m = self.group_re.search(rel_stem) if self.group_re else None
        if m is None:
            return rel_stem
        return m.group(1) if m.groups() else m.group(0)

    # ------------------------------------------------------------------- scanning
    def scan(self, progress: Progress | None = None) -> Iterator[Item | Reject]:
        # Pairing by stem needs every file name at once: the join runs in an on-disk
        # scratch table fed by a streamed walk, so memory stays flat for any folder size.
        db = ScratchDB(prefix="matdata-folder-")
        try:
            yield from self._scan(db, progress)
        finally:
            db.close()

    def _scan(self, db: ScratchDB, progress: Progress | None) -> Iterator[Item | Reject]:
        mode, alphas_dir = self._resolve_mode(iter_files(self.root))
        self.resolved_mode = mode
        tick = progress or (lambda n: None)
        db.execute("CREATE TABLE img (stem BLOB, path BLOB)")
        db.execute("CREATE TABLE mat (stem BLOB, path BLOB)")
        db.execute("CREATE TABLE stray (path BLOB, reason TEXT, detail TEXT)")

        def stray(path: str, reason: str, detail: str) -> None:
            db.execute("INSERT INTO stray VALUES (?, ?, ?)", (pack(path), reason, detail))

        for path in iter_files(self.root):
            parts = rel_parts(self.root, path)
            name = parts[-1]
            if is_resource_fork(name):
                stray(path, "macos_resource_fork", "AppleDouble file")
                continue
            stem, ext = stem_ext(name)
            if mode == "pairs":
                top = parts[0] if len(parts) > 1 else ""
                rel_stem = "/".join([*parts[1:-1], stem])
                if top == self.images_dir and ext in IMAGE_EXTS:
                    db.execute("INSERT INTO img VALUES (?, ?)", (pack(rel_stem), pack(path)))
                elif top == alphas_dir and ext in MATTE_EXTS:
                    db.execute("INSERT INTO mat VALUES (?, ?)", (pack(rel_stem), pack(path)))
                else:
                    stray(path, "unexpected_file", "not an image in the pair folders")
            elif ext in IMAGE_EXTS:
                row = (pack("/".join([*parts[:-1], stem])), pack(path))
                db.execute("INSERT INTO img VALUES (?, ?)", row)
            else:
                stray(path, "unexpected_file", "not an image file")
        db.execute("CREATE INDEX img_stem ON img (stem, path)")
        db.execute("CREATE INDEX mat_stem ON mat (stem, path)")
        orphan_sql = "FROM mat WHERE stem NOT IN (SELECT stem FROM img)"
        (n_img,) = db.execute("SELECT count(*) FROM img").fetchone()
        (n_stray,) = db.execute("SELECT count(*) FROM stray").fetchone()
        (n_orph,) = db.execute(f"SELECT count(*) {orphan_sql}").fetchone()
        self.total = n_stray + n_img + n_orph

        for path, reason, detail in db.execute("SELECT * FROM stray ORDER BY path"):
            yield Reject(self.kind, unpack(path), reason, detail)
            tick(1)
        for stem, path in db.execute(f"SELECT stem, path {orphan_sql} ORDER BY stem, path"):
            rel_stem = unpack(stem)
            yield Reject(self.kind, unpack(path), "missing_image", f"no image with stem {rel_stem}")
            tick(1)

        def stems() -> Iterator[tuple[str, list[str], list[str]]]:
            """``(relative stem, image paths, matte paths)`` in stem order."""
            for stem_b, rows in groupby(db.execute("SELECT * FROM img ORDER BY stem, path"),
                                        key=lambda r: r[0]):  # fmt: skip
                paths = [unpack(r[1]) for r in rows]
                mats = db.execute("SELECT path FROM mat WHERE stem = ? ORDER BY path", (stem_b,))
                yield unpack(stem_b), paths, [unpack(m) for (m,) in mats]

        def one(job: tuple[str, list[str], list[str]]) -> list[Item | Reject]:
            rel_stem, paths, mats = job
            outs = [self._item(mode, rel_stem, paths[0], mats)]
            for dup in paths[1:]:
                outs.append(
                    Reject(self.kind, dup, "duplicate", f"another image with stem {rel_stem}")
                )
            return outs

        for outs in ordered_map(one, stems(), self.workers):
            yield from outs
            tick(len(outs))

    def _item(self, mode: str, rel_stem: str, path: str, mattes: list[str]) -> Item | Reject:
        from matdata import imageio

        if mode == "pairs" and not mattes:
            return Reject(self.kind, path, "missing_matte", f"no alpha with stem {rel_stem}")
        try:
            data = imageio.read_bytes(path)
            if mode == "rgba":
                if self.verify == "decode":
                    rgb, _ = imageio.decode_rgba(data, path)
                    w, h = rgb.shape[1], rgb.shape[0]
                else:
                    w, h = validate_image(data, path, "probe")
            else:
                w, h = validate_image(data, path, self.verify)
        except MatdataError as err:
            return Reject.from_error(self.kind, path, err)
        blobs = [data]
        alpha_path = None
        if mode == "pairs":
            alpha_path = mattes[0]
            try:
                mdata = imageio.read_bytes(alpha_path)
                if self.verify == "decode":
                    mh, mw = imageio.decode_alpha(mdata, alpha_path).shape
                else:
                    mw, mh = validate_image(mdata, alpha_path, "probe")
            except MatdataError as err:
                return Reject.from_error(self.kind, alpha_path, err)
            if (mw, mh) != (w, h):
                return Reject(self.kind, path, "size_mismatch", f"image {w}x{h}, alpha {mw}x{mh}")
            blobs.append(mdata)
        group = self._group(rel_stem)
        return Item(
            id=safe_id(rel_stem),
            source=self.kind,
            role="bg" if mode == "bg" else "fg",
            split=assign_split(group, **self.split_kw),
            image=path,
            width=int(w),
            height=int(h),
            sha256=content_hash(*blobs),
            group=group,
            alpha=alpha_path,
            extra=extra_json(mode=mode),
        )

    # -------------------------------------------------------------------- loading
    def load_foreground(self, item: Item) -> Foreground:
        """Pairs: image + alpha file; cut-outs: the RGBA image split into RGB and alpha."""
        from matdata import imageio

        if item.role != "fg":
            raise ItemError(item.id, "wrong_role", "a background item has no alpha")
        if item.alpha:
            data, mdata = read_checked(item, item.image, item.alpha)
            rgb = imageio.decode_image(data, item.image)
            alpha = imageio.decode_alpha(mdata, item.alpha)
            if alpha.shape != rgb.shape[:2]:
                raise ItemError(item.id, "size_mismatch", "alpha size differs from the image")
        else:
            (data,) = read_checked(item, item.image)
            rgb, alpha = imageio.decode_rgba(data, item.image)
        return Foreground(rgb=rgb, alpha=alpha, ignore=None, coarse=False)
