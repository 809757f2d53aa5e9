"""QA: pure analysis, hashes, planted defects flagged exactly, fail-on rules, CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_qa_data import (
    H,
    W,
    clean_dataset,
    clean_sample,
    composite,
    defect_dataset,
    soft_ellipse,
    write_dataset,
)

from matdata.errors import ConfigError
from matdata.qa import Thresholds, check_fail_on, parse_rule, write_report
from matdata.qa.analysis import (
    alpha_stats,
    border_cut_sides,
    record_flags,
    record_stats,
    srgb_to_lab,
)
from matdata.qa.phash import dhash, hamming, near_duplicate_groups, phash
from matdata.qa.scan import sample_plan
from matdata.shards import ShardInfo
from pipelines.qa import run_qa


def _flags(report) -> dict[str, set[str]]:
    return {r["key"]: {f["flag"] for f in r["flags"]} for r in report.rows if r["flags"]}


# ------------------------------------------------------------------------- pure analysis


def test_alpha_stats_values():
    a = np.zeros((10, 20), np.uint8)
    a[2:6, 0:5] = 255
    a[6, 0:5] = 100  # semi-transparent row
    s = alpha_stats(a)
    assert s["fg_area"] == pytest.approx(20 / 200)
    assert s["semi_share"] == pytest.approx(5 / 200)
    assert s["coverage"] == pytest.approx((20 * 255 + 5 * 100) / 255 / 200)
    assert (s["bbox_w"], s["bbox_h"]) == (pytest.approx(5 / 20), pytest.approx(5 / 10))
    assert (s["bbox_cx"], s["bbox_cy"]) == (pytest.approx(2.5 / 20), pytest.approx(4.5 / 10))
    assert s["touches"] == ["left"]
    empty = alpha_stats(np.zeros((4, 4), np.uint8))
    assert empty["touches"] == [] and empty["bbox_w"] == 0 and empty["alpha_max"] == 0


def test_lab_reference_colours():
    lab = srgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]]))
    assert lab[0] == pytest.approx([100, 0, 0], abs=0.05)
    assert lab[1] == pytest.approx([0, 0, 0], abs=1e-6)
    assert lab[2] == pytest.approx([53.24, 80.09, 67.20], abs=0.05)  # CIE red, D65


def test_record_flags_each_rule():
    meta = clean_sample(0)["meta"]
    alpha = soft_ellipse(32, 40, 16, 24)
    img = np.full((H, W, 3), 90, np.uint8)
    stats, mism = record_stats(img, alpha)
    assert mism == [] and record_flags(stats, meta) == []
    assert stats["trimap_stored"] is False and 0 < stats["unknown_share"] < 0.5
    names = lambda a, m=meta: {f.name for f in record_flags(record_stats(img, a)[0], m)}  # noqa: E731
    assert names(np.zeros((H, W), np.uint8)) == {"empty_alpha"}
    assert names(np.full((H, W), 255, np.uint8)) == {"full_alpha"}
    assert names(np.where(alpha > 127, 255, 0).astype(np.uint8)) == {"no_semi_transparent"}
    coarse = {**meta, "coarse": True}
    assert names(np.where(alpha > 127, 255, 0).astype(np.uint8), coarse) == set()
    assert names(soft_ellipse(30, 40, 2, 3)) == {"tiny_fg"}
    _, mism = record_stats(img, alpha[:40])
    assert [f.name for f in mism] == ["size_mismatch"]
    # thresholds are parameters
    s = record_stats(img, soft_ellipse(30, 40, 2, 3))[0]
    assert record_flags(s, meta, Thresholds(tiny_fg=0.0)) == []


def test_border_cut_rules():
    params = {"out_size": [64, 80], "fg_scaled_size": [40, 60], "fg_offset": [-5, 30]}
    meta = {"params": params}
    # left pushed out and touched -> cut; bottom pushed out -> exempt by convention
    assert border_cut_sides(["left", "bottom"], meta) == ["left"]
    assert border_cut_sides(["right"], meta) == []  # touching, but not pushed out there
    # recorded source contact wins over the placement rule
    assert border_cut_sides(["left", "bottom"], {**meta, "fg": {"touches": ["left"]}}) == ["bottom"]
    assert border_cut_sides(["left"], {}) == []  # nothing recorded: nothing said


def test_harmonization_stats_flag_bg_and_colour():
    s = clean_sample(3)
    raw = composite(s["alpha"], s["bg"], s["color"])
    a = s["alpha"][..., None] / 255.0
    meta = s["meta"]

    def flags(bg_shift: float, fg_shift: tuple[float, float, float]) -> set[str]:
        img = np.clip(raw + a * np.array(fg_shift) + (1 - a) * bg_shift, 0, 255)
        img = img.astype(np.uint8)
        st, _ = record_stats(img, s["alpha"], image_raw=raw)
        return {f.name for f in record_flags(st, meta)}

    assert flags(0, (10, 10, 10)) == set()
    assert flags(30, (10, 10, 10)) == {"bg_changed"}
    assert flags(0, (90, -40, -90)) == {"color_shift"}


def _random_matte(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Soft ellipses placed anywhere (often cut by a side), sometimes binary or empty."""
    a = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(0, 3))):
        cx, cy = rng.uniform(-0.2, 1.2) * w, rng.uniform(-0.2, 1.2) * h
        rx, ry = rng.uniform(2, w), rng.uniform(2, h)
        a = np.maximum(a, soft_ellipse(cx, cy, rx, ry, w, h))
    return np.where(a > 127, 255, 0).astype(np.uint8) if rng.random() < 0.2 else a


