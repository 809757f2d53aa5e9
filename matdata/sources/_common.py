"""Helpers shared by the file-tree sources: listing over fsspec, validation, options.

Private to :mod:`matdata.sources`; the public contracts live in :mod:`matdata.sources.base`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from matdata.errors import ConfigError, ImageDecodeError, SourceError

T = TypeVar("T")
R = TypeVar("R")

#: File extensions treated as images by the file-tree sources.
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")

#: Extensions of mattes / masks.
MATTE_EXTS = (".png", ".webp", ".jpg", ".jpeg")

#: How a scan validates an image: ``decode`` (full decode, catches truncation) or
#: ``probe`` (header only + size checks, much faster on huge sources).
VERIFY_MODES = ("decode", "probe")


def list_files(root: str) -> list[str]:
    """Every file under ``root`` (local path or fsspec URL), sorted, as readable paths/URLs.

    Raises :class:`SourceError` when ``root`` does not exist or is not a directory.
    """
    from matdata.storage import get_fs

    try:
        fs, p = get_fs(root)
        is_dir = fs.isdir(p)
    except (OSError, ValueError, ImportError) as exc:
        raise SourceError(f"cannot open source root {root}: {exc}") from exc
    if not is_dir:
        what = "is not a directory" if fs.exists(p) else "does not exist"
        raise SourceError(f"source root {root} {what}", hint="check the ROOT path")
    found = sorted(fs.find(p))
    if "://" not in root:
        return found
    return [fs.unstrip_protocol(f) for f in found]


def iter_files(root: str) -> Iterator[str]:
    """Like :func:`list_files`, but streamed: a sorted depth-first walk that holds one
    directory listing per level (flat memory for sources with millions of files)."""
    from matdata.storage import get_fs

    try:
        fs, p = get_fs(root)
        is_dir = fs.isdir(p)
    except (OSError, ValueError, ImportError) as exc:
        raise SourceError(f"cannot open source root {root}: {exc}") from exc
    if not is_dir:
        what = "is not a directory" if fs.exists(p) else "does not exist"
        raise SourceError(f"source root {root} {what}", hint="check the ROOT path")
    url = "://" in root

    def walk(path: str) -> Iterator[str]:
        entries = sorted(fs.ls(path, detail=True), key=lambda e: e["name"])
        for e in entries:
            name = e["name"].rstrip("/")
            if name == path.rstrip("/"):
                continue  # some filesystems list the directory itself
            if e.get("type") == "directory":
                yield from walk(name)
            else:
                yield fs.unstrip_protocol(name) if url else name

    yield from walk(p)


def rel_parts(root: str, path: str) -> list[str]:
    """Components of ``path`` below ``root`` (both as produced by :func:`list_files`)."""
    base = root.rstrip("/") or "/"
    if "://" in root:
        # list_files may normalise the URL (memory://x -> memory:///x); compare paths only.
        base = base.split("://", 1)[1].lstrip("/")
        path = path.split("://", 1)[1].lstrip("/")
    else:
        # fsspec lists local files with absolute paths; a relative root must match them.
        base = os.path.abspath(base).replace("\\", "/")
        path = os.path.abspath(path).replace("\\", "/")
    rest = path[len(base) :] if path.startswith(base) else path
    return [p for p in rest.replace("\\", "/").split("/") if p]


def basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def stem_ext(name: str) -> tuple[str, str]:
    """``("a.b", ".png")`` for ``"a.b.PNG"`` (extension lower-cased)."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        return name, ""
    return stem, "." + ext.lower()


def is_resource_fork(name: str) -> bool:
    """macOS AppleDouble files (``._photo.jpg``) that zip archives made on a Mac carry."""
    return name.startswith("._")


