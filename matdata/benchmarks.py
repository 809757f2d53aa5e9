"""The published layouts of the standard matting benchmarks, read into evaluation items.

Pure file handling (no torch): :func:`scan_benchmark` / :func:`scan_folders` list and pair
the files of one benchmark; :func:`load_item` decodes and checks one item.  Nothing is
dropped silently: an image without a matte (or without its trimap, when the benchmark has
trimaps), a matte without an image, and later an unreadable file or a size mismatch
become a :class:`Skip` with a reason, reported in the results.

======  ========================  ===================  ===============  ===========
name    benchmark                 images               alphas           trimaps
======  ========================  ===================  ===============  ===========
p3m     P3M-500-P / P3M-500-NP    ``original_image/``  ``mask/``        ``trimap/``
ppm100  PPM-100                   ``image/``           ``matte/``       (none)
aim500  AIM-500                   ``original/``        ``mask/``        ``trimap/``
am2k    AM-2k validation          ``original/``        ``mask/``        ``trimap/``
comp1k  Composition-1k test       ``merged/``          ``alpha_copy/``  ``trimaps/``
======  ========================  ===================  ===============  ===========

A split of a built dataset (``matdata build --out DIR``) is an evaluation set too
(:func:`scan_dataset`): its coarse records (no matting ground truth) and the records that
do not decode are skipped with those reasons.  :func:`open_eval_set` opens any of the three
kinds; every set yields :class:`EvalSample` or :class:`Skip` from ``samples()``.

AM-2k's folders are under ``validation/``; its root may be the AM-2k folder or the
``validation`` folder itself.  Files are paired by file stem (``p_0a1b.jpg`` <->
``p_0a1b.png``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matdata.errors import ConfigError, ImageDecodeError, ItemError, SourceError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Layout:
    """Where one benchmark keeps its images, alpha mattes and trimaps (relative to root)."""

    name: str
    title: str
    images: str
    alphas: str
    trimaps: str | None
    subdir: str | None = None  # an optional level under the root (am2k: "validation")


LAYOUTS: dict[str, Layout] = {
    "p3m": Layout("p3m", "P3M-500-P / P3M-500-NP", "original_image", "mask", "trimap"),
    "ppm100": Layout("ppm100", "PPM-100", "image", "matte", None),
    "aim500": Layout("aim500", "AIM-500", "original", "mask", "trimap"),
    "am2k": Layout("am2k", "AM-2k validation", "original", "mask", "trimap", "validation"),
    "comp1k": Layout("comp1k", "Composition-1k test", "merged", "alpha_copy", "trimaps"),
}


@dataclass(frozen=True)
class BenchmarkItem:
    """One image to evaluate: its key (path relative to the image folder) and files."""

    key: str
    image: str
    alpha: str
    trimap: str | None = None


@dataclass(frozen=True)
class Skip:
    """An image (or matte) left out of the evaluation, and why."""

    key: str
    reason: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class EvalSample:
    """One decoded image to score: RGB (H,W,3) uint8, its alpha (H,W) uint8 and, when the
    set supplies trimaps, its trimap (H,W) uint8 (0/128/255)."""

    key: str
    rgb: np.ndarray
    alpha: np.ndarray
    trimap: np.ndarray | None = None


@dataclass
class BenchmarkSet:
    """The paired items of one benchmark (or of three folders) plus what could not pair."""

    name: str
    source: str
    items: list[BenchmarkItem]
    skipped: list[Skip] = field(default_factory=list)
    #: "supplied" (trimap files), or "none" (no trimaps: whole-image metrics only).
    trimaps: str = "none"

    def expected(self, limit: int = 0) -> int | None:
        """How many items :meth:`samples` goes through (scored or skipped)."""
        return min(len(self.items), limit) if limit > 0 else len(self.items)

    def samples(self, limit: int = 0) -> Iterator[EvalSample | Skip]:
        """The first ``limit`` items (0: all), decoded and checked (:func:`load_item`), or
        the :class:`Skip` of an item that fails."""
        for item in self.items[:limit] if limit > 0 else self.items:
            try:
                rgb, alpha, trimap = load_item(item)
            except (ItemError, ImageDecodeError) as exc:
                yield skip_from_error(item.key, exc)
                continue
            yield EvalSample(item.key, rgb, alpha, trimap)

    def require_items(self) -> None:
        """Raise a :class:`ConfigError` when nothing paired (before loading a model)."""
        if not self.items:
            raise ConfigError(
                f"nothing to evaluate in {self.source}",
                hint=f"{len(self.skipped)} files could not be paired",
            )


@dataclass
class DatasetSplit:
    """One split of a built dataset as an evaluation set (:func:`scan_dataset`).

    Its coarse records are skipped (reason ``coarse``: a coarse mask is no matting ground
    truth), and so are records whose image or alpha does not decode (``undecodable``).
    """

    data: str
    split: str
    fmt: str | None
    records: int  # records in the split, coarse ones included
    name: str = "dataset"
    skipped: list[Skip] = field(default_factory=list)
    trimaps: str = "none"  # no stored trimaps are used: evaluation generates them

    @property
    def source(self) -> str:
        return f"{self.data} [{self.split}]"

    def expected(self, limit: int = 0) -> int | None:
        """How many records :meth:`samples` goes through (unknown with a ``limit``: it
        counts scored images, and skipped records come on top)."""
        return self.records if limit <= 0 else None

    def samples(self, limit: int = 0) -> Iterator[EvalSample | Skip]:
        """Every record of the split, decoded, or its :class:`Skip`; stops after ``limit``
        decoded samples (0: no limit)."""
        from matdata.schema import decode_record, is_coarse
        from matdata.shards import iter_records

        n = 0
        for rec in iter_records(self.data, self.split, self.fmt):
            if limit > 0 and n >= limit:
                return
            if is_coarse(rec.meta):
                yield Skip(rec.key, "coarse", "a coarse mask is no matting ground truth")
                continue
            try:
                dec = decode_record(rec, ("image", "alpha"))
            except (ImageDecodeError, ValueError) as exc:
                yield Skip(rec.key, "undecodable", str(exc))
                continue
            (h, w), alpha = dec.image.shape[:2], dec.alpha
            if alpha.shape != (h, w):
                what = f"alpha is {alpha.shape[1]}x{alpha.shape[0]}, image is {w}x{h}"
                yield Skip(rec.key, "size_mismatch", what)
                continue
            n += 1
            yield EvalSample(rec.key, dec.image, dec.alpha)

    def require_items(self) -> None:
        """Raise a :class:`ConfigError` when the split has no record."""
        if not self.records:
            raise ConfigError(f"nothing to evaluate in {self.source}", hint="skipped: no samples")


def benchmark_names() -> tuple[str, ...]:
    return tuple(LAYOUTS)


def _list(folder: Path) -> dict[str, Path]:
    """``{stem: path}`` of the image files under ``folder`` (recursive, sorted); paths that
    resolve outside ``folder`` (symlinks) are ignored; two files with one stem are an error."""
    root = folder.resolve()
    out: dict[str, Path] = {}
    for f in sorted(folder.rglob("*")):
        if not f.is_file() or f.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if not f.resolve().is_relative_to(root):
            continue
        stem = f.relative_to(folder).with_suffix("").as_posix()
        if stem in out:
            raise SourceError(
                f"{out[stem]} and {f} share the name {stem!r}",
                hint="keep one file per image name in each folder",
            )
        out[stem] = f
    return out


def _folder(path: Path, what: str, layout: str) -> Path:
    if not path.is_dir():
        raise SourceError(f"{path} is not a folder ({what})", hint=f"expected layout: {layout}")
    return path


def _pair(
    name: str,
    source: str,
    images: Path,
    alphas: Path,
    trimaps: Path | None,
) -> BenchmarkSet:
    im, al = _list(images), _list(alphas)
    tr = _list(trimaps) if trimaps is not None else {}
    items: list[BenchmarkItem] = []
    skipped: list[Skip] = []
    for stem, path in im.items():
        key = path.relative_to(images).as_posix()
        if stem not in al:
            skipped.append(Skip(key, "no_alpha", f"no matte named {stem}.* in {alphas}"))
            continue
        if trimaps is not None and stem not in tr:
            skipped.append(Skip(key, "no_trimap", f"no trimap named {stem}.* in {trimaps}"))
            continue
        t = str(tr[stem]) if trimaps is not None else None
        items.append(BenchmarkItem(key, str(path), str(al[stem]), t))
    for stem in al.keys() - im.keys():
        key = al[stem].relative_to(alphas).as_posix()
        skipped.append(Skip(key, "no_image", f"matte without an image named {stem}.* in {images}"))
    if not im:
        raise SourceError(f"no image files in {images}", hint="check --root / --images")
    return BenchmarkSet(name, source, items, skipped, "supplied" if trimaps is not None else "none")


def scan_benchmark(name: str, root: str | Path) -> BenchmarkSet:
    """Pair the files of benchmark ``name`` under ``root`` (see the module doc)."""
    if name not in LAYOUTS:
        raise SourceError(f"unknown benchmark {name!r}", hint="one of " + ", ".join(LAYOUTS))
    lay = LAYOUTS[name]
    base = Path(root)
    if not base.is_dir():
        raise SourceError(f"{base} is not a folder", hint=f"pass the {lay.title} root folder")
    if lay.subdir and (base / lay.subdir).is_dir():
        base = base / lay.subdir
    sub = f"{lay.subdir}/" if lay.subdir else ""
    desc = f"{sub}{lay.images}/, {sub}{lay.alphas}/" + (
        f", {sub}{lay.trimaps}/" if lay.trimaps else ""
    )
    images = _folder(base / lay.images, "images", desc)
    alphas = _folder(base / lay.alphas, "alpha mattes", desc)
    trimaps = _folder(base / lay.trimaps, "trimaps", desc) if lay.trimaps else None
    return _pair(name, f"{lay.title} ({root})", images, alphas, trimaps)


def scan_folders(images: str | Path, alphas: str | Path, trimaps: str | Path | None = None):
    """Pair ``images`` with ``alphas`` (and ``trimaps``) by file stem."""
    layout = "--images DIR --alphas DIR [--trimaps DIR]"
    im = _folder(Path(images), "images", layout)
    al = _folder(Path(alphas), "alpha mattes", layout)
    tr = _folder(Path(trimaps), "trimaps", layout) if trimaps is not None else None
    source = f"{images} + {alphas}" + (f" + {trimaps}" if trimaps else "")
    return _pair("folders", source, im, al, tr)


def scan_dataset(data: str, split: str = "val", fmt: str | None = None) -> DatasetSplit:
    """The ``split`` of the built dataset ``data`` (``fmt``: parquet | webdataset, default
    the preferred one present).  A missing dataset or split is a MatdataError."""
    from matdata.shards import list_shards

    shards = list_shards(data, split, fmt)
    return DatasetSplit(data, split, fmt, sum(s.samples for s in shards))


EvalSet = BenchmarkSet | DatasetSplit


def open_eval_set(
    *,
    benchmark: str | None = None,
    root: str | Path | None = None,
    images: str | Path | None = None,
    alphas: str | Path | None = None,
    trimaps: str | Path | None = None,
    data: str | None = None,
    split: str = "val",
    fmt: str | None = None,
) -> EvalSet:
    """The evaluation set of ``benchmark`` under ``root``, of the ``images`` / ``alphas``
    (/ ``trimaps``) folders, or of a built dataset ``data`` (its ``split``); raises a
    :class:`ConfigError` when it holds nothing to evaluate."""
    if data is not None:
        eval_set: EvalSet = scan_dataset(data, split, fmt)
    elif benchmark is not None:
        if root is None:
            raise ConfigError(f"--benchmark {benchmark} needs --root DIR (the benchmark's folder)")
        eval_set = scan_benchmark(benchmark, root)
    elif images is not None and alphas is not None:
        eval_set = scan_folders(images, alphas, trimaps)
    else:
        raise ConfigError(
            "evaluate needs either --data DIR or --images I --alphas A, "
            "or --benchmark NAME --root DIR"
        )
    eval_set.require_items()
    return eval_set


def load_item(item: BenchmarkItem) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(rgb (H,W,3) uint8, alpha (H,W) uint8, trimap (H,W) uint8 or None)`` of one item.

    Raises :class:`~matdata.errors.ItemError` (``size_mismatch``, ``bad_trimap``) or
    :class:`~matdata.errors.ImageDecodeError`; callers record either as a :class:`Skip`.
    """
    from matdata.imageio import load_alpha, load_image
    from matdata.metrics import MetricInputError, unknown_mask

    rgb = load_image(item.image)
    alpha = load_alpha(item.alpha)
    h, w = rgb.shape[:2]
    if alpha.shape != (h, w):
        raise ItemError(
            item.key,
            "size_mismatch",
            f"matte is {alpha.shape[1]}x{alpha.shape[0]}, image is {w}x{h}",
        )
    trimap = None
    if item.trimap is not None:
        trimap = load_alpha(item.trimap)
        if trimap.shape != (h, w):
            raise ItemError(
                item.key,
                "size_mismatch",
                f"trimap is {trimap.shape[1]}x{trimap.shape[0]}, image is {w}x{h}",
            )
        try:
            unknown_mask(trimap)
        except MetricInputError as exc:
            raise ItemError(item.key, "bad_trimap", str(exc)) from None
    return rgb, alpha, trimap


def skip_from_error(key: str, exc: ItemError | ImageDecodeError) -> Skip:
    """The :class:`Skip` for a failed :func:`load_item`."""
    detail = getattr(exc, "detail", "") or str(exc)
    return Skip(key, exc.reason, detail)


def summary(skipped: list[Skip]) -> dict[str, Any]:
    """``{reason: count}`` of skipped items, sorted by reason."""
    counts: dict[str, int] = {}
    for s in skipped:
        counts[s.reason] = counts.get(s.reason, 0) + 1
    return dict(sorted(counts.items()))


__all__ = [
    "LAYOUTS",
    "BenchmarkItem",
    "BenchmarkSet",
    "DatasetSplit",
    "EvalSample",
    "EvalSet",
    "Layout",
    "Skip",
    "benchmark_names",
    "load_item",
    "open_eval_set",
    "scan_benchmark",
    "scan_dataset",
    "scan_folders",
    "skip_from_error",
    "summary",
]
