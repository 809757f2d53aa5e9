"""The self-contained HTML QA report: one file, inline CSS, images as data URIs.

Nothing in the page refers to another file or host (no ``http(s)://`` in any ``src`` or
``href``, no scripts, no web fonts), so it opens offline and can be mailed or attached to
a CI run.  All text from the dataset is escaped.
"""

from __future__ import annotations

import base64
import json
from html import escape
from typing import Any

from matdata.qa.analysis import FLAGS, SHARD_FLAGS
from matdata.qa.report import QAReport

#: Flagged samples shown as contact-sheet strips (all are listed in the table and JSON).
MAX_FLAGGED_SHEETS = 200
#: Rows of the flagged-samples table in the HTML (all are in summary.json).
MAX_FLAGGED_ROWS = 2000

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;
background:#fafafa}
header{background:#2e3440;color:#eceff4;padding:14px 24px}
header h1{margin:0 0 4px;font-size:22px}
main{padding:8px 24px 40px}
nav a{color:#88c0d0;margin-right:14px}
h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;margin:6px 16px 10px 0;font-size:13px;background:#fff}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.tables{display:flex;flex-wrap:wrap;align-items:flex-start}
.plots{display:flex;flex-wrap:wrap;gap:12px}
.plots figure{margin:0;background:#fff;border:1px solid #ddd;padding:6px}
.sheets{display:flex;flex-wrap:wrap;gap:10px}
.sheet{margin:0;background:#fff;border:1px solid #ccc;padding:4px;max-width:520px}
.sheet.bad{border-color:#c00}
.sheet img{display:block;max-width:100%}
figcaption{font-size:12px;color:#444;margin-top:3px;word-break:break-all}
.flag{display:inline-block;background:#fde2e2;color:#900;border-radius:3px;padding:0 4px;
margin:1px 2px 0 0;font-size:11px}
.ok{color:#2e7d32;font-weight:600}.bad{color:#c00;font-weight:600}
pre{background:#fff;border:1px solid #ddd;padding:8px;overflow:auto;max-height:420px;
font-size:12px}
.muted{color:#777}
.edges{display:flex;flex-wrap:wrap;gap:12px}
.edge{margin:0;background:#fff;border:1px solid #ccc;padding:4px}
.edge.flagged{border-color:#c00}
.edge img{display:block;max-width:none;image-rendering:pixelated;cursor:zoom-in}
.edge figcaption{max-width:660px}
.lb{display:none;position:fixed;inset:0;z-index:10;background:rgba(20,20,20,.92);
overflow:auto;padding:36px 12px 12px}
.lb:target{display:block}
.lb .full{display:flex;gap:4px;width:max-content;margin:0 auto;align-items:flex-start}
.lb img{display:block;max-width:none;image-rendering:pixelated}
.lb .close{position:fixed;top:6px;right:18px;color:#fff;font-size:26px;text-decoration:none}
.lb p{color:#eee;text-align:center;margin:6px}
"""


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _count_table(title: str, counts: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{escape(str(k))}</td><td class=n>{v}</td></tr>" for k, v in counts.items()
    )
    return (
        f"<table><thead><tr><th>{escape(title)}</th><th>samples</th></tr></thead>"
        f"<tbody>{rows or '<tr><td colspan=2 class=muted>none</td></tr>'}</tbody></table>"
    )


def _flag_badges(flags: list[dict[str, str]]) -> str:
    return "".join(
        f'<span class=flag title="{escape(f["reason"])}">{escape(f["flag"])}</span>' for f in flags
    )


def _caption(row: dict[str, Any], reasons: bool) -> str:
    prov = (
        f"{escape(row['key'])}<br>split {escape(str(row['split']))} · fg "
        f"{escape(str(row.get('fg_source')))}/{escape(str(row.get('fg_id')))} · bg "
        f"{escape(str(row.get('bg_source')))}/{escape(str(row.get('bg_id')))} "
        f"({escape(str(row.get('bg_category')))})"
    )
    if row.get("coarse"):
        prov += " · coarse"
    if row.get("harmonizer"):
        prov += f" · harmonized: {escape(str(row['harmonizer']))}"
    if row["flags"]:
        prov += "<br>" + _flag_badges(row["flags"])
        if reasons:
            prov += "".join(f"<br>{escape(f['flag'])}: {escape(f['reason'])}" for f in row["flags"])
    return prov


def _sheet(row: dict[str, Any], thumb: bytes | None, reasons: bool = False) -> str:
    img = (
        f'<img src="{_data_uri(thumb, "image/jpeg")}" alt="{escape(row["key"])}">'
        if thumb
        else "<div class=muted>(no image: the record does not decode)</div>"
    )
    cls = "sheet bad" if row["flags"] else "sheet"
    return f"<figure class='{cls}'>{img}<figcaption>{_caption(row, reasons)}</figcaption></figure>"


def _fmt(v: Any, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def _edge_card(i: int, row: dict[str, Any], views: Any) -> tuple[str, str]:
    """One record's edge sheet (a link to its lightbox) and the lightbox itself."""
    key = escape(row["key"])
    cls = "edge flagged" if row["flags"] else "edge"
    fg = "stored fg layer" if views.fg_from == "layer" else "fg estimated from the composite"
    x, y, side = views.crop
    cap = (
        f"{key} · halo {_fmt(row.get('halo'))} · {escape(' | '.join(views.views))} "
        f"({fg}; crop {side}px at {x},{y}; top 1:1, bottom 2x zoom)"
    )
    if row["flags"]:
        cap += "<br>" + _flag_badges(row["flags"])
    card = (
        f"<figure class='{cls}'><a href='#lb-{i}'><img src='{_data_uri(views.edges, 'image/jpeg')}'"
        f" alt='edges {key}'></a><figcaption>{cap}</figcaption></figure>"
    )
    scale = "" if views.scale == 1.0 else f" (panels scaled {views.scale:.2f}: over the cap)"
    names = ["", " alpha", " image_raw"]
    panels = "".join(
        f"<img src='{_data_uri(data, mime)}' alt='full {key}{names[j]}'>"
        for j, (mime, data) in enumerate(views.full[:3])
    )
    box = (
        f"<div class=lb id=lb-{i}><a class=close href='#edges' title=close>&times;</a>"
        f"<p>{key}: composite | alpha{' | image_raw' if len(views.full) > 2 else ''}"
        f"{scale}</p><div class=full>{panels}</div></div>"
    )
    return card, box


def _edges_section(report: QAReport) -> tuple[str, str]:
    """The edge-crop section and the lightboxes (placed at the end of the page)."""
    from matdata.qa.edges import EDGE_CROP

    by_key = {r["key"]: r for r in report.rows}
    keys = [k for k in report.view_keys() if k in report.views and k in by_key]
    sampled = set(report.sample_keys)
    parts = [
        f"<section id=edges><h2>Edges at native resolution ({len(keys)})</h2><p class=muted>"
        f"Where alpha is most fractional: a {EDGE_CROP}px crop at 1:1 (top) and a 2x "
        "nearest-neighbour zoom of its most fractional half (bottom), as composite | "
        "foreground over mid-grey (a bleeding backdrop shows as a coloured fringe) | alpha "
        "| 4x |image - image_raw| (harmonized records). Click a crop for the full record at "
        "full size. First the random sample, then flagged records.</p><div class=edges>"
    ]
    boxes = []
    for i, key in enumerate(keys):
        if i and key not in sampled and keys[i - 1] in sampled:
            parts.append("</div><h3>Flagged</h3><div class=edges>")
        card, box = _edge_card(i, by_key[key], report.views[key])
        parts.append(card)
        boxes.append(box)
    if not keys:
        parts.append("<p class=muted>No record has edge views (nothing decodes).</p>")
    parts.append("</div></section>")
    return "".join(parts), "".join(boxes)


def _groups_section(report: QAReport, plots: bool = True) -> str:
    """Per-group figures, overlaid distributions and sample strips for each breakdown
    dimension (generic over whatever source names the records hold)."""
    from matdata.qa.plots import group_hist_plot
    from matdata.qa.report import GROUP_DIMS

    breakdown = report.breakdown()
    shown = report.group_keys()
    by_key = {r["key"]: r for r in report.rows}
    parts = ["<section id=groups><h2>By source and harmonizer</h2>"]
    for dim, title in GROUP_DIMS:
        figs = breakdown[dim]
        parts.append(f"<h3>By {escape(title)} ({len(figs)})</h3><table><thead><tr>"
                     f"<th>{escape(title)}</th><th>samples</th><th>flagged</th><th>halo p50</th>"
                     "<th>halo p95</th><th>coverage p50</th><th>semi p50</th><th>flags</th>"
                     "</tr></thead><tbody>")  # fmt: skip
        for name, f in figs.items():
            flags = ", ".join(f"{k} {v}" for k, v in f["by_flag"].items())
            parts.append(
                f"<tr><td>{escape(name)}</td><td class=n>{f['samples']}</td>"
                f"<td class=n>{f['flagged']} ({f['share_flagged']:.0%})</td>"
                f"<td class=n>{_fmt(f['halo_p50'])}</td><td class=n>{_fmt(f['halo_p95'])}</td>"
                f"<td class=n>{_fmt(f['coverage_p50'], '.3f')}</td>"
                f"<td class=n>{_fmt(f['semi_share_p50'], '.3f')}</td><td>{escape(flags)}</td></tr>"
            )
        parts.append("</tbody></table>")
        if dim not in shown:
            continue
        if plots:
            parts.append("<div class=plots>")
            groups = report.groups(dim)
            for m, label in (("halo", "halo score"), ("semi_share", "semi-transparent share")):
                vals = {
                    k: [r[m] for r in rows if r.get(m) is not None] for k, rows in groups.items()
                }
                png = group_hist_plot(vals, f"{label} by {title}", label)
                what = f"{escape(label)} by {escape(title)}"
                parts.append(f"<figure><img src='{_data_uri(png, 'image/png')}' alt='{what}'>"
                             f"<figcaption>{what}</figcaption></figure>")  # fmt: skip
            parts.append("</div>")
        for name, keys in shown[dim].items():
            parts.append(f"<h4>{escape(title)}: {escape(name)}</h4><div class=sheets>")
            for key in keys:
                parts.append(_sheet(by_key[key], report.thumbs.get(key)))
            parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def render_html(report: QAReport, plots: list[tuple[str, bytes]] | None = None) -> str:
    """The whole report page as a string (plots default to :func:`report_plots`)."""
    from matdata.qa.plots import report_plots

    summary = report.summary()
    plots = report_plots(report.rows) if plots is None else plots
    edges, lightboxes = _edges_section(report)
    parts = [
        _page_head(report, summary),
        _counts_section(summary["counts"]),
        _flags_section(report, summary),
        edges,
        _plots_section(plots),
        _groups_section(report),
        _sample_section(report),
        _flagged_section(report),
        _shards_section(report),
        _rejects_section(summary["rejects"]),
        _config_section(summary),
        f"</main>{lightboxes}</body></html>\n",
    ]
    return "".join(parts)


#: What a contact sheet shows, left to right.
_SHEET_LEGEND = "composite | alpha | trimap | image_raw (before harmonization, when present)"


def _page_head(report: QAReport, summary: dict[str, Any]) -> str:
    """The document head, the header line with the totals and the navigation."""
    counts = summary["counts"]
    fl = summary["flags"]
    parts: list[str] = []
    add = parts.append
    add("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>")
    add('<meta name=viewport content="width=device-width, initial-scale=1">')
    add(f"<title>matdata QA: {escape(report.dataset)}</title><style>{_CSS}</style></head><body>")
    add("<header><h1>matdata QA report</h1>")
    add(
        f"<div>{escape(report.dataset)} · {counts['samples']} samples read "
        f"(dataset.json: {counts['expected_samples']}) · "
        f"{fl['samples_flagged']} flagged ({fl['share_flagged']:.2%}) · "
        f"matdata {escape(summary['matdata_version'])}</div>"
    )
    add(
        "<nav><a href='#counts'>counts</a><a href='#flags'>flags</a><a href='#edges'>edges</a>"
        "<a href='#plots'>distributions</a><a href='#groups'>by source</a>"
        "<a href='#sample'>random sample</a><a href='#flagged'>flagged</a>"
        "<a href='#shards'>shards</a><a href='#rejects'>rejects</a><a href='#config'>config</a>"
        "</nav></header><main>"
    )
    return "".join(parts)


def _counts_section(counts: dict[str, Any]) -> str:
    """Sample counts by split, source, kind, harmonizer and background category."""
    parts: list[str] = []
    add = parts.append
    add("<section id=counts><h2>Counts</h2><div class=tables>")
    for title, key in (
        ("split", "by_split"),
        ("foreground source", "by_fg_source"),
        ("fine / coarse", "by_kind"),
        ("harmonizer", "by_harmonizer"),
        ("background source", "by_bg_source"),
        ("background category", "by_bg_category"),
    ):
        add(_count_table(title, counts[key]))
    add("</div></section>")
    return "".join(parts)


def _flags_section(report: QAReport, summary: dict[str, Any]) -> str:
    """Samples per flag, shard problems and duplicate groups."""
    fl = summary["flags"]
    parts: list[str] = []
    add = parts.append
    add("<section id=flags><h2>Flags</h2><table><thead><tr><th>flag</th><th>samples</th>"
        "<th>meaning</th></tr></thead><tbody>")  # fmt: skip
    for name, meaning in FLAGS.items():
        n = fl["by_flag"].get(name, 0)
        cls = "bad" if n else "ok"
        add(f"<tr><td>{name}</td><td class='n {cls}'>{n}</td><td>{escape(meaning)}</td></tr>")
    add("</tbody></table>")
    probs = summary["shard_problems"]
    if probs:
        add("<h3>Shard problems</h3><table><thead><tr><th>shard</th><th>flag</th>"
            "<th>reason</th></tr></thead><tbody>")  # fmt: skip
        for p in probs:
            add(f"<tr><td>{escape(p['shard'])}</td><td class=bad>{escape(p['flag'])}</td>"
                f"<td>{escape(p['reason'])}</td></tr>")  # fmt: skip
        add("</tbody></table>")
    else:
        add("<p class=ok>Every shard matches its size and sha256 in dataset.json.</p>")
    if report.duplicate_groups:
        add(f"<h3>Duplicate groups ({len(report.duplicate_groups)})</h3><ul>")
        for g in report.duplicate_groups[:200]:
            add(f"<li>{escape(', '.join(g))}</li>")
        add("</ul>")
    add("</section>")
    return "".join(parts)


def _plots_section(plots: list[tuple[str, bytes]]) -> str:
    """The distribution plots, one figure each."""
    parts: list[str] = []
    add = parts.append
    add("<section id=plots><h2>Distributions</h2><div class=plots>")
    for caption, png in plots:
        add(
            f"<figure><img src='{_data_uri(png, 'image/png')}' alt='{escape(caption)}'>"
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )
    add("</div></section>")
    return "".join(parts)


def _sample_section(report: QAReport) -> str:
    """Contact sheets of the random sample."""
    by_key = {r["key"]: r for r in report.rows}
    parts: list[str] = []
    add = parts.append
    add(f"<section id=sample><h2>Random sample ({len(report.sample_keys)})</h2>"
        f"<p class=muted>{_SHEET_LEGEND}</p><div class=sheets>")  # fmt: skip
    for key in report.sample_keys:
        if key in by_key:
            add(_sheet(by_key[key], report.thumbs.get(key)))
    add("</div></section>")
    return "".join(parts)


def _flagged_section(report: QAReport) -> str:
    """Contact sheets of the first flagged samples, then a table of them all."""
    flagged = report.flagged
    shown = flagged[:MAX_FLAGGED_SHEETS]
    parts: list[str] = []
    add = parts.append
    add(f"<section id=flagged><h2>Flagged samples ({len(flagged)})</h2>")
    if len(flagged) > len(shown):
        add(f"<p>The first {len(shown)} are shown; summary.json lists all.</p>")
    if not flagged:
        add("<p class=ok>No sample is flagged.</p>")
    add(f"<p class=muted>{_SHEET_LEGEND}</p><div class=sheets>")
    for row in shown:
        add(_sheet(row, report.thumbs.get(row["key"]), reasons=True))
    add("</div>")
    if flagged:
        add("<h3>All flagged samples</h3><table><thead><tr><th>key</th><th>split</th>"
            "<th>shard</th><th>flags</th></tr></thead><tbody>")  # fmt: skip
        for row in flagged[:MAX_FLAGGED_ROWS]:
            reasons = "<br>".join(
                f"<b>{escape(f['flag'])}</b>: {escape(f['reason'])}" for f in row["flags"]
            )
            add(f"<tr><td>{escape(row['key'])}</td><td>{escape(row['split'])}</td>"
                f"<td>{escape(str(row.get('shard')))}</td><td>{reasons}</td></tr>")  # fmt: skip
        add("</tbody></table>")
    add("</section>")
    return "".join(parts)


def _shards_section(report: QAReport) -> str:
    """One row per shard: size, hash and status."""
    parts: list[str] = []
    add = parts.append
    add("<section id=shards><h2>Shards</h2><table><thead><tr><th>shard</th><th>split</th>"
        "<th>format</th><th>samples</th><th>MB</th><th>sha256</th><th>status</th></tr>"
        "</thead><tbody>")  # fmt: skip
    for s in report.shards:
        status = (
            "<span class=bad>" + escape(", ".join(p["flag"] for p in s["problems"])) + "</span>"
            if s["problems"]
            else "<span class=ok>ok</span>"
        )
        add(
            f"<tr><td>{escape(s['path'])}</td><td>{escape(s['split'])}</td>"
            f"<td>{escape(s['format'])}</td><td class=n>{s['samples']}</td>"
            f"<td class=n>{s['bytes'] / 1e6:.2f}</td><td><code>{escape(s['sha256'][:16])}"
            f"</code></td><td>{status}</td></tr>"
        )
    add("</tbody></table></section>")
    return "".join(parts)


def _rejects_section(rej: dict[str, Any]) -> str:
    """The build's rejects by reason."""
    return (
        f"<section id=rejects><h2>Rejects of the build ({rej['total']})</h2>"
        + _count_table("reason", rej["by_reason"])
        + "</section>"
    )


def _config_section(summary: dict[str, Any]) -> str:
    """The build config, its sources, the QA thresholds and the shard-level flags."""
    parts: list[str] = []
    add = parts.append
    add("<section id=config><h2>Build config</h2><pre>")
    add(escape(json.dumps(summary["config"], indent=2, sort_keys=True, default=str)))
    add("</pre><h3>Sources</h3><pre>")
    add(escape(json.dumps(summary["sources"], indent=2, sort_keys=True, default=str)))
    add("</pre><h3>QA thresholds</h3><pre>")
    add(escape(json.dumps(summary["thresholds"], indent=2)))
    add("</pre><h3>Shard-level flags</h3><ul>")
    for name, meaning in SHARD_FLAGS.items():
        add(f"<li><b>{name}</b>: {escape(meaning)}</li>")
    add("</ul></section>")
    return "".join(parts)


def write_html(report: QAReport, path: str) -> None:
    from matdata.storage import atomic_write_text

    atomic_write_text(path, render_html(report))
