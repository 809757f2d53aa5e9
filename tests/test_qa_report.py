"""QA on a real demo build: clean build -> no flags; defects planted with ShardWriter ->
exactly those flagged; the HTML is valid, self-contained and renders in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matdata.imageio import encode_png
from matdata.qa import write_report
from matdata.schema import Record
from matdata.shards import ShardInfo, ShardWriter, iter_shard, read_index, write_index
from pipelines.qa import run_qa

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def demo_dataset(tmp_path_factory) -> Path:
    from matdata.builder import BuildConfig
    from pipelines.build import run_build

    out = tmp_path_factory.mktemp("qa_demo") / "demo"
    cfg = BuildConfig(
        fg="demo",
        bg="demo",
        out=str(out),
        per_fg=2,
        size=(96, 112),
        trimap=True,
        formats=("parquet", "webdataset"),
        samples_per_shard=8,
        fg_options={"n_fg": 8, "n_bg": 6},
        bg_options={"n_fg": 8, "n_bg": 6},
    )
    run_build(cfg, workers=1, progress=False)
    return out


def _plant(src: Path, dst: Path) -> dict[str, set[str]]:
    """Copy the dataset, rewrite its first train shard with defects (ShardWriter) and
    re-index it; return the expected flags."""
    shutil.copytree(src, dst)
    index = read_index(str(dst))
    shards = [ShardInfo.from_dict(d) for d in index["shards"]]
    target = next(s for s in shards if s.format == "parquet" and s.split == "train")
    recs = list(iter_shard(str(dst), target))
    assert len(recs) >= 3
    r0, r1, r2 = recs[:3]
    recs[0] = Record(**{**r0.__dict__, "alpha": encode_png(np.zeros((112, 96), np.uint8))})
    recs[1] = Record(**{**r1.__dict__, "image": r2.image})
    writer = ShardWriter(str(dst), target.split, target.index, formats=("parquet", "webdataset"))
    for rec in recs:
        writer.write(rec)
    new = writer.close()
    keep = [s for s in shards if (s.split, s.index) != (target.split, target.index)]
    write_index(
        str(dst),
        keep + new,
        config=index["config"],
        sources=index["sources"],
        rejects=index["rejects"],
    )
    return {r0.key: {"empty_alpha"}, r1.key: {"duplicate"}, r2.key: {"duplicate"}}


@pytest.fixture(scope="module")
def planted(demo_dataset, tmp_path_factory) -> tuple[Path, dict[str, set[str]], Path]:
    root = tmp_path_factory.mktemp("qa_planted")
    expected = _plant(demo_dataset, root / "ds")
    report = run_qa(str(root / "ds"), in_process=True, sample=6)
    write_report(report, str(root / "report"))
    return root / "ds", expected, root / "report"


def test_demo_build_is_clean(demo_dataset, tmp_path):
    from typer.testing import CliRunner

    from matdata.cli import app

    args = ["qa", str(demo_dataset), "--out", str(tmp_path / "r"), "--in-process"]
    res = CliRunner().invoke(app, [*args, "--fail-on", "flagged>0", "--fail-on", "checksum"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["flagged"] == [] and summary["shard_problems"] == []
    index = read_index(str(demo_dataset))
    assert summary["counts"]["samples"] == index["samples"] == 16
    assert summary["counts"]["by_fg_source"] == {"demo": 16}
    assert sum(summary["counts"]["by_bg_category"].values()) == 16
    assert all(s["problems"] == [] for s in summary["shards"])
    assert {s["format"] for s in summary["shards"]} == {"parquet", "webdataset"}
    assert summary["config"]["per_fg"] == 2


def test_planted_defects_in_demo_build(planted):
    _, expected, report_dir = planted
    summary = json.loads((report_dir / "summary.json").read_text())
    got = {f["key"]: {x["flag"] for x in f["flags"]} for f in summary["flagged"]}
    assert got == expected
    assert summary["shard_problems"] == []


class _Checker(HTMLParser):
    """Collects tags, checks nesting of non-void elements and gathers src/href values."""

    VOID = {"meta", "img", "br", "hr", "link", "input", "source", "wbr", "col", "area"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.counts: dict[str, int] = {}
        self.urls: list[tuple[str, str, str]] = []
        self.classes: list[str] = []
        self.imgs: list[tuple[str, str, str]] = []  # (tag, src, alt)
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1
        for name, value in attrs:
            if name in ("src", "href", "action", "poster", "data"):
                self.urls.append((tag, name, value or ""))
            if name == "class" and value:
                self.classes.append(value)
        if tag == "img":
            d = dict(attrs)
            self.imgs.append((tag, d.get("src") or "", d.get("alt") or ""))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()


def test_html_is_valid_and_self_contained(planted):
    _, expected, report_dir = planted
    html = (report_dir / "report.html").read_text()
    p = _Checker()
    p.feed(html)
    p.close()
    assert p.doctype and p.errors == [] and p.stack == []
    assert p.counts["html"] == p.counts["head"] == p.counts["body"] == p.counts["title"] == 1
    assert p.counts.get("script", 0) == 0 and p.counts.get("link", 0) == 0
    for tag, name, url in p.urls:
        assert url.startswith(("data:", "#")), (tag, name, url[:60])
    assert "http://" not in html and "https://" not in html and "url(" not in html
    imgs = [(u, alt) for t, u, alt in p.imgs]
    plots = [u for u, _ in imgs if u.startswith("data:image/png;base64,")]
    jpegs = [(u, alt) for u, alt in imgs if u.startswith("data:image/jpeg;base64,")]
    edges = [u for u, alt in jpegs if alt.startswith("edges ")]
    full = [u for u, alt in jpegs if alt.startswith("full ")]
    strips = [u for u, alt in jpegs if not alt.startswith(("edges ", "full "))]
    assert len(plots) == 8
    # random sample + every flagged sample, and each once more in the per-group sheets
    # (one foreground source, one background source, all fine, no harmonizer: no sheets)
    assert len(strips) == 6 + len(expected)
    # edge views of the random sample and of the flagged records (each record once), each
    # with its full-size lightbox
    summary = json.loads((report_dir / "summary.json").read_text())
    assert len(edges) == len(full) == len({*summary["sample_keys"], *expected})
    for uri in plots + strips + edges + full:  # every embedded image decodes
        img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
        img.load()
        assert img.width > 50 and img.height > 50
    for key in expected:
        assert key in html
    for section in ("counts", "flags", "edges", "plots", "groups", "sample", "flagged", "shards",
                    "rejects"):  # fmt: skip
        assert f"<section id={section}>" in html


def test_html_renders_in_headless_chromium(planted, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (CI installs it: apt-get install chromium)")
    _, _, report_dir = planted
    shot = tmp_path / "report.png"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chrome'}",
        f"--screenshot={shot}",
        "--window-size=1280,4200",
        (report_dir / "report.html").resolve().as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("RGB")).astype(np.float64)
    assert img.shape[:2] == (4200, 1280)
    assert img.std() > 20  # not blank
    # plots and contact sheets are images: coloured (non-grey) pixels across the page
    sat = img.max(axis=2) - img.min(axis=2)
    bands = [(sat[y : y + 600] > 40).mean() for y in range(0, 4200, 600)]
    assert sum(b > 0.01 for b in bands) >= 4, bands