def test_fast_stats_equal_their_plain_definitions():
    import cv2

    from matdata.qa.analysis import harmonization_stats, trimap_of, unknown_share
    from matdata.trimap import make_trimap

    rng = np.random.default_rng(7)
    for i in range(40):  # band radius 1 to 4 (the sides up to 400)
        h, w = (int(v) for v in rng.integers(1, 90 if i % 2 else 400, 2))
        a = _random_matte(rng, h, w)
        n = a.size
        s = alpha_stats(a)
        assert (s["alpha_min"], s["alpha_max"]) == (int(a.min()), int(a.max()))
        assert s["coverage"] == int(a.sum()) / 255.0 / n
        assert s["fg_area"] == np.count_nonzero(a >= 128) / n
        assert s["semi_share"] == np.count_nonzero((a > 0) & (a < 255)) / n
        ys, xs = np.nonzero(a)
        box = (
            [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
            if ys.size
            else None
        )
        assert s["bbox"] == box
        # the unknown band on the bbox window only == make_trimap on the whole image
        tri = make_trimap(a)
        assert np.array_equal(trimap_of(a, s["bbox"]), tri)
        assert unknown_share(a, s["bbox"]) == np.count_nonzero(tri == 128) / n
        # harmonization stats from masked integer sums (RGB or BGR) == numpy means
        img, raw = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        k = np.ones((17, 17), np.uint8)
        bg = cv2.erode((a == 0).astype(np.uint8), k, borderType=cv2.BORDER_CONSTANT,
                       borderValue=1).astype(bool)  # fmt: skip
        diff = np.abs(img.astype(np.int16) - raw).astype(np.uint8)
        fg = a >= 128
        ref = {"bg_diff": float(diff[bg].mean()) if bg.any() else None, "color_shift": None}
        if fg.any():
            lab1, lab0 = (srgb_to_lab(x[fg].mean(axis=0)) for x in (img, raw))
            ref["color_shift"] = float(np.linalg.norm(lab1 - lab0))
        assert harmonization_stats(img, raw, a) == ref
        assert harmonization_stats(img[..., ::-1], raw[..., ::-1], a, bgr=True) == ref


def test_scan_rows_equal_full_decode_rows(defects):
    """The scan decodes composites in BGR and takes the hashes' luma from that decode: its
    rows equal stats and hashes from full RGB decodes."""
    from matdata.errors import MatdataError
    from matdata.qa.phash import image_hashes
    from matdata.qa.scan import analyze_record
    from matdata.schema import decode_record
    from matdata.shards import iter_records

    ds, _ = defects
    checked = harmonized = 0
    for rec in iter_records(str(ds)):
        try:
            d = decode_record(rec)
        except MatdataError:
            continue  # the planted undecodable record
        row, _ = analyze_record(rec, Thresholds())
        stats, _ = record_stats(d.image, d.alpha, trimap=d.trimap, image_raw=d.image_raw)
        assert {k: row[k] for k in stats} == stats, rec.key
        assert (row["phash"], row["dhash"]) == image_hashes(d.image), rec.key
        checked += 1
        harmonized += d.image_raw is not None
    assert checked >= 25 and harmonized == 3


def test_contact_strips_first_and_second_pass(defects):
    """Strips of sampled records: composite | alpha | trimap (| image_raw), 96 px high,
    the same bytes whether made during the scan or by the second pass."""
    import io

    import cv2
    from PIL import Image

    from matdata.qa.scan import scan_shard, shard_strips
    from matdata.shards import list_shards

    ds, _ = defects
    shard = next(s for s in list_shards(str(ds)) if s.split == "train")
    threads = cv2.getNumThreads()
    res = scan_shard(str(ds), shard, sample=range(shard.samples), max_flag_thumbs=0)
    assert cv2.getNumThreads() == threads  # OpenCV's pool is only off during the scan
    keys = [r["key"] for r in res.rows if r["phash"] is not None]
    assert set(res.thumbs) == set(keys)
    widths = {}
    for key in keys:
        with Image.open(io.BytesIO(res.thumbs[key])) as im:
            assert im.format == "JPEG" and im.height == 96 + 4
            widths[key] = im.width
    # 64 x 80 panels are 77 + 4 wide, 4 px apart: 3 panels, 4 with image_raw
    assert {widths[k] for k in keys if not k.startswith("harm")} == {3 * 81 + 2 * 4}
    assert {widths[k] for k in ("harm_ok", "harm_bg", "harm_col")} == {4 * 81 + 3 * 4}
    again = shard_strips(str(ds), shard, ["ok01", "harm_bg", "broken", "sizemis"])
    assert again == {k: res.thumbs[k] for k in ("ok01", "harm_bg", "sizemis")}


# ---------------------------------------------------------------------------- hashing


def test_hashes_stable_under_jpeg_and_distinct_across_images():
    from matdata.imageio import encode_jpeg, fast_decode_jpeg

    a = composite(soft_ellipse(32, 40, 16, 24), clean_sample(1)["bg"], (200, 40, 40))
    b = composite(soft_ellipse(30, 42, 16, 24), clean_sample(2)["bg"], (40, 200, 40))
    a_jpeg = fast_decode_jpeg(encode_jpeg(a, 70))
    assert hamming(phash(a), phash(a_jpeg)) <= 2 and hamming(dhash(a), dhash(a_jpeg)) <= 4
    assert hamming(phash(a), phash(b)) > 10
    assert 0 <= phash(a) < 2**64 and 0 <= dhash(a) < 2**64
    # a noisy 600x800 photo-sized image survives a q60 re-encode within the thresholds
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:800, 0:600] / 600
    big = 127 + 100 * np.sin(6.28 * (2.3 * xx + 1.7 * yy))[..., None] * [1, 0.5, -0.7]
    big = np.clip(big + rng.normal(0, 12, big.shape), 0, 255).astype(np.uint8)
    again = fast_decode_jpeg(encode_jpeg(big, 60))
    th = Thresholds()
    assert hamming(phash(big), phash(again)) <= th.dup_phash
    assert hamming(dhash(big), dhash(again)) <= th.dup_dhash


