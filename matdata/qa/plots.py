"""Distribution plots of a QA report as PNG bytes (matplotlib, Agg, no pyplot state).

PNG rather than SVG: a scatter of 10k points is megabytes of SVG, and inline SVGs from
several figures would share element ids; a PNG data URI has neither problem.
"""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

import numpy as np

_COLORS = ("#3465a4", "#cc0000", "#4e9a06", "#f57900", "#75507b", "#c4a000")


def _figure(w: float = 3.7, h: float = 2.7):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _values(rows: list[dict[str, Any]], key: str) -> dict[str, np.ndarray]:
    """Values of ``key`` per split (splits in order of size)."""
    by: dict[str, list[float]] = {}
    for r in rows:
        if r.get(key) is not None:
            by.setdefault(r["split"], []).append(float(r[key]))
    return {s: np.asarray(v) for s, v in sorted(by.items(), key=lambda kv: -len(kv[1]))}


def hist_plot(rows: list[dict[str, Any]], key: str, title: str, xlabel: str) -> bytes:
    fig, ax = _figure()
    data = _values(rows, key)
    if data:
        bins = np.linspace(0.0, 1.0, 41)
        allv = np.concatenate(list(data.values()))
        if allv.max() > 1.0:
            bins = 40
        for i, (split, v) in enumerate(data.items()):
            color = _COLORS[i % len(_COLORS)]
            label = f"{split} (n={v.size})"
            ax.hist(v, bins=bins, alpha=0.6, label=label, color=color, histtype="stepfilled")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("samples", fontsize=9)
    return _png(fig)


def scatter_plot(
    rows: list[dict[str, Any]], kx: str, ky: str, title: str, xl: str, yl: str, image_y=False
) -> bytes:
    fig, ax = _figure()
    for i, split in enumerate(_values(rows, kx)):
        pts = [(r[kx], r[ky]) for r in rows if r["split"] == split and r.get(kx) is not None
               and r.get(ky) is not None]  # fmt: skip
        if pts:
            x, y = np.asarray(pts).T
            ax.scatter(x, y, s=6, alpha=0.5, label=split, color=_COLORS[i % len(_COLORS)])
    if ax.collections:
        ax.legend(fontsize=8, markerscale=2)
    if not image_y:
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
    else:
        ax.set_xlim(0, 1)
        ax.set_ylim(1, 0)  # image coordinates: y grows downwards
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xl, fontsize=9)
    ax.set_ylabel(yl, fontsize=9)
    return _png(fig)


def bar_plot(counts: dict[str, int], title: str, top: int = 25) -> bytes:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(items) > top:
        rest = sum(v for _, v in items[top:])
        items = [*items[:top], (f"({len(counts) - top} others)", rest)]
    fig, ax = _figure(3.7, max(2.2, 0.9 + 0.2 * len(items)))
    if items:
        labels = [k for k, _ in items][::-1]
        ax.barh(labels, [v for _, v in items][::-1], color=_COLORS[0])
        ax.tick_params(axis="y", labelsize=8)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("samples", fontsize=9)
    return _png(fig)


def group_hist_plot(groups: dict[str, list[float]], title: str, xlabel: str, top: int = 6) -> bytes:
    """Overlaid histograms of one statistic per group (the ``top`` largest groups), or of
    each dataset in a comparison."""
    fig, ax = _figure()
    items = [(k, np.asarray(v, np.float64)) for k, v in groups.items() if len(v)][:top]
    if items:
        allv = np.concatenate([v for _, v in items])
        lo, hi = float(allv.min()), float(allv.max())
        bins = np.linspace(0.0, 1.0, 41) if lo >= 0 and hi <= 1 else np.linspace(lo, hi + 1e-9, 41)
        for i, (name, v) in enumerate(items):
            color = _COLORS[i % len(_COLORS)]
            ax.hist(v, bins=bins, alpha=0.5, label=f"{name} (n={v.size})", color=color,
                    histtype="stepfilled", density=True)  # fmt: skip
        ax.legend(fontsize=7)
        ax.set_ylabel("density", fontsize=9)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    return _png(fig)


def report_plots(rows: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """``(caption, PNG)`` for every distribution the report shows."""
    sizes = Counter(
        f"{r['width']}x{r['height']}" for r in rows if r.get("width") and r.get("height")
    )
    cats = Counter(str(r.get("bg_category") or "(none)") for r in rows)
    return [
        ("Alpha coverage (soft foreground area)",
         hist_plot(rows, "coverage", "alpha coverage", "mean(alpha) / 255")),
        ("Share of semi-transparent pixels",
         hist_plot(rows, "semi_share", "semi-transparent pixels", "share of 0 < alpha < 255")),
        ("Unknown-band area of the trimap",
         hist_plot(rows, "unknown_share", "unknown band", "share of trimap == 128")),
        ("Foreground bounding-box size",
         scatter_plot(rows, "bbox_w", "bbox_h", "fg bbox size", "width / W", "height / H")),
        ("Foreground bounding-box centre",
         scatter_plot(rows, "bbox_cx", "bbox_cy", "fg bbox centre", "x / W", "y / H", True)),
        ("Image sizes", bar_plot(dict(sizes), "image sizes (W x H)")),
        ("Background categories", bar_plot(dict(cats), "background categories")),
        ("Halo / colour-bleed score of the soft edge",
         hist_plot(rows, "halo", "halo score", "|v| (uint8 RGB units)")),
    ]  # fmt: skip