def validate_image(
    data: bytes, name: str, verify: str = "decode", *, min_side: int | None = None
) -> tuple[int, int]:
    """``(width, height)`` of an image after EXIF orientation, or :class:`ImageDecodeError`.

    ``decode`` decodes the pixels (catches truncation); ``probe`` reads only the header
    but applies the same size limits as a decode.
    """
    from matdata import imageio

    kw: dict[str, Any] = {} if min_side is None else {"min_side": min_side}
    if verify == "decode":
        arr = imageio.decode_image(data, name, **kw)
        return int(arr.shape[1]), int(arr.shape[0])
    w, h, fmt = imageio.probe(data, name)
    if fmt not in imageio.FORMATS:
        raise ImageDecodeError(name, "unsupported_format", fmt)
    side = imageio.MIN_SIDE if min_side is None else min_side
    imageio.check_size(w, h, name, min_side=side)
    return w, h


def default_workers() -> int:
    """Threads a scan validates with by default: image decoding releases the GIL."""
    return max(1, min(8, os.cpu_count() or 1))


def ordered_map(
    fn: Callable[[T], R], inputs: Iterable[T], workers: int, window: int | None = None
) -> Iterator[R]:
    """``map(fn, inputs)`` on a thread pool, results in input order, at most ``window``
    calls in flight (so memory stays bounded for any number of inputs)."""
    if workers <= 1:
        yield from map(fn, inputs)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    window = window or workers * 4
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="matdata-scan") as pool:
        for x in inputs:
            pending.append(pool.submit(fn, x))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def content_hash(*blobs: bytes) -> str:
    """sha256 of one byte string (plain, as ``sha256sum`` gives), or over the sha256s of
    several (image, then matte / annotation)."""
    if len(blobs) == 1:
        return hashlib.sha256(blobs[0]).hexdigest()
    h = hashlib.sha256()
    for b in blobs:
        h.update(hashlib.sha256(b).digest())
    return h.hexdigest()


def read_checked(
    item: Any, *paths: str, max_bytes: tuple[int | None, ...] | None = None
) -> list[bytes]:
    """The bytes of ``paths`` (an item's image, then its matte / annotation), checked
    against the item's ``sha256`` from ingest: an input edited or replaced since then is
    a ``changed_since_ingest`` :class:`ItemError` (its item is rejected, not built).
    ``max_bytes``: a size limit per path (None: none)."""
    from matdata import imageio
    from matdata.errors import ItemError

    limits = max_bytes or (None,) * len(paths)
    blobs = [imageio.read_bytes(p, m) for p, m in zip(paths, limits, strict=True)]
    if item.sha256 and content_hash(*blobs) != item.sha256:
        raise ItemError(
            item.id,
            "changed_since_ingest",
            "the input's bytes differ from the manifest's sha256 (re-run ingest)",
        )
    return blobs


# ------------------------------------------------------------------------------ options


def opt_float(options: dict[str, Any], key: str, default: float) -> float:
    value = options.get(key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"option {key}={value!r} is not a number") from None


def opt_fraction(options: dict[str, Any], key: str, default: float) -> float:
    """A share in [0, 1] (a split fraction)."""
    value = opt_float(options, key, default)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"option {key}={value:g} is out of range: a fraction in [0, 1]")
    return value


def opt_choice(options: dict[str, Any], key: str, default: str, choices: Iterable[str]) -> str:
    value = str(options.get(key, default))
    allowed = tuple(choices)
    if value not in allowed:
        raise ConfigError(f"option {key}={value!r} must be one of {', '.join(allowed)}")
    return value


def opt_list(options: dict[str, Any], key: str) -> list[str]:
    """A list option given as a list or a comma-separated string; [] when absent."""
    value = options.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def opt_workers(options: dict[str, Any]) -> int:
    value = options.get("workers")
    if value in (None, "", 0, "0", "auto"):
        return default_workers()
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"option workers={value!r} is not an integer") from None
    return max(1, n)


def split_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """The ``assign_split`` keyword arguments a source's options may override."""
    val = opt_fraction(options, "val_fraction", 0.05)
    test = opt_fraction(options, "test_fraction", 0.0)
    if val + test > 1.0:
        raise ConfigError(
            f"options val_fraction={val:g} and test_fraction={test:g} add up to more than 1"
        )
    return {"val_fraction": val, "test_fraction": test, "salt": str(options.get("salt", ""))}


def extra_json(**fields: Any) -> str:
    return json.dumps({k: v for k, v in fields.items() if v is not None}, sort_keys=True)
