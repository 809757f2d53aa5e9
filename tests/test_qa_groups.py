"""Per-source and per-harmonizer views: generic over whatever source names records hold."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
from test_qa_data import clean_sample, composite, write_dataset

from matdata.qa import write_report
from matdata.qa.report import GROUP_SHEETS, group_value
from pipelines.qa import run_qa

# (fg source, coarse, bg source, harmonizer) of each record, names as a mixed build holds
PLAN = (
    [("aisegment", False, "places365", None)] * 5
    + [("supervisely", True, "coco", "reinhard")] * 3
    + [("supervisely", True, "places365", "idih")] * 2
    + [("my-folder", False, "coco", "idih")] * 1
)


def _dataset(root):
    items = []
    for i, (fg, coarse, bg, harm) in enumerate(PLAN):
        s = clean_sample(i)
        s["meta"]["fg"].update(source=fg, coarse=coarse)
        s["meta"]["bg"]["source"] = bg
        if coarse:
            s["alpha"] = np.where(s["alpha"] > 127, 255, 0).astype(np.uint8)
        if harm is not None:
            raw = composite(s["alpha"], s["bg"], s["color"])
            s["image_raw"] = raw
            s["image"] = raw
            s["meta"]["harmonize"] = {"model": harm}
        items.append((f"k{i:02d}", s))
    return write_dataset(root, {("train", 0): items})


def test_breakdown_by_source_kind_and_harmonizer(tmp_path):
    ds = _dataset(tmp_path / "ds")
    report = run_qa(str(ds), in_process=True, sample=2)
    write_report(report, str(tmp_path / "r"))
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    bd = summary["breakdown"]
    expect = {
        "fg_source": Counter(p[0] for p in PLAN),
        "bg_source": Counter(p[2] for p in PLAN),
        "kind": Counter("coarse" if p[1] else "fine" for p in PLAN),
        "harmonizer": Counter(p[3] or "(none)" for p in PLAN),
    }
    for dim, counts in expect.items():
        assert {k: v["samples"] for k, v in bd[dim].items()} == dict(counts), dim
        # largest group first
        sizes = [v["samples"] for v in bd[dim].values()]
        assert sizes == sorted(sizes, reverse=True)
    # flagged figures per group equal a recount from records.jsonl
    rows = [json.loads(x) for x in (tmp_path / "r" / "records.jsonl").read_text().splitlines()]
    for dim in expect:
        for name, fig in bd[dim].items():
            mine = [r for r in rows if group_value(r, dim) == name]
            assert fig["flagged"] == sum(1 for r in mine if r["flags"]), (dim, name)
    # every group of every dimension gets its own sample strips (up to GROUP_SHEETS)
    html = (tmp_path / "r" / "report.html").read_text()
    assert "<section id=groups>" in html
    shown = report.group_keys()
    assert set(shown) == set(expect)
    for dim, groups in shown.items():
        for name, keys in groups.items():
            assert len(keys) == min(GROUP_SHEETS, expect[dim][name])
            assert all(k in report.thumbs for k in keys), (dim, name)  # second pass fetched
            assert f": {name}</h4>" in html
