"""The source catalog: names registered by ``matdata ingest`` and how ``--fg`` / ``--bg`` resolve.

The catalog is a directory holding ``catalog.json``: ``$MATDATA_CATALOG`` when set, else
the nearest ``.matdata/`` in the current directory or one of its parents (as git finds
``.git``), else ``./.matdata`` (where ``matdata ingest`` then creates it)::

    {"aisegment": {"kind": "aisegment", "root": "/data/AISegment", "options": {},
                   "manifest": ".../aisegment.manifest.parquet",
                   "rejects": ".../aisegment.rejects.parquet",
                   "counts": {"found": 34427, "usable": 34425, ...},
                   "manifest_sha256": "..."}}

A source *spec* (what ``--fg`` / ``--bg`` take) is, in this order of precedence:

1. a NAME registered in the catalog;
2. ``demo`` - the embedded demo source, scanned on the fly (nothing to ingest);
3. ``KIND:PATH`` with KIND a registered source kind - the tree is scanned now;
4. a path or URL of a manifest ``.parquet`` written by ``matdata ingest``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

try:  # POSIX; elsewhere catalog updates are not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from matdata.errors import SourceError
from matdata.rejects import Reject
from matdata.sources.base import REGISTRY, Item, Source, items_hash, make_source, read_manifest

#: Environment variable overriding the catalog directory.
CATALOG_ENV = "MATDATA_CATALOG"

#: File name of the catalog index inside the catalog directory.
CATALOG_FILE = "catalog.json"

ROLES = ("fg", "bg")


#: Name of the catalog directory looked for in the current directory and its parents.
CATALOG_DIRNAME = ".matdata"


def catalog_dir() -> str:
    """The catalog directory (absolute): ``$MATDATA_CATALOG``, else the nearest
    ``.matdata/`` holding a catalog in the current directory or a parent, else
    ``./.matdata``."""
    env = os.environ.get(CATALOG_ENV)
    if env:
        return env if "://" in env else os.path.abspath(env)
    here = os.path.abspath(os.getcwd())
    while True:
        candidate = os.path.join(here, CATALOG_DIRNAME)
        if os.path.isfile(os.path.join(candidate, CATALOG_FILE)):
            return candidate
        parent = os.path.dirname(here)
        if parent == here:
            return os.path.abspath(CATALOG_DIRNAME)
        here = parent


def _catalog_path() -> str:
    from matdata.storage import join

    return join(catalog_dir(), CATALOG_FILE)


def load_catalog() -> dict[str, dict[str, Any]]:
    """``{name: entry}``; an empty dict when no catalog exists yet."""
    from matdata.storage import exists, open_input

    path = _catalog_path()
    if not exists(path):
        return {}
    try:
        with open_input(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise SourceError(
            f"source catalog {path} is unreadable: {exc}",
            hint=f"delete it and re-run `matdata ingest`, or point ${CATALOG_ENV} elsewhere",
        ) from exc
    if not isinstance(data, dict):
        raise SourceError(f"source catalog {path} is not a JSON object")
    return data


@contextmanager
def _catalog_lock() -> Iterator[None]:
    """Serialise catalog updates of concurrent ingests (an exclusive ``flock`` on a local
    ``catalog.json.lock``; remote catalogs have no lock: ingest into them one at a time)."""
    path = _catalog_path()
    if "://" in path or fcntl is None:
        yield
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def register(name: str, entry: dict[str, Any]) -> None:
    """Add or replace ``name`` in the catalog (atomic rewrite of ``catalog.json``, under a
    lock so that concurrent ingests do not lose each other's entries)."""
    from matdata.storage import atomic_write_text

    with _catalog_lock():
        data = load_catalog()
        data[name] = entry
        atomic_write_text(_catalog_path(), json.dumps(data, indent=2, sort_keys=True) + "\n")


def lookup(name: str) -> dict[str, Any] | None:
    return load_catalog().get(name)


def rejects_path_for(manifest: str) -> str:
    """The rejects file ``matdata ingest`` writes beside a manifest."""
    suffix = ".manifest.parquet"
    if manifest.endswith(suffix):
        return manifest[: -len(suffix)] + ".rejects.parquet"
    return manifest.rsplit(".", 1)[0] + ".rejects.parquet"


@dataclass
class ResolvedSource:
    """A source spec turned into its items (of one role) and the rejects found with them."""

    name: str
    kind: str
    root: str
    options: dict[str, Any]
    items: list[Item]
    rejects: list[Reject] = field(default_factory=list)
    manifest: str | None = None  # manifest path, None when scanned on the fly
    manifest_sha256: str = ""  # content hash of ``items``

    def source(self) -> Source:
        """The source object that loads these items' pixels."""
        return make_source(self.kind, self.root, **self.options)


def _split_kind(spec: str) -> tuple[str, str] | None:
    kind, sep, path = spec.partition(":")
    if sep and kind in REGISTRY and not path.startswith("//"):
        return kind, path
    return None


def _for_role(
    name: str,
    kind: str,
    root: str,
    options: dict[str, Any],
    items: list[Item],
    rejects: list[Reject],
    manifest: str | None,
    role: str,
) -> ResolvedSource:
    chosen = [it for it in items if it.role == role]
    if not chosen:
        roles = sorted({it.role for it in items})
        have = (
            f"it has {len(items)} items of role(s) {', '.join(roles)}"
            if items
            else "it has no usable items"
        )
        raise SourceError(
            f"source {name!r} has no {role} items ({have})",
            hint="check the source's role options or its rejects (`matdata ingest` summary)",
        )
    return ResolvedSource(
        name=name,
        kind=kind,
        root=root,
        options=options,
        items=chosen,
        rejects=rejects,
        manifest=manifest,
        manifest_sha256=items_hash(chosen),
    )


def confine_items(res: ResolvedSource) -> ResolvedSource:
    """Refuse a manifest whose items escape their source (see :func:`check_manifest_item`)."""
    where = f"manifest {res.manifest or res.name}"
    for it in res.items:
        check_manifest_item(where, res.root or "", it.id, it.split, it.role, (it.image, it.alpha))
    return res


def check_manifest_item(
    where: str, root: str, item_id: object, split: object, role: object, paths: tuple
) -> None:
    """Raise :class:`SourceError` for an item that escapes its source: every split must be
    a valid split name, every role fg/bg, every id an id, and every image/matte path must
    lie inside the source root (lexically: symbolic links inside a user's dataset are the
    user's choice).  Demo items (no root) must be ``demo://`` names."""
    from matdata.paths import check_split, is_safe_relative
    from matdata.sources.base import ID_RE

    here = f"{where}: item {str(item_id)[:60]!r}"
    check_split(split, here, SourceError)
    if role not in ROLES or not isinstance(item_id, str) or not ID_RE.match(item_id):
        raise SourceError(f"{here}: malformed item (role {str(role)[:20]!r})",
                          hint="re-run `matdata ingest` to rewrite the manifest")  # fmt: skip
    prefix = root if root.endswith("/") else root + "/"
    for path in paths:
        if path is None:
            continue
        if not root:
            ok = isinstance(path, str) and path.startswith("demo://") and ".." not in path
        else:
            ok = (
                isinstance(path, str)
                and path.startswith(prefix)
                and is_safe_relative(path[len(prefix) :])
            )
        if not ok:
            raise SourceError(
                f"{here}: path {str(path)[:120]!r} is outside the source root {root!r}",
                hint="re-run `matdata ingest` to rewrite the manifest",
            )


def _from_manifest(name: str, manifest: str, role: str, rejects_file: str | None) -> ResolvedSource:
    from matdata.rejects import read_rejects
    from matdata.storage import exists

    items, meta = read_manifest(manifest)
    rejects: list[Reject] = []
    rpath = rejects_file or rejects_path_for(manifest)
    if rpath and exists(rpath):
        rejects = read_rejects(rpath)
    return _for_role(
        name,
        str(meta.get("kind", items[0].source if items else "")),
        str(meta.get("root", "")),
        dict(meta.get("options") or {}),
        items,
        rejects,
        manifest,
        role,
    )


def scan_source(
    kind: str, root: str, options: dict[str, Any] | None = None
) -> tuple[list[Item], list[Reject]]:
    """Scan a source into memory (for small sources and on-the-fly specs)."""
    src = make_source(kind, root, **(options or {}))
    items: list[Item] = []
    rejects: list[Reject] = []
    for x in src.scan():
        (items if isinstance(x, Item) else rejects).append(x)
    return items, rejects


def resolve_source(spec: str, role: str, options: dict[str, Any] | None = None) -> ResolvedSource:
    """Resolve ``spec`` (see the module docstring) to its ``role`` items.

    ``options`` are passed to the source for on-the-fly scans (``demo``, ``KIND:PATH``).
    Raises :class:`SourceError` with a hint for unknown names and empty results.
    """
    if role not in ROLES:
        raise SourceError(f"unknown role {role!r}", hint="use fg or bg")
    if not spec:
        raise SourceError(
            "empty source spec", hint="give a catalog name, demo, KIND:PATH or a manifest"
        )
    entry = lookup(spec)
    if entry is not None:
        if not isinstance(entry, dict):
            raise SourceError(f"catalog entry {spec!r} is not a JSON object",
                              hint="re-run `matdata ingest` to register it again")  # fmt: skip
        manifest = entry.get("manifest")
        if not manifest:
            raise SourceError(
                f"catalog entry {spec!r} has no manifest", hint="re-run `matdata ingest`"
            )
        bad = [k for k in ("manifest", "rejects", "kind", "root") if k in entry
               and entry[k] is not None and not isinstance(entry[k], str)]  # fmt: skip
        if bad or not isinstance(manifest, str) or not isinstance(entry.get("options", {}), dict):
            raise SourceError(
                f"catalog entry {spec!r} is malformed ({', '.join(bad) or 'options'})",
                hint="re-run `matdata ingest` to register it again",
            )
        res = _from_manifest(spec, manifest, role, entry.get("rejects"))
        res.kind = entry.get("kind", res.kind)
        res.root = entry.get("root", res.root)
        res.options = dict(entry.get("options") or res.options)
        return confine_items(res)
    opts = dict(options or {})
    if spec == "demo":
        items, rejects = scan_source("demo", "", opts)
        return _for_role("demo", "demo", "", opts, items, rejects, None, role)
    kp = _split_kind(spec)
    if kp is not None:
        kind, path = kp
        if not path:
            raise SourceError(f"source spec {spec!r} has no PATH", hint=f"use {kind}:/path/to/data")
        if kind == "folder":
            opts.setdefault("role", role)
        root = path if "://" in path else os.path.abspath(path)
        items, rejects = scan_source(kind, root, opts)
        return _for_role(spec, kind, root, opts, items, rejects, None, role)
    if spec.endswith(".parquet"):
        return confine_items(_from_manifest(spec, spec, role, None))
    names = sorted(load_catalog())
    known = f"registered: {', '.join(names)}" if names else "the catalog is empty"
    raise SourceError(
        f"unknown source {spec!r} ({known}; catalog {catalog_dir()})",
        hint=f"run `matdata ingest KIND ROOT --name {spec}` first (the catalog is the nearest "
        f".matdata/ here or above, or ${CATALOG_ENV}), or use demo, KIND:PATH or a manifest "
        f".parquet (kinds: {', '.join(sorted(REGISTRY))})",
    )