def test_near_duplicate_groups_matches_brute_force():
    rng = random.Random(0)
    base = [rng.getrandbits(64) for _ in range(60)]
    ph, dh = [], []
    for i in range(200):  # near copies of a few bases, plus exact copies
        b = base[i % 60]
        for _ in range(rng.randrange(0, 7)):
            b ^= 1 << rng.randrange(64)
        ph.append(b)
        dh.append(base[i % 60] if i % 7 else base[i % 60] ^ 0xFFFF)
    groups = near_duplicate_groups(ph, dh, 4, 8)
    parent = list(range(len(ph)))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(ph)):
        for j in range(i + 1, len(ph)):
            if hamming(ph[i], ph[j]) <= 4 and hamming(dh[i], dh[j]) <= 8:
                parent[find(j)] = find(i)
    expect: dict[int, list[int]] = {}
    for i in range(len(ph)):
        expect.setdefault(find(i), []).append(i)
    assert sorted(map(sorted, groups)) == sorted(g for g in expect.values() if len(g) > 1)
    # many identical blank frames collapse quickly into one group
    assert near_duplicate_groups([0] * 5000, [0] * 5000) == [list(range(5000))]


def test_sample_plan_uniform_and_deterministic():
    shards = [ShardInfo(f"p/{i}", "train", "parquet", i, n, 0, "") for i, n in enumerate([5, 0, 7])]
    plan = sample_plan(shards, 6, seed=3)
    assert plan == sample_plan(shards, 6, seed=3)
    assert sum(map(len, plan.values())) == 6 and plan["p/1"] == []
    assert all(0 <= i < 5 for i in plan["p/0"]) and all(0 <= i < 7 for i in plan["p/2"])
    assert sum(map(len, sample_plan(shards, 100).values())) == 12


