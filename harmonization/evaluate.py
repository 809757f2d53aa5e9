"""Evaluate a harmonizer on an iHarmony4-layout folder (MSE / fMSE / PSNR per subset).

Layout (as released by the DoveNet authors)::

    ROOT/HCOCO/HCOCO_test.txt          composite names, one per line: c1_1_1.jpg
    ROOT/HCOCO/composite_images/c1_1_1.jpg
    ROOT/HCOCO/masks/c1_1.png          name = composite name without its last _N
    ROOT/HCOCO/real_images/c1.jpg      name = composite name up to the first _
    ROOT/HAdobe5k/...  ROOT/HFlickr/...  ROOT/Hday2night/...

A subset is any sub-folder of ROOT with ``composite_images/`` and ``SUBSET_{split}.txt``
(ROOT itself may be one subset).  ``size`` resizes composite, mask and real image to
``size x size`` first (the papers' 256x256 protocol); default: native resolution.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from matdata.errors import ConfigError, ItemError, SourceError


@dataclass(frozen=True)
class Triple:
    subset: str
    name: str
    composite: Path
    mask: Path
    real: Path


def find_subsets(root: str | Path, split: str = "test") -> list[tuple[str, Path, Path]]:
    """``[(subset, subset_dir, list_file)]`` sorted by name; SourceError when none."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder", hint="pass the iHarmony4 root folder")
    found = []
    for d in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        lst = d / f"{d.name}_{split}.txt"
        if (d / "composite_images").is_dir() and lst.is_file():
            found.append((d.name, d, lst))
    if not found:
        raise SourceError(
            f"{root} holds no iHarmony4 subset (DIR/composite_images/ + DIR/DIR_{split}.txt)",
            hint="expected e.g. ROOT/HCOCO/HCOCO_test.txt",
        )
    return found


def iter_triples(root: str | Path, split: str = "test") -> Iterator[Triple]:
    """Every (composite, mask, real) listed in the subsets' ``*_{split}.txt`` files."""
    for subset, d, lst in find_subsets(root, split):
        for line in lst.read_text().splitlines():
            name = line.strip().split("/")[-1]
            if not name:
                continue
            stem = name.rsplit(".", 1)[0]
            parts = stem.split("_")
            if len(parts) < 3:
                raise SourceError(
                    f"{lst}: {name!r} is not a composite name like c1_1_1.jpg",
                    hint="the list files name composite images",
                )
            yield Triple(
                subset,
                stem,
                d / "composite_images" / name,
                d / "masks" / f"{'_'.join(parts[:-1])}.png",
                d / "real_images" / f"{parts[0]}.jpg",
            )


def load_triple(t: Triple, size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(composite uint8 (H,W,3), mask float 0..1 (H,W), real uint8 (H,W,3))``."""
    from matdata.imageio import load_alpha, load_image

    comp = load_image(str(t.composite))
    mask = load_alpha(str(t.mask))
    real = load_image(str(t.real))
    for what, arr in (("mask", mask), ("real image", real)):
        if arr.shape[:2] != comp.shape[:2]:
            raise ItemError(
                f"{t.subset}/{t.name}",
                "size_mismatch",
                f"{what} is {arr.shape[1]}x{arr.shape[0]} but the composite is "
                f"{comp.shape[1]}x{comp.shape[0]}",
            )
    if size:
        comp = cv2.resize(comp, (size, size), interpolation=cv2.INTER_AREA)
        real = cv2.resize(real, (size, size), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
    return comp, mask.astype(np.float32) / 255.0, real


def evaluate(
    root: str | Path,
    harmonizer: Any,
    *,
    split: str = "test",
    size: int | None = None,
    limit: int | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Per-subset and overall metrics of ``harmonizer`` (and of the raw composites).

    Returns ``{"subsets": {name: {images, mse, fmse, psnr}}, "all": {...},
    "composite": {"all": {...}}, "per_image": [...]}``; "all" averages over images.
    """
    from matdata.metrics_harmonization import aggregate, image_metrics

    if size is not None and size <= 0:
        raise ConfigError(f"--size must be positive, got {size}")
    triples = list(iter_triples(root, split))
    if limit:
        triples = triples[:limit]
    rows, base = [], []
    task = progress.add_task("evaluate", total=len(triples)) if progress is not None else None
    for t in triples:
        comp, mask, real = load_triple(t, size)
        pred = harmonizer(comp, mask)
        rows.append({"subset": t.subset, "name": t.name, **image_metrics(pred, real, mask)})
        base.append({"subset": t.subset, **image_metrics(comp, real, mask)})
        if progress is not None:
            progress.advance(task)
    subsets = sorted({r["subset"] for r in rows})
    return {
        "model": getattr(harmonizer, "name", "?"),
        "split": split,
        "size": size,
        "subsets": {s: aggregate(r for r in rows if r["subset"] == s) for s in subsets},
        "all": aggregate(rows),
        "composite": {
            "subsets": {s: aggregate(r for r in base if r["subset"] == s) for s in subsets},
            "all": aggregate(base),
        },
        "per_image": rows,
    }
