"""``matdata ingest``: scan a source once into a streamed Parquet manifest plus a rejects file.

The scan is streamed: items go to :class:`~matdata.sources.base.ManifestWriter` in
batches, so memory stays flat however many items a source has: the ids, for the
uniqueness check, go to an on-disk set (:class:`matdata.scratch.DiskSet`); only the
rejects are kept in memory.  The result is registered in the source
catalog (:mod:`matdata.catalog`) under a name, so later commands refer to it by name.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from matdata.errors import ConfigError, SourceError
from matdata.rejects import Reject, write_rejects
from matdata.sources.base import Item, ManifestWriter, is_utf8, make_source, printable, safe_id

#: Progress callback of :func:`ingest`: ``(inputs examined so far, total or None)``.
IngestProgress = Callable[[int, "int | None"], None]

#: The layout each kind expects, for the hint of an ingest that finds (almost) nothing.
LAYOUT_HINTS = {
    "aisegment": "ROOT/clip_img/<group>/clip_N/*.jpg with ROOT/matting/<group>/matting_N/*.png",
    "supervisely": "ROOT/<dataset>/img/<image> with ROOT/<dataset>/ann/<image>.json",
    "places365": "a Places365 layout such as ROOT/data_256/<letter>/<category>/*.jpg or "
    "ROOT/val_256/*.jpg",
    "folder": "ROOT/images/** with ROOT/alphas/** of the same stems, RGBA cut-outs, or "
    "-o role=bg for backgrounds",
}

#: Reject reasons that mean "this file does not belong to this kind's layout".
LAYOUT_REASONS = ("unexpected_file",)

#: Share of found files with a :data:`LAYOUT_REASONS` reject above which an ingest fails.
MAX_UNEXPECTED_SHARE = 0.5


@dataclass
class IngestResult:
    """What one ingest produced: paths, counts and the manifest content hash."""

    name: str
    kind: str
    root: str
    options: dict[str, Any]
    manifest: str
    rejects_path: str
    found: int
    usable: int
    rejected: int
    by_reason: dict[str, int] = field(default_factory=dict)
    by_split: dict[str, int] = field(default_factory=dict)
    by_role: dict[str, int] = field(default_factory=dict)
    filtered: int = 0
    filtered_by_reason: dict[str, int] = field(default_factory=dict)
    manifest_sha256: str = ""
    warnings: list[str] = field(default_factory=list)  # e.g. an empty or tiny val split

    def counts(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "usable": self.usable,
            "rejected": self.rejected,
            "by_reason": self.by_reason,
            "by_split": self.by_split,
            "by_role": self.by_role,
            "filtered": self.filtered,
            "filtered_by_reason": self.filtered_by_reason,
        }


def _norm_root(root: str) -> str:
    if "://" in root:
        return root
    return os.path.abspath(os.path.expanduser(root))


def ingest(
    kind: str,
    root: str,
    *,
    name: str | None = None,
    out: str | None = None,
    options: dict[str, Any] | None = None,
    progress: IngestProgress | None = None,
    register: bool = True,
    allow_empty: bool = False,
) -> IngestResult:
    """Scan ``kind`` at ``root``, write ``NAME.manifest.parquet`` + ``NAME.rejects.parquet``.

    Files go to ``out`` (default: the catalog directory); the result is registered in the
    catalog under ``name`` (default: ``kind``).  Raises :class:`ConfigError` when ``root``
    is empty (every kind but ``demo`` needs one) and :class:`SourceError` when the root
    is missing; per-input problems become rejects.  An item id seen twice is a source bug
    and is recorded as a ``duplicate_id`` reject rather than written twice.

    An ingest with no usable item, or where most files do not fit the kind's layout, is
    a wrong ROOT or KIND: it raises :class:`SourceError` with the expected layout and
    registers nothing (the manifest and rejects are still written, to look at), unless
    ``allow_empty``.
    """
    name = name or kind
    if safe_id(name) != name:
        raise ConfigError(f"name {name!r} may only use letters, digits, '-' and '_'")
    require_root(kind, root)
    options = dict(options or {})
    root = _norm_root(root) if kind != "demo" or root else root
    src = make_source(kind, root, **options)  # unknown kind -> SourceError with the list
    check_root(kind, root)
    manifest_path, rejects_path = _output_paths(out, name)

    meta = {"kind": kind, "root": root, "options": options, "name": name}
    writer = ManifestWriter(manifest_path, meta=json.loads(json.dumps(meta, default=str)))
    rejects, by_split, by_role = _scan_into(src, kind, writer, progress)
    writer.close()
    write_rejects(rejects_path, rejects)

    res = IngestResult(
        name=name,
        kind=kind,
        root=root,
        options=options,
        manifest=manifest_path,
        rejects_path=rejects_path,
        found=writer.count + len(rejects),
        usable=writer.count,
        rejected=len(rejects),
        by_reason=dict(sorted(Counter(r.reason for r in rejects).items())),
        by_split=dict(sorted(by_split.items())),
        by_role=dict(sorted(by_role.items())),
        filtered=int(getattr(src, "filtered", 0) or 0),
        filtered_by_reason=dict(sorted((getattr(src, "filtered_reasons", None) or {}).items())),
        manifest_sha256=writer.content_hash,
    )
    from matdata.planning import split_warnings

    if len(by_role) == 1:  # (splits are not counted per role for two-role sources)
        res.warnings += split_warnings(name, dict(by_split), src.split_hint)
    if not allow_empty:
        check_usable(res)
    if register:
        _register(res)
    return res


def _output_paths(out: str | None, name: str) -> tuple[str, str]:
    """``(manifest, rejects)`` paths of ingest ``name`` in ``out`` (default: the catalog
    directory)."""
    from matdata import catalog
    from matdata.storage import join

    out_dir = out if out else catalog.catalog_dir()
    if "://" not in out_dir:
        out_dir = os.path.abspath(out_dir)
    return join(out_dir, f"{name}.manifest.parquet"), join(out_dir, f"{name}.rejects.parquet")


def _scan_into(
    src: Any, kind: str, writer: ManifestWriter, progress: IngestProgress | None
) -> tuple[list[Reject], Counter[str], Counter[str]]:
    """Stream ``src``'s scan into ``writer``: ``(rejects, items by split, items by role)``.

    An item a UTF-8 manifest cannot hold, or whose id was seen before, becomes a reject;
    on any error the writer is aborted (nothing half-written is left)."""
    from matdata.scratch import DiskSet

    rejects: list[Reject] = []
    ids = DiskSet()  # on disk: no per-item object is held for the whole scan
    by_split: Counter[str] = Counter()
    by_role: Counter[str] = Counter()
    done = 0

    def _advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, getattr(src, "total", None))

    try:
        for x in src.scan(_advance):
            if isinstance(x, Item):
                bad = _not_utf8(x)
                if bad is not None:
                    rejects.append(bad)
                    continue
                if not ids.add(x.id):
                    rejects.append(Reject(kind, x.image, "duplicate_id", f"id {x.id} seen before"))
                    continue
                writer.write(x)
                by_split[x.split] += 1
                by_role[x.role] += 1
            else:
                rejects.append(_printable_reject(x))
    except BaseException:
        writer.abort()
        raise
    finally:
        ids.close()
    return rejects, by_split, by_role


def _register(res: IngestResult) -> None:
    """Enter ``res`` in the source catalog under its name."""
    from matdata import catalog

    catalog.register(
        res.name,
        {
            "kind": res.kind,
            "root": res.root,
            "options": res.options,
            "manifest": res.manifest,
            "rejects": res.rejects_path,
            "counts": res.counts(),
            "manifest_sha256": res.manifest_sha256,
        },
    )


def _not_utf8(item: Item) -> Reject | None:
    """A reject for an item that a UTF-8 manifest cannot hold (a file name that is not
    UTF-8, text with lone surrogates from an annotation), else None."""
    for name in ("image", "alpha"):
        path = getattr(item, name)
        if path is not None and not is_utf8(path):
            return Reject(
                item.source, printable(item.image), "bad_file_name", f"{name} path is not UTF-8"
            )
    texts = {"id": item.id, "group": item.group, "category": item.category or ""}
    texts.update({f"tag {t!r}": t for t in item.tags})
    for name, text in texts.items():
        if not is_utf8(text):
            return Reject(item.source, item.image, "not_utf8", f"{printable(name)} is not UTF-8")
    return None


def _printable_reject(rej: Reject) -> Reject:
    """``rej`` with its path and detail storable as UTF-8."""
    if is_utf8(rej.path) and is_utf8(rej.detail):
        return rej
    return Reject(rej.source, printable(rej.path), rej.reason, printable(rej.detail), rej.stage)


def check_usable(res: IngestResult) -> None:
    """Raise :class:`SourceError` when ``res`` has no usable item or mostly files that do
    not belong to the kind's layout (see :func:`ingest`)."""
    unexpected = sum(n for r, n in res.by_reason.items() if r in LAYOUT_REASONS)
    mostly = res.found > 0 and unexpected > MAX_UNEXPECTED_SHARE * res.found
    if res.usable and not mostly:
        return
    reasons = ", ".join(f"{n} {r}" for r, n in sorted(res.by_reason.items(), key=lambda x: -x[1]))
    if res.usable:
        what = f"{unexpected} of {res.found} files do not fit the {res.kind} layout"
    else:
        what = f"no usable item among {res.found} files" + (f" ({reasons})" if reasons else "")
    layout = LAYOUT_HINTS.get(res.kind)
    hint = f"expected {layout}; " if layout else ""
    raise SourceError(
        f"ingest {res.kind} {res.root}: {what}; nothing was registered",
        hint=f"{hint}check ROOT and KIND, see {res.rejects_path}, or pass --allow-empty",
    )


def require_root(kind: str, root: str) -> None:
    """Refuse an empty ``root`` for every kind but ``demo`` (it would scan the current
    directory) with a :class:`ConfigError`."""
    if kind != "demo" and not root.strip():
        raise ConfigError(f"ingest {kind} needs a ROOT path")


def check_root(kind: str, root: str) -> None:
    """Fail early, with one clear line, when a file-tree source's root is missing."""
    if kind == "demo":
        return
    from matdata.storage import exists

    if not exists(root):
        raise SourceError(f"source root {root} does not exist", hint="check the ROOT path")