# -------------------------------------------------------------------------- fail-on


def test_fail_on_rules():
    assert parse_rule("flagged>1%") == ("flagged_pct", 1.0)
    assert parse_rule("flagged > 2.5%") == ("flagged_pct", 2.5)
    assert parse_rule("flagged>3") == ("flagged_n", 3.0)
    assert parse_rule("duplicates") == ("flag", "duplicate")
    assert parse_rule("tiny_fg") == ("flag", "tiny_fg")
    with pytest.raises(ConfigError):
        parse_rule("flagged<1%")
    with pytest.raises(ConfigError):
        parse_rule("nonsense")
    summary = {
        "flags": {"samples_flagged": 2, "share_flagged": 0.02, "by_flag": {"duplicate": 2}},
        "shard_problems": [],
    }
    assert check_fail_on(summary, ["leakage", "checksum", "flagged>5%", "flagged>2"]) == []
    hit = check_fail_on(summary, ["duplicates", "flagged>1%", "flagged>1"])
    assert len(hit) == 3 and hit[0].startswith("duplicates")
    summary["shard_problems"] = [{"shard": "s", "flag": "missing_shard", "reason": "gone"}]
    assert check_fail_on(summary, ["checksum"]) and check_fail_on(summary, ["missing_shard"])


# ------------------------------------------------------------------- planted defects


@pytest.fixture(scope="module")
def defects(tmp_path_factory) -> tuple[Path, dict[str, set[str]]]:
    return defect_dataset(tmp_path_factory.mktemp("qa") / "defects")


def test_clean_dataset_has_no_flags(tmp_path):
    from matdata.rejects import Reject, write_rejects

    ds = clean_dataset(tmp_path / "clean")
    rejects = [Reject("synth", f"f{i}.png", r, "", "build") for i, r in enumerate("aab")]
    write_rejects(str(ds / "rejects.parquet"), rejects)
    report = run_qa(str(ds), in_process=True, sample=5)
    assert len(report.rows) == 14
    assert _flags(report) == {} and report.shard_problems() == []
    assert len(report.sample_keys) == 5 and set(report.sample_keys) <= set(report.thumbs)
    summary = report.summary()
    assert summary["rejects"] == {"total": 3, "by_reason": {"a": 2, "b": 1}}
    assert summary["counts"]["by_bg_category"] == {"beach": 5, "street": 5, "room": 4}
    assert summary["metrics"]["coverage"]["n"] == 14
    assert summary["metrics"]["unknown_share"]["n"] == 14
    # the unknown band of records without a stored trimap: on a bounded random subset
    sub = run_qa(str(ds), in_process=True, sample=0, band_sample=6)
    assert sum(r["unknown_share"] is not None for r in sub.rows) == 6
    assert sub.sample_keys == [] and _flags(sub) == {}


