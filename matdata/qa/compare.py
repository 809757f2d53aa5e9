"""``matdata qa A --compare B``: the same keys of two datasets side by side.

Typical pairs: a dataset and its harmonized copy, or two builds that differ in one option
(``--fg-estimator none`` vs the default): records are matched by key.  The comparison
holds, for the keys both datasets have, each statistic's distribution in A and in B, the
per-key differences ``B - A`` (mean, median, p5, p95), the keys whose halo score changed
most, how flags moved (flagged in A only / in B only / in both), and edge views of a few
keys from both datasets (:mod:`matdata.qa.edges`).  It is written as ``compare.html``
(one self-contained file, like the report) and ``compare.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np

from matdata import jsonsafe
from matdata.qa.report import METRICS, QAReport

#: Keys shown side by side (edge views of both datasets): the random sample of A first,
#: then the largest halo changes.
MAX_PAIRS = 24
#: Keys listed in the "largest halo change" table.
TOP_CHANGES = 20


@dataclass
class Comparison:
    """Everything ``compare.json`` and ``compare.html`` show (see the module docstring)."""

    a: str
    b: str
    common: list[str]
    only_a: int
    only_b: int
    metrics: dict[str, dict[str, Any]]
    top_halo: list[dict[str, Any]]
    flags: dict[str, Any]
    pair_keys: list[str] = field(default_factory=list)
    views_a: dict[str, Any] = field(default_factory=dict)
    views_b: dict[str, Any] = field(default_factory=dict)
    values: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "common_keys": len(self.common),
            "only_a": self.only_a,
            "only_b": self.only_b,
            "metrics": self.metrics,
            "largest_halo_changes": self.top_halo,
            "flags": self.flags,
            "pair_keys": self.pair_keys,
        }


def _stats(v: np.ndarray) -> dict[str, float] | None:
    if not v.size:
        return None
    p5, p50, p95 = np.percentile(v, [5, 50, 95])
    return {"n": int(v.size), "mean": float(v.mean()), "p5": float(p5), "median": float(p50),
            "p95": float(p95)}  # fmt: skip


def compare(a: QAReport, b: QAReport) -> Comparison:
    """Match the records of two reports by key and compare them (pure; no views)."""
    ra = {r["key"]: r for r in a.rows}
    rb = {r["key"]: r for r in b.rows}
    common = [k for k in ra if k in rb]
    metrics: dict[str, dict[str, Any]] = {}
    values: dict[str, tuple[list[float], list[float]]] = {}
    for m in METRICS:
        pairs = [(ra[k][m], rb[k][m]) for k in common
                 if ra[k].get(m) is not None and rb[k].get(m) is not None]  # fmt: skip
        if not pairs:
            continue
        va, vb = (np.array(x, np.float64) for x in zip(*pairs, strict=True))
        values[m] = (va.tolist(), vb.tolist())
        metrics[m] = {"a": _stats(va), "b": _stats(vb), "b_minus_a": _stats(vb - va)}
    changes = [
        {"key": k, "halo_a": ra[k]["halo"], "halo_b": rb[k]["halo"],
         "diff": rb[k]["halo"] - ra[k]["halo"]}
        for k in common
        if ra[k].get("halo") is not None and rb[k].get("halo") is not None
    ]  # fmt: skip
    changes.sort(key=lambda c: (-abs(c["diff"]), c["key"]))
    fa = {k for k in common if ra[k]["flags"]}
    fb = {k for k in common if rb[k]["flags"]}
    names = sorted({f["flag"] for k in common for r in (ra[k], rb[k]) for f in r["flags"]})
    by_flag = {
        n: {
            "a": sum(any(f["flag"] == n for f in ra[k]["flags"]) for k in common),
            "b": sum(any(f["flag"] == n for f in rb[k]["flags"]) for k in common),
        }
        for n in names
    }
    flags = {"a_only": len(fa - fb), "b_only": len(fb - fa), "both": len(fa & fb),
             "by_flag": by_flag}  # fmt: skip
    sampled = [k for k in a.sample_keys if k in rb]
    pair_keys = list(dict.fromkeys(sampled + [c["key"] for c in changes]))[:MAX_PAIRS]
    return Comparison(
        a=a.dataset,
        b=b.dataset,
        common=common,
        only_a=len(ra) - len(common),
        only_b=len(rb) - len(common),
        metrics=metrics,
        top_halo=changes[:TOP_CHANGES],
        flags=flags,
        pair_keys=pair_keys,
        values=values,
    )


def fetch_views(dataset_dir: str, report: QAReport, keys: list[str]) -> dict[str, Any]:
    """Edge views of ``keys`` of a scanned dataset: those the scan returned, the rest read
    again from their shards (:func:`matdata.qa.scan.shard_views`, in this process: a few
    dozen records)."""
    from matdata.qa.scan import shard_views
    from matdata.shards import list_shards

    out = {k: report.views[k] for k in keys if k in report.views}
    rows = {r["key"]: r for r in report.rows}
    by_shard: dict[str, list[str]] = {}
    for k in keys:
        if k not in out and k in rows and rows[k].get("phash") is not None:
            by_shard.setdefault(rows[k]["shard"], []).append(k)
    if by_shard:
        for shard in list_shards(dataset_dir):
            if shard.path in by_shard:
                out.update(shard_views(dataset_dir, shard, by_shard[shard.path]))
    return out


def _fmt(v: Any, spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec)


def render_compare_html(cmp: Comparison) -> str:
    """``compare.html``: one self-contained page (inline CSS, data URIs, no scripts)."""
    from matdata.qa.html import _CSS, _data_uri
    from matdata.qa.plots import group_hist_plot

    la, lb = f"A: {cmp.a}", f"B: {cmp.b}"
    p: list[str] = []
    add = p.append
    add("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>")
    add(f"<title>matdata QA compare</title><style>{_CSS}</style></head><body>")
    add(f"<header><h1>matdata QA: A vs B</h1><div>A = {escape(cmp.a)}<br>B = {escape(cmp.b)}"
        f"<br>{len(cmp.common)} keys in both · {cmp.only_a} only in A · {cmp.only_b} only in B"
        "</div><nav><a href='#summary'>differences</a><a href='#plots'>distributions</a>"
        "<a href='#halo'>halo changes</a><a href='#pairs'>side by side</a></nav></header>"
        "<main>")  # fmt: skip
    add("<section id=summary><h2>Statistics on the common keys</h2><table><thead><tr>"
        "<th>statistic</th><th>n</th><th>A median</th><th>B median</th><th>A p95</th>"
        "<th>B p95</th><th>median B-A</th><th>mean B-A</th><th>p5 B-A</th><th>p95 B-A</th>"
        "</tr></thead><tbody>")  # fmt: skip
    for m, s in cmp.metrics.items():
        d = s["b_minus_a"]
        add(f"<tr><td>{m}</td><td class=n>{d['n']}</td><td class=n>{_fmt(s['a']['median'])}"
            f"</td><td class=n>{_fmt(s['b']['median'])}</td><td class=n>{_fmt(s['a']['p95'])}"
            f"</td><td class=n>{_fmt(s['b']['p95'])}</td><td class=n>{_fmt(d['median'])}</td>"
            f"<td class=n>{_fmt(d['mean'])}</td><td class=n>{_fmt(d['p5'])}</td>"
            f"<td class=n>{_fmt(d['p95'])}</td></tr>")  # fmt: skip
    add("</tbody></table><h3>Flags on the common keys</h3><table><thead><tr><th>flag</th>"
        "<th>A</th><th>B</th></tr></thead><tbody>")  # fmt: skip
    for name, n in cmp.flags["by_flag"].items():
        add(f"<tr><td>{escape(name)}</td><td class=n>{n['a']}</td><td class=n>{n['b']}</td></tr>")
    f = cmp.flags
    add(f"</tbody></table><p>Flagged in A only: {f['a_only']} · in B only: {f['b_only']} · "
        f"in both: {f['both']}</p></section>")  # fmt: skip
    add("<section id=plots><h2>Distributions, A and B overlaid</h2><div class=plots>")
    for m, (va, vb) in cmp.values.items():
        if min(va + vb) == max(va + vb):  # one value everywhere (e.g. the image size)
            continue
        png = group_hist_plot({la: va, lb: vb}, m, m)
        add(f"<figure><img src='{_data_uri(png, 'image/png')}' alt='{m}'><figcaption>{m}"
            "</figcaption></figure>")  # fmt: skip
    add("</div></section>")
    add("<section id=halo><h2>Largest halo changes</h2><table><thead><tr><th>key</th>"
        "<th>halo A</th><th>halo B</th><th>B-A</th></tr></thead><tbody>")  # fmt: skip
    for c in cmp.top_halo:
        add(f"<tr><td>{escape(c['key'])}</td><td class=n>{c['halo_a']:.1f}</td><td class=n>"
            f"{c['halo_b']:.1f}</td><td class=n>{c['diff']:+.1f}</td></tr>")  # fmt: skip
    add("</tbody></table></section>")
    add(f"<section id=pairs><h2>Side by side ({len(cmp.pair_keys)})</h2><p class=muted>Each key: "
        "A's edge views above B's (composite | foreground over mid-grey | alpha [| harm-raw]; "
        "1:1 on top, 2x zoom below).</p><div class=edges>")  # fmt: skip
    for key in cmp.pair_keys:
        add(f"<figure class=edge><figcaption>{escape(key)}</figcaption>")
        for label, views in (("A", cmp.views_a), ("B", cmp.views_b)):
            v = views.get(key)
            if v is None:
                add(f"<div class=muted>{label}: no view (the record does not decode)</div>")
                continue
            add(f"<div>{label}</div><img src='{_data_uri(v.edges, 'image/jpeg')}' "
                f"alt='{label} edges {escape(key)}'>")  # fmt: skip
        add("</figure>")
    add("</div></section></main></body></html>\n")
    return "".join(p)


def write_compare(cmp: Comparison, out_dir: str) -> dict[str, Any]:
    """Write ``compare.html`` and ``compare.json`` into ``out_dir``; return the JSON."""
    from matdata.storage import atomic_write_text, join, makedirs

    makedirs(out_dir)
    data = cmp.to_dict()
    atomic_write_text(join(out_dir, "compare.json"), jsonsafe.dumps(data, indent=2) + "\n")
    atomic_write_text(join(out_dir, "compare.html"), render_compare_html(cmp))
    return data
