"""Confinement of paths built from data read off disk (one helper, used everywhere).

Anything matdata reads from a file it did not just write (``dataset.json``, manifests,
completion markers, reject tables, the catalog) is untrusted.  A split name from such a
file becomes part of file names, so it must match :data:`SPLIT_PATTERN`; a relative path
from such a file is joined to a root only through :func:`confine`, which refuses absolute
paths, URLs, ``..`` components and (on the local file system) symbolic links that lead
outside the root.
"""

from __future__ import annotations

import os
import posixpath
import re

from matdata.errors import DatasetError, MatdataError

#: What a split name may look like (it becomes part of shard and marker file names).
SPLIT_PATTERN = r"[a-z0-9_-]+"
_SPLIT_RE = re.compile(SPLIT_PATTERN)
#: Longest split name accepted (file names stay well under 255 bytes).
MAX_SPLIT_LEN = 64


def check_split(split: object, where: str, error: type[MatdataError] = DatasetError) -> str:
    """``split`` if it is a valid split name, else ``error`` naming ``where`` it came from."""
    if (
        not isinstance(split, str)
        or len(split) > MAX_SPLIT_LEN
        or _SPLIT_RE.fullmatch(split) is None
    ):
        shown = repr(split)[:80]
        raise error(
            f"{where}: split {shown} is not a valid split name",
            hint=f"split names match {SPLIT_PATTERN} (at most {MAX_SPLIT_LEN} characters)",
        )
    return split


def is_safe_relative(rel: object) -> bool:
    """True for a non-empty relative ``/``-separated path with no ``..``, ``.`` or empty
    component, no backslash, no NUL and no scheme/drive (lexical check only)."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
        return False
    if rel.startswith("/") or "://" in rel or re.match(r"^[A-Za-z]:", rel):
        return False
    parts = rel.split("/")
    return all(p not in ("", ".", "..") for p in parts)


def confine(root: str, rel: object, where: str) -> str:
    """``root`` joined with the untrusted relative path ``rel``, refusing any escape.

    Refused (:class:`DatasetError` naming ``where``): absolute paths, URLs, drive letters,
    ``..``/``.``/empty components, backslashes, and on the local file system a path whose
    real location (symbolic links resolved) is outside the real ``root``.
    """
    from matdata.storage import join

    if not is_safe_relative(rel):
        raise DatasetError(
            f"{where}: path {repr(rel)[:120]} leaves its directory",
            hint="paths read from matdata files must be relative and stay inside it",
        )
    assert isinstance(rel, str)
    full = join(root, rel)
    if "://" not in root or root.startswith("file://"):
        local_root = root[len("file://") :] if root.startswith("file://") else root
        real_root = os.path.realpath(local_root)
        real = os.path.realpath(os.path.join(local_root, rel))
        if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
            raise DatasetError(
                f"{where}: path {rel!r} resolves outside {local_root}",
                hint="remove the symbolic link, or copy the file into the directory",
            )
    elif posixpath.normpath(rel).startswith(".."):  # pragma: no cover - caught above
        raise DatasetError(f"{where}: path {rel!r} leaves its directory")
    return full
