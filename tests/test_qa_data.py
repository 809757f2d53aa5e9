"""Synthetic datasets with planted defects for the QA tests (written with ShardWriter)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from matdata.imageio import encode_jpeg, encode_png
from matdata.schema import Record
from matdata.shards import ShardWriter, write_index

W, H = 64, 80
CATEGORIES = ("street", "beach", "room")


def soft_ellipse(cx: float, cy: float, rx: float, ry: float, w: int = W, h: int = H) -> np.ndarray:
    """uint8 alpha of an ellipse with a ~3 px soft edge."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    d = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    a = np.clip((1.0 - d) * min(rx, ry) / 3.0 + 0.5, 0, 1)
    return np.rint(a * 255).astype(np.uint8)


def scene(seed: int, w: int = W, h: int = H) -> np.ndarray:
    """A distinct smooth-but-structured RGB background per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        for _ in range(3):
            fx, fy = rng.uniform(0.5, 4, 2) * 2 * np.pi / np.array([w, h])
            img[..., c] += rng.uniform(20, 60) * np.sin(fx * xx + fy * yy + rng.uniform(0, 6.3))
        img[..., c] += rng.uniform(70, 180)
    return np.clip(img, 0, 255).astype(np.uint8)


def composite(alpha: np.ndarray, bg: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    a = alpha.astype(np.float64)[..., None] / 255
    return np.rint(a * np.array(color, np.float64) + (1 - a) * bg).astype(np.uint8)


def clean_sample(i: int, split: str = "train", **kw: Any) -> dict[str, Any]:
    """Arrays + meta of one defect-free sample (a soft ellipse inside the frame)."""
    rng = np.random.default_rng(1000 + i)
    alpha = soft_ellipse(W / 2 + rng.uniform(-6, 6), H / 2 + rng.uniform(-6, 6), 16, 24)
    bg = scene(i)
    color = tuple(int(c) for c in rng.integers(30, 220, 3))
    meta = {
        "split": split,
        "fg": {"source": "synth", "id": f"fg{i:03d}", "coarse": False},
        "bg": {
            "source": "synth",
            "id": f"bg{i:03d}",
            "category": ["street", "beach", "room"][i % 3],
        },
        "seed": i,
        "params": {"out_size": [W, H], "fg_scaled_size": [40, 60], "fg_offset": [12, 10]},
    }
    return {"alpha": alpha, "bg": bg, "color": color, "meta": meta, **kw}


def to_record(key: str, s: dict[str, Any]) -> Record:
    image = s.get("image")
    if image is None:
        image = composite(s["alpha"], s["bg"], s["color"])
    img_bytes = s.get("image_bytes") or encode_jpeg(image, 95)
    raw = s.get("image_raw")
    return Record(
        key=key,
        image=img_bytes,
        alpha=encode_png(s["alpha"]),
        trimap=encode_png(s["trimap"]) if s.get("trimap") is not None else None,
        image_raw=encode_jpeg(raw, 95) if raw is not None else None,
        meta=s["meta"],
    )


def write_dataset(
    root: Path,
    shards: dict[tuple[str, int], list[tuple[str, dict]]],
    formats: tuple[str, ...] = ("parquet",),
) -> Path:
    """Write ``{(split, index): [(key, sample)]}`` as shards + dataset.json."""
    infos = []
    for (split, idx), items in sorted(shards.items()):
        w = ShardWriter(str(root), split, idx, formats=formats)
        for key, s in items:
            w.write(to_record(key, s))
        infos += w.close()
    write_index(
        str(root),
        infos,
        config={"size": [W, H], "note": "synthetic QA test set"},
        sources={"fg": {"name": "synth"}, "bg": {"name": "synth"}},
        rejects={"total": 0},
    )
    return root


def clean_dataset(
    root: Path, n_train: int = 10, n_val: int = 4, formats: tuple[str, ...] = ("parquet",)
) -> Path:
    shards = {
        ("train", 0): [(f"tr{i:03d}", clean_sample(i)) for i in range(n_train)],
        ("val", 0): [(f"va{i:03d}", clean_sample(100 + i, "val")) for i in range(n_val)],
    }
    return write_dataset(root, shards, formats)


def defect_dataset(root: Path) -> tuple[Path, dict[str, set[str]]]:
    """A dataset where each defect is planted in known samples; returns the expected flags."""
    train: list[tuple[str, dict]] = [(f"ok{i:02d}", clean_sample(i)) for i in range(6)]
    expected: dict[str, set[str]] = {}

    def plant(key: str, s: dict[str, Any], flags: set[str], bucket: list = train) -> None:
        bucket.append((key, s))
        expected[key] = flags

    s = clean_sample(20)
    s["alpha"] = np.zeros((H, W), np.uint8)
    plant("empty", s, {"empty_alpha"})
    s = clean_sample(21)
    s["alpha"] = np.full((H, W), 255, np.uint8)
    plant("full", s, {"full_alpha"})
    s = clean_sample(22)
    s["alpha"] = np.where(s["alpha"] >= 128, 255, 0).astype(np.uint8)
    plant("binary", s, {"no_semi_transparent"})
    s = clean_sample(23)
    s["meta"]["fg"]["coarse"] = True  # a coarse mask may be binary: not flagged
    s["alpha"] = np.where(s["alpha"] >= 128, 255, 0).astype(np.uint8)
    train.append(("coarse_ok", s))
    s = clean_sample(24)
    s["alpha"] = soft_ellipse(30, 40, 3, 4)
    plant("tiny", s, {"tiny_fg"})
    s = clean_sample(25)
    s["alpha"] = soft_ellipse(8, 40, 16, 24)  # touches the left side ...
    s["meta"]["params"] = {"out_size": [W, H], "fg_scaled_size": [40, 60], "fg_offset": [-12, 10]}
    plant("cut", s, {"fg_cut_by_border"})  # ... which the placement pushed past the frame
    s = clean_sample(26)
    s["alpha"] = soft_ellipse(32, 70, 16, 24)  # touches the bottom: exempt by convention
    s["meta"]["params"] = {"out_size": [W, H], "fg_scaled_size": [40, 60], "fg_offset": [12, 40]}
    train.append(("bottom_ok", s))
    s = clean_sample(27)
    s["alpha"] = soft_ellipse(8, 40, 16, 24)  # touches left, source touched left too
    s["meta"]["fg"]["touches"] = ["left"]
    train.append(("touch_ok", s))
    s = clean_sample(28)
    s["image"] = composite(s["alpha"], s["bg"], s["color"])[:40, :32]
    plant("sizemis", s, {"size_mismatch"})
    s = clean_sample(29)
    s["image_bytes"] = b"\xff\xd8\xff\xe0 this is not a jpeg"
    plant("broken", s, {"undecodable"})
    # duplicates: same picture under two keys in train, and across train / val (leakage)
    d = clean_sample(30)
    plant("dupA", d, {"duplicate"})
    d2 = clean_sample(31)
    d2.update(alpha=d["alpha"], bg=d["bg"], color=d["color"])
    plant("dupB", d2, {"duplicate"})
    val: list[tuple[str, dict]] = [(f"vok{i:02d}", clean_sample(200 + i, "val")) for i in range(3)]
    lk = clean_sample(32)
    plant("leakT", lk, {"duplicate", "leakage"})
    lv = clean_sample(33, "val")
    lv.update(alpha=lk["alpha"], bg=lk["bg"], color=lk["color"])
    plant("leakV", lv, {"duplicate", "leakage"}, val)
    # the same source foreground in two splits (different composites)
    f1 = clean_sample(34)
    f2 = clean_sample(35, "val")
    f2["meta"]["fg"]["id"] = f1["meta"]["fg"]["id"]
    plant("fgT", f1, {"leakage"})
    plant("fgV", f2, {"leakage"}, val)
    # the same foreground group (e.g. one person, several photos) in two splits
    g1, g2 = clean_sample(36), clean_sample(37, "val")
    g1["meta"]["fg"]["group"] = g2["meta"]["fg"]["group"] = "person-7"
    plant("grT", g1, {"leakage"})
    plant("grV", g2, {"leakage"}, val)
    # harmonized samples: clean, background changed, extreme colour shift
    for j, (key, bg_shift, fg_shift, flags) in enumerate(
        (
            ("harm_ok", 0, (12, 12, 12), set()),
            ("harm_bg", 40, (12, 12, 12), {"bg_changed"}),
            ("harm_col", 0, (90, -40, -90), {"color_shift"}),
        )
    ):
        s = clean_sample(40 + j)
        raw = composite(s["alpha"], s["bg"], s["color"])
        a = s["alpha"].astype(np.float64)[..., None] / 255
        img = raw.astype(np.float64) + a * np.array(fg_shift) + (1 - a) * bg_shift
        s["image"] = np.clip(img, 0, 255).astype(np.uint8)
        s["image_raw"] = raw
        s["meta"]["harmonize"] = {"model": "reinhard"}
        if flags:
            plant(key, s, flags)
        else:
            train.append((key, s))
    # a shard whose bytes do not match dataset.json: every record in it is flagged
    bad = [(f"cs{i}", clean_sample(60 + i, "val")) for i in range(2)]
    for key, _ in bad:
        expected[key] = {"checksum_mismatch"}
    write_dataset(root, {("train", 0): train, ("val", 0): val, ("val", 1): bad})
    idx_path = root / "dataset.json"
    index = json.loads(idx_path.read_text())
    for d in index["shards"]:
        if d["path"].endswith("val-00001.parquet"):
            d["sha256"] = "0" * 64
    idx_path.write_text(json.dumps(index, indent=2, sort_keys=True))
    return root, expected
