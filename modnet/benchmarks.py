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
without trimaps and built datasets use a trimap generated from the ground truth
(:func:`matdata.trimap.make_trimap`, default parameters).
Dataset scores are means over images.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matdata.benchmarks import EvalSet, Skip, summary
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

    def require_images(self) -> None:
        """Raise a :class:`~matdata.errors.ConfigError` when no image could be scored."""
        from matdata.errors import ConfigError

        if not self.images:
            why = ", ".join(f"{n} {r}" for r, n in summary(self.skipped).items()) or "no samples"
            raise ConfigError(
                f"nothing could be evaluated in {self.source}", hint=f"skipped: {why}"
            )

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
    bench: EvalSet,
    *,
    convention: str = DEFAULT_CONVENTION,
    batch_size: int = 4,
    ref_size: int = REF_SIZE,
    limit: int = 0,
    on_progress: Callable[[int, int | None], None] | None = None,
    on_skip: Callable[[Skip], None] | None = None,
    generate_trimaps: bool = True,
) -> BenchmarkResult:
    """Predict and score every sample of ``bench`` (a benchmark, folders or a built
    dataset's split: :func:`matdata.benchmarks.open_eval_set`).

    ``on_progress(done, total)`` after each sample scored or skipped (``total`` None when
    unknown); ``on_skip(skip)`` for each sample skipped during the run (the set's own
    pairing skips are in ``bench.skipped``).  Without supplied trimaps,
    ``generate_trimaps`` scores the unknown region of a trimap made from the ground truth
    (folders, datasets); benchmarks pass False.  ``limit``: the first N items of a
    benchmark, the first N scored images of a dataset."""
    from matdata.trimap import TrimapParams, make_trimap

    trimaps = bench.trimaps
    if trimaps == "none" and generate_trimaps:
        trimaps = "generated"
    regions = REGIONS if trimaps != "none" else ("whole",)
    sums = MetricSums(regions=regions, convention=convention)
    result = BenchmarkResult(
        bench.name, bench.source, convention, trimaps, ref_size, sums, skipped=list(bench.skipped)
    )
    total = bench.expected(limit)
    truth: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    params = TrimapParams()
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    def feed() -> Iterator[tuple[str, np.ndarray]]:
        for sample in bench.samples(limit):
            if isinstance(sample, Skip):
                result.skipped.append(sample)
                if on_skip is not None:
                    on_skip(sample)
                step()
                continue
            trimap = sample.trimap
            if trimap is None and trimaps == "generated":
                trimap = make_trimap(sample.alpha, params)
            truth[sample.key] = (sample.alpha, trimap)
            yield sample.key, sample.rgb

    for key, _rgb, alpha in iter_predictions(
        model, feed(), batch_size=batch_size, ref_size=ref_size
    ):
        gt, trimap = truth.pop(key)
        errors = sums.add(alpha, gt, trimap)
        result.images.append({"key": key, **errors})
        step()
    return result


__all__ = ["PROTOCOL", "BenchmarkResult", "evaluate_set"]