def test_planted_defects_are_flagged_exactly(defects, tmp_path):
    ds, expected = defects
    report = run_qa(str(ds), in_process=True, sample=4)
    assert _flags(report) == expected
    summary = write_report(report, str(tmp_path / "rep"))
    on_disk = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert on_disk["flagged"] == summary["flagged"]
    assert {f["key"]: {x["flag"] for x in f["flags"]} for f in on_disk["flagged"]} == expected
    assert all(x["reason"] for f in on_disk["flagged"] for x in f["flags"])
    assert on_disk["shard_problems"] == [
        {
            "shard": "parquet/val-00001.parquet",
            "flag": "checksum_mismatch",
            "reason": "shard parquet/val-00001.parquet: sha256 mismatch",
        }
    ]
    assert sorted(map(sorted, on_disk["duplicate_groups"])) == [
        ["dupA", "dupB"],
        ["leakT", "leakV"],
    ]
    assert on_disk["counts"]["by_harmonizer"] == {"(none)": len(report.rows) - 3, "reinhard": 3}
    assert on_disk["counts"]["by_kind"]["coarse"] == 1
    # every flagged record that decodes has a contact-sheet strip (second pass included)
    decodable = {r["key"] for r in report.flagged if r["phash"] is not None}
    assert decodable <= set(report.thumbs)
    lines = (tmp_path / "rep" / "records.jsonl").read_text().splitlines()
    assert len(lines) == len(report.rows) == on_disk["counts"]["samples"]


def test_dask_cluster_gives_same_flags(defects):
    ds, expected = defects
    seen = []
    report = run_qa(str(ds), workers=2, sample=4, progress=lambda r, s: seen.append((r, s)))
    assert _flags(report) == expected
    assert sum(r for r, _ in seen) == len(report.rows) and sum(s for _, s in seen) == 3
    local = run_qa(str(ds), in_process=True, sample=4)
    assert report.sample_keys == local.sample_keys


def test_missing_and_corrupt_shards(tmp_path):
    ds = clean_dataset(tmp_path / "c")
    (ds / "parquet" / "val-00000.parquet").write_bytes(b"PAR1 garbage")
    report = run_qa(str(ds), in_process=True)
    probs = {p["flag"] for p in report.shard_problems()}
    assert probs == {"checksum_mismatch", "unreadable_shard"}
    assert {r["split"] for r in report.rows} == {"train"}  # val records could not be read
    (ds / "parquet" / "val-00000.parquet").unlink()
    report = run_qa(str(ds), in_process=True)
    assert [p["flag"] for p in report.shard_problems()] == ["missing_shard"]
    assert check_fail_on(report.summary(), ["checksum"])


def test_scan_reads_each_shard_once(tmp_path, monkeypatch):
    """The shard's sha256 is taken while its records stream (no separate hashing read);
    a shard of the recorded size with other bytes still gets the shard flag, and every
    record read from it the record flag, as when the mismatch is known up front."""
    import matdata.storage
    from matdata.qa.scan import scan_shard
    from matdata.shards import list_shards

    ds = clean_dataset(tmp_path / "c", n_train=6, n_val=2)
    hashed = []
    real = matdata.storage.sha256_file
    monkeypatch.setattr(
        matdata.storage, "sha256_file", lambda *a, **kw: hashed.append(a) or real(*a, **kw)
    )
    shard = next(s for s in list_shards(str(ds)) if s.split == "train")
    res = scan_shard(str(ds), shard, sample=[0])
    assert hashed == [] and res.problems == [] and res.records == 6
    assert not any(r["flags"] for r in res.rows)
    path = ds / shard.path
    data = bytearray(path.read_bytes())
    at = data.rindex(b"\xff\xd8\xff")  # the start of a JPEG
    data[at + 200] ^= 0x55  # inside its entropy-coded data: same size, other bytes
    path.write_bytes(bytes(data))
    bad = scan_shard(str(ds), shard, sample=[0])
    reason = f"shard {shard.path}: sha256 mismatch"
    assert hashed == [] and bad.records == 6
    assert bad.problems == [{"flag": "checksum_mismatch", "reason": reason}]
    assert all({"flag": "checksum_mismatch", "reason": reason} in r["flags"] for r in bad.rows)
    assert [r["key"] for r in bad.rows] == [r["key"] for r in res.rows]


