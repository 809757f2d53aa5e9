"""Evaluate a harmonizer on an iHarmony4-layout folder (MSE / fMSE / PSNR per subset).

Layout (as released by the DoveNet authors)::

    ROOT/HCOCO/HCOCO_test.txt          composite names, one per line: c1_1_1.jpg
    ROOT/HCOCO/composite_images/c1_1_1.jpg
    ROOT/HCOCO/masks/c1_1.png          name = composite name without its last _N
    ROOT/HCOCO/real_images/c1.jpg      name = composite name up to the first _
    ROOT/HAdobe5k/...  ROOT/HFlickr/...  ROOT/Hday2night/...

A subset is any sub-folder of ROOT with ``composite_images/`` and ``SUBSET_{split}.txt``
(ROOT itself may be one subset).

Two protocols (``protocol=``):

* ``iharm`` (default): the released iDIH / iSSAM evaluation (``scripts/evaluate_model.py``
  of SamsungLabs/image_harmonization with its default ``Fixed256``), which produced the
  iHarmony4 tables of those papers and of most later ones.  Composite and real image are
  resized to 256 x 256 with bilinear interpolation (uint8 in, uint8 out); the mask is
  read as 0..1 float and resized bilinearly too (a *soft* mask).  A network sees the
  256 x 256 composite and soft mask and its raw output (de-normalised, x255, clamped to
  0..255, not rounded, no paste-back) is scored; empty and full masks are run through the
  network like any other.  Metrics: :func:`matdata.metrics_harmonization.iharm_metrics`
  (fMSE weighted by the soft mask, PSNR with the real image's maximum as peak, both with
  the code's 1e-6 terms); per-subset and overall scores are means over images.
  Classical harmonizers (``none``, ``reinhard``) get the same 256 x 256 inputs.
* ``matdata``: native resolution (or ``size x size`` with area resizing and a nearest
  mask), the harmonizer as ``matdata harmonize`` runs it (paste-back, uint8), metrics of
  :func:`matdata.metrics_harmonization.image_metrics` (binary mask, peak 255).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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


IHARM_SIZE = 256
PROTOCOLS = ("iharm", "matdata")


def load_triple_iharm(
    t: Triple, size: int = IHARM_SIZE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(composite uint8, soft mask float32 0..1, real uint8)``, each bilinearly resized
    to ``size x size`` as the iDIH evaluation does."""
    comp, mask, real = load_triple(t, None)
    lin = cv2.INTER_LINEAR
    comp = cv2.resize(comp, (size, size), interpolation=lin)
    real = cv2.resize(real, (size, size), interpolation=lin)
    mask = cv2.resize(mask.astype(np.float32), (size, size), interpolation=lin)
    return comp, np.clip(mask, 0.0, 1.0), real


def predict_iharm(harmonizer: Any, comp: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The harmonized image as float 0..255 (H,W,3) under the iharm protocol.

    A network (:class:`~harmonization.harmonizers.NetworkHarmonizer`) runs on the inputs as
    given, in float32 (no autocast), and its clamped raw output is returned unrounded; any
    other harmonizer is called as usual (its uint8 output, as float).
    """
    from harmonization.harmonizers import NetworkHarmonizer

    if not isinstance(harmonizer, NetworkHarmonizer):
        return np.asarray(harmonizer(comp, mask), dtype=np.float64)
    import torch

    cfg = harmonizer.config
    h, w = comp.shape[:2]
    if h % cfg.multiple or w % cfg.multiple or min(h, w) < cfg.min_size:
        raise ConfigError(
            f"{cfg.name} cannot run at {w}x{h} (sides must be multiples of {cfg.multiple})"
        )
    x = torch.from_numpy(np.ascontiguousarray(comp)).permute(2, 0, 1)[None].float() / 255.0
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None]
    previous = harmonizer.autocast
    harmonizer.autocast = False  # the released evaluation runs in float32
    try:
        y = harmonizer._forward(x.to(harmonizer.device), m.to(harmonizer.device))
    finally:
        harmonizer.autocast = previous
    return y[0].permute(1, 2, 0).double().cpu().numpy() * 255.0


def check_protocol(protocol: str, size: int | None = None) -> None:
    """``protocol`` is one of :data:`PROTOCOLS`, and ``size`` (a resize before scoring)
    goes with the ``matdata`` protocol only; else a :class:`ConfigError`."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol must be iharm or matdata, got {protocol!r}")
    if protocol == "iharm" and size is not None:
        raise ConfigError(
            "--size applies to --protocol matdata (the iharm protocol is fixed at 256x256)"
        )
    if size is not None and size <= 0:
        raise ConfigError(f"--size must be positive, got {size}")


def evaluate(
    root: str | Path,
    harmonizer: Any,
    *,
    split: str = "test",
    size: int | None = None,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    protocol: str = "iharm",
) -> dict[str, Any]:
    """Per-subset and overall metrics of ``harmonizer`` (and of the raw composites);
    ``progress(done, total)`` after each image.

    Returns ``{"protocol", "subsets": {name: {images, mse, fmse, psnr}}, "all": {...},
    "composite": {"all": {...}}, "per_image": [...]}``; "all" averages over images.
    """
    from matdata.metrics_harmonization import aggregate, iharm_metrics, image_metrics

    check_protocol(protocol, size)
    triples = list(iter_triples(root, split))
    if limit:
        triples = triples[:limit]
    rows, base = [], []
    for t in triples:
        if protocol == "iharm":
            comp, mask, real = load_triple_iharm(t)
            pred = predict_iharm(harmonizer, comp, mask)
            metrics = iharm_metrics
        else:
            comp, mask, real = load_triple(t, size)
            pred = harmonizer(comp, mask)
            metrics = image_metrics
        rows.append({"subset": t.subset, "name": t.name, **metrics(pred, real, mask)})
        base.append({"subset": t.subset, **metrics(comp, real, mask)})
        if progress is not None:
            progress(len(rows), len(triples))
    subsets = sorted({r["subset"] for r in rows})
    return {
        "model": getattr(harmonizer, "name", "?"),
        "protocol": protocol,
        "split": split,
        "size": IHARM_SIZE if protocol == "iharm" else size,
        "subsets": {s: aggregate(r for r in rows if r["subset"] == s) for s in subsets},
        "all": aggregate(rows),
        "composite": {
            "subsets": {s: aggregate(r for r in base if r["subset"] == s) for s in subsets},
            "all": aggregate(base),
        },
        "per_image": rows,
    }
