"""Evaluate a MODNet checkpoint on a benchmark (:mod:`matdata.benchmarks`) as papers do.

Inference protocol (the official MODNet demo's; :mod:`modnet.inference`): the RGB image is
scaled to [-1, 1]; when its long side is under 512 or its short side over 512 it is
resized so that the short side is 512 (the other ``int(long / short * 512)``), else kept;
both sides are then floored to multiples of 32; resizing is ``area`` interpolation, the
model runs with ``inference=True`` and the matte is resized back with ``area``.  The
float matte (not rounded to 8 bits) is scored against the ground truth.

Metrics (:mod:`matdata.metrics`, in the chosen convention): SAD, MSE, MAD, Grad, Conn over
the unknown region of the benchmark's own trimaps (``trimap == 128``) and over the whole
image; benchmarks without trimaps (PPM-100) report whole-image metrics only.  Folders
without trimaps use a trimap generated from the ground truth
(:func:`matdata.trimap.make_trimap`, default parameters), as ``evaluate --data`` does.
Dataset scores are means over images.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matdata.benchmarks import BenchmarkSet, Skip, load_item, skip_from_error, summary
from matdata.errors import ImageDecodeError, ItemError
from matdata.metrics import DEFAULT_CONVENTION, METRICS, REGIONS, SCALING, MetricSums
from modnet.inference import REF_SIZE, iter_predictions

PROTOCOL = (
    "MODNet official inference: RGB/255 -> [-1,1]; short side to ref_size when the long side "
    "< ref_size or the short side > ref_size (long side int(long/short*ref_size)); sides "
    "floored to multiples of 32; area resize in and out; float matte scored"
)


@dataclass
class BenchmarkResult:
    """Scores of one evaluation: reduced sums, per-image errors, skipped items."""

    name: str
    source: str
    convention: str
    trimaps: str
    ref_size: int
    sums: MetricSums
    images: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)

    @property
    def regions(self) -> tuple[str, ...]:
        return self.sums.regions

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "source": self.source,
            "convention": self.convention,
            "trimaps": self.trimaps,
            "protocol": {"ref_size": self.ref_size, "multiple": 32, "description": PROTOCOL},
            "scaling": SCALING,
            "metrics": self.sums.result(),
            "count": self.sums.count,
            "valid": self.sums.valid,
            "skipped": summary(self.skipped),
            "skipped_items": [s.to_dict() for s in self.skipped],
            "images": self.images,
        }

    def per_image_csv(self) -> str:
        """One row per image (``status`` ok) and per skipped item (``status`` skipped)."""
        cols = ["key", "status", "reason"] + [f"{r}_{k}" for r in REGIONS for k in METRICS]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for row in self.images:
            out: dict[str, Any] = {"key": row["key"], "status": "ok", "reason": ""}
            for r in REGIONS:
                for k in METRICS:
                    v = row.get(r, {}).get(k)
                    out[f"{r}_{k}"] = "" if v is None or v != v else repr(float(v))
            w.writerow(out)
        for s in self.skipped:
            w.writerow({"key": s.key, "status": "skipped", "reason": s.reason})
        return buf.getvalue()


def evaluate_set(
    model: Any,
    bench: BenchmarkSet,
    *,
    convention: str = DEFAULT_CONVENTION,
    batch_size: int = 4,
    ref_size: int = REF_SIZE,
    limit: int = 0,
    on_done: Callable[[str], None] | None = None,
    generate_trimaps: bool = True,
) -> BenchmarkResult:
    """Predict and score every item of ``bench``; ``on_done(key)`` after each item (scored
    or skipped).  Without supplied trimaps, ``generate_trimaps`` scores the unknown region
    of a trimap made from the ground truth (folders); benchmarks pass False."""
    from matdata.trimap import TrimapParams, make_trimap

    trimaps = bench.trimaps
    if trimaps == "none" and generate_trimaps:
        trimaps = "generated"
    regions = REGIONS if trimaps != "none" else ("whole",)
    sums = MetricSums(regions=regions, convention=convention)
    result = BenchmarkResult(
        bench.name, bench.source, convention, trimaps, ref_size, sums, skipped=list(bench.skipped)
    )
    items = bench.items[:limit] if limit > 0 else bench.items
    truth: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    params = TrimapParams()

    def feed() -> Iterator[tuple[str, np.ndarray]]:
        for item in items:
            try:
                rgb, gt, trimap = load_item(item)
            except (ItemError, ImageDecodeError) as exc:
                result.skipped.append(skip_from_error(item.key, exc))
                if on_done is not None:
                    on_done(item.key)
                continue
            if trimap is None and trimaps == "generated":
                trimap = make_trimap(gt, params)
            truth[item.key] = (gt, trimap)
            yield item.key, rgb

    for key, _rgb, alpha in iter_predictions(
        model, feed(), batch_size=batch_size, ref_size=ref_size
    ):
        gt, trimap = truth.pop(key)
        errors = sums.add(alpha, gt, trimap)
        result.images.append({"key": key, **errors})
        if on_done is not None:
            on_done(key)
    return result


__all__ = ["PROTOCOL", "BenchmarkResult", "evaluate_set"]