def test_webdataset_scan_and_hash_only_shards(tmp_path):
    both = clean_dataset(tmp_path / "both", formats=("parquet", "webdataset"))
    index = json.loads((both / "dataset.json").read_text())
    for d in index["shards"]:
        if d["path"] == "webdataset/val-000000.tar":
            d["sha256"] = "f" * 64
    (both / "dataset.json").write_text(json.dumps(index))
    report = run_qa(str(both), in_process=True, sample=2)
    # Parquet is scanned; the tar is only re-hashed: a shard problem, no record flag
    assert _flags(report) == {}
    assert [(p["shard"], p["flag"]) for p in report.shard_problems()] == [
        ("webdataset/val-000000.tar", "checksum_mismatch")
    ]
    scanned = {s["path"]: s["scanned"] for s in report.shards}
    assert scanned["parquet/val-00000.parquet"] and not scanned["webdataset/val-000000.tar"]
    # a WebDataset-only dataset is scanned from its tars, with the same flags
    s = clean_sample(7)
    s["alpha"] = np.zeros((H, W), np.uint8)
    wds = write_dataset(
        tmp_path / "wds",
        {("train", 0): [("a", clean_sample(5)), ("b", s), ("c", clean_sample(6))]},
        formats=("webdataset",),
    )
    report = run_qa(str(wds), in_process=True, sample=1)
    assert _flags(report) == {"b": {"empty_alpha"}}
    assert [r["key"] for r in report.rows] == ["a", "b", "c"]


# ------------------------------------------------------------------------------- CLI


def _cli(args: list[str]):
    from typer.testing import CliRunner

    from matdata.cli import app

    return CliRunner().invoke(app, args)


def test_cli_qa_fail_on(defects, tmp_path):
    ds, expected = defects
    clean = clean_dataset(tmp_path / "clean")
    r = _cli(["qa", str(clean), "--out", str(tmp_path / "r1"), "--in-process", "--no-progress",
              "--fail-on", "duplicates", "--fail-on", "leakage", "--fail-on", "checksum",
              "--fail-on", "flagged>1%"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r1" / "report.html").exists() and "flagged" in r.output
    r = _cli(["qa", str(ds), "--out", str(tmp_path / "r2"), "--in-process", "--no-progress",
              "--fail-on", "leakage", "--fail-on", "flagged>90%"])  # fmt: skip
    assert r.exit_code == 1
    assert "qa failed" in r.output and "leakage: 6 x leakage" in r.output
    assert "flagged>90%" not in r.output  # only triggered rules are named
    r = _cli(["qa", str(ds), "--out", str(tmp_path / "r3"), "--fail-on", "bogus"])
    assert r.exit_code != 0 and isinstance(r.exception, ConfigError)
    assert not (tmp_path / "r3").exists()  # rejected before any work


def test_cli_inspect_and_verify(defects, tmp_path):
    ds, _ = defects
    r = _cli(["inspect", str(ds)])
    assert r.exit_code == 0, r.output
    assert "split val" in r.output and "synthetic QA test set" in r.output
    r = _cli(["verify", str(ds)])
    assert r.exit_code == 1 and "val-00001.parquet: sha256 mismatch" in r.output
    clean = clean_dataset(tmp_path / "clean")
    r = _cli(["verify", str(clean)])
    assert r.exit_code == 0 and "2 shards match" in r.output


@settings(max_examples=20, deadline=None)
@given(h=st.integers(8, 200), w=st.integers(8, 200), seed=st.integers(0, 1000))
def test_edge_views_of_any_size(h, w, seed):
    """Edge sheets of images of any size, odd crop sides included: 1:1 row over the zoom
    row, both as wide as three crops; the crop lies inside the image."""
    from matdata.qa.edges import edge_sheet, record_views

    rng = np.random.default_rng(seed)
    alpha = soft_ellipse(w / 2, h / 2, max(2.0, w / 3), max(2.0, h / 3), w=w, h=h)
    image = rng.integers(0, 256, (h, w, 3), np.uint8)
    sheet, names, _, (x, y, s) = edge_sheet(image, alpha)
    assert s == min(160, h, w) and 0 <= x <= w - s and 0 <= y <= h - s
    assert names == ["composite", "fg/grey", "alpha"]
    assert sheet.shape == (2 * s + 4, 3 * s + 8, 3)
    assert record_views(image, alpha) is not None
