"""A hostile-input corpus, generated here, run through the commands as users run them.

Every case goes through ``python -m matdata ingest`` / ``build`` in a subprocess (wrapped
by a tiny parent that reports the command's peak RSS).  For every run: no traceback, no
file written outside the output and the catalog, ``used + rejected == found``; the bombs
(zlib, declared pixel counts, absurd claimed sizes) stay under a memory bound.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from matdata.imageio import encode_jpeg, encode_png

#: Peak RSS (MiB) a command may reach on the bomb cases: the interpreter and its imports
#: take ~200-300 MiB; any of the bombs, decoded, takes gigabytes.
MEM_BOUND_MB = 900
#: The same for ``train`` (torch and a model loaded; the PNG bomb alone decodes to 900 MB).
TRAIN_MEM_BOUND_MB = 1400
W, H = 40, 32  # size of the corpus images

WRAPPER = (
    "import resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(r.returncode)\n"
)


def _run(tmp: Path, *args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """``python -m matdata ARGS`` in a subprocess; returns the result and its peak RSS
    in MiB."""
    fd, name = tempfile.mkstemp(prefix="peak-", dir=tmp.parent)  # outside the corpus
    os.close(fd)
    peak = Path(name)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), COLUMNS="200")
    r = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(peak), sys.executable, "-m", "matdata", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=env,
    )
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-3000:]
    kib = int(peak.read_text())
    peak.unlink()
    return r, kib / 1024


def _snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, tuple[int, float]]:
    """Every file under ``root`` (but under ``skip``) with its size and mtime."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = [n for n in dirnames if d / n not in skip]
        for n in filenames:
            p = d / n
            st = p.lstat()
            out[os.fsdecode(bytes(p))] = (st.st_size, st.st_mtime)
    return out


# ------------------------------------------------------------------------------ corpus


def _jpeg(seed: int, w: int = W, h: int = H) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_jpeg(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), 90)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@functools.lru_cache(maxsize=2)
def png_pixel_bomb(side: int = 30000) -> bytes:
    """A valid 1-bit grayscale PNG of ``side`` x ``side`` zeros (~100 KB for 30000^2):
    decoded to 8-bit it is ``side^2`` bytes (900 MB)."""
    row = b"\0" * (1 + (side + 7) // 8)
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


def zlib_bomb(head: bytes, mb: int = 512) -> str:
    """base64(zlib(head + ``mb`` MB of zeros)), built in 1 MB steps (~0.5 MB of output)."""
    z = zlib.compressobj(9)
    zero = b"\0" * (1 << 20)
    parts = [z.compress(head)] + [z.compress(zero) for _ in range(mb)] + [z.flush()]
    return base64.b64encode(b"".join(parts)).decode()


def _png_head(w: int, h: int) -> bytes:
    """The first bytes of an 8-bit RGBA PNG of ``w`` x ``h`` (signature + IHDR)."""
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))


def _bitmap(mask: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(encode_png(mask.astype(np.uint8) * 255))).decode()


def _ann(objects, size=(H, W), **extra) -> dict:
    return {"size": {"height": size[0], "width": size[1]}, "tags": [], "objects": objects, **extra}


def _poly(ext, interior=None, cls="person"):
    pts = {"exterior": ext, "interior": [] if interior is None else interior}
    return {"classTitle": cls, "geometryType": "polygon", "points": pts}


SQUARE = [[5, 5], [30, 5], [30, 25], [5, 25]]
GOOD_BITMAP = {
    "classTitle": "person",
    "geometryType": "bitmap",
    "bitmap": {"origin": [2, 3], "data": _bitmap(np.ones((10, 12), bool))},
}


def supervisely_cases() -> dict[str, tuple[bytes | str, str, bool]]:
    """name -> (annotation file text or bytes, expected outcome, is a memory bomb).
    Outcome: a reject reason, or ``"used"``."""
    j = json.dumps
    big = 10**12
    cases: dict[str, tuple[bytes | str, str, bool]] = {
        "control_polygon": (j(_ann([_poly(SQUARE)])), "used", False),
        "control_bitmap": (j(_ann([GOOD_BITMAP])), "used", False),
        # the seven shapes that crashed the whole ingest
        "origin_infinity": (
            j(_ann([{**GOOD_BITMAP, "bitmap": {**GOOD_BITMAP["bitmap"], "origin": [1e400, 0]}}])),
            "bad_annotation",
            False,
        ),
        "points_as_list": (
            j(_ann([{"classTitle": "p", "geometryType": "polygon", "points": SQUARE}])),
            "bad_annotation",
            False,
        ),
        "interior_5": (j(_ann([_poly(SQUARE, interior=5)])), "bad_annotation", False),
        "string_coords": (
            j(_ann([_poly([["a", "b"], ["c", "d"], ["e", "f"]])])),
            "bad_annotation",
            False,
        ),
        "numeric_string_coords": (
            j(_ann([_poly([[str(x), str(y)] for x, y in SQUARE])])),
            "bad_annotation",
            False,
        ),
        "tags_5": (j({**_ann([_poly(SQUARE)]), "tags": 5}), "bad_annotation", False),
        "nested_100k": (
            '{"size": {"height": 32, "width": 40}, "objects": '
            + "[" * 100_000
            + "]" * 100_000
            + "}",
            "bad_annotation",
            False,
        ),
        "size_100000_squared": (
            j(_ann([_poly(SQUARE)], size=(100_000, 100_000))),
            "too_large",
            True,
        ),
        # a claimed size is compared with the image before anything is allocated
        "size_7000_squared": (j(_ann([_poly(SQUARE)], size=(7000, 7000))), "size_mismatch", True),
        # zlib bombs: 512 MB of zeros behind a PNG header of 10x10, and one declaring 30000^2
        "zlib_bomb_512mb": (
            j(
                _ann(
                    [
                        {
                            **GOOD_BITMAP,
                            "bitmap": {"origin": [0, 0], "data": zlib_bomb(_png_head(10, 10))},
                        }
                    ]
                )
            ),
            "bad_annotation",
            True,
        ),
        "zlib_bomb_declares_30000": (
            j(
                _ann(
                    [
                        {
                            **GOOD_BITMAP,
                            "bitmap": {
                                "origin": [0, 0],
                                "data": zlib_bomb(_png_head(30000, 30000), 64),
                            },
                        }
                    ]
                )
            ),
            "bad_annotation",
            True,
        ),
        "bitmap_not_png": (
            j(
                _ann(
                    [{**GOOD_BITMAP, "bitmap": {"origin": [0, 0], "data": zlib_bomb(b"GIF89a", 1)}}]
                )
            ),
            "bad_annotation",
            False,
        ),
        "bitmap_bad_base64": (
            j(_ann([{**GOOD_BITMAP, "bitmap": {"origin": [0, 0], "data": "@@@"}}])),
            "bad_annotation",
            False,
        ),
        "bitmap_data_number": (
            j(_ann([{**GOOD_BITMAP, "bitmap": {"origin": [0, 0], "data": 5}}])),
            "bad_annotation",
            False,
        ),
        "bitmap_origin_string": (
            j(_ann([{**GOOD_BITMAP, "bitmap": {**GOOD_BITMAP["bitmap"], "origin": "0,0"}}])),
            "bad_annotation",
            False,
        ),
        # NaN / Inf coordinates, as JSON literals and as overflowing numbers
        "nan_literal": (
            j(_ann([_poly([[5, 5], [float("nan"), 5], [30, 25]])])),
            "bad_annotation",
            False,
        ),
        "inf_overflow": (
            j(_ann([_poly(SQUARE)])).replace("[30, 5]", "[1e999, 5]"),
            "bad_annotation",
            False,
        ),
        # huge coordinates are clipped, not rasterized for a minute
        "huge_polygon": (
            j(_ann([_poly([[-big, -big], [big, -big], [big, big], [-big, big]])])),
            "used",
            False,
        ),
        "huge_polygon_hole": (
            j(_ann([_poly(SQUARE, interior=[[[10, 10], [3 * 10**9, 10], [20, 20]]])])),
            "used",
            False,
        ),
        "huge_rectangle": (
            j(
                _ann(
                    [
                        {
                            "classTitle": "p",
                            "geometryType": "rectangle",
                            "points": {"exterior": [[-1e12, 3], [1e12, 20]]},
                        }
                    ]
                )
            ),
            "used",
            False,
        ),
        "absurd_coords": (
            j(_ann([_poly([[-1e300, 0], [1e300, 0], [0, 1e300]])])),
            "bad_annotation",
            False,
        ),
        "two_point_polygon": (j(_ann([_poly([[0, 0], [9, 9]])])), "bad_annotation", False),
        "ragged_points": (j(_ann([_poly([[0, 0], [9], [9, 9, 9]])])), "bad_annotation", False),
        "bool_coords": (j(_ann([_poly([[True, False]] * 3)])), "bad_annotation", False),
        "objects_string": (j({**_ann([]), "objects": "x"}), "bad_annotation", False),
        "object_not_dict": (j(_ann([5])), "bad_annotation", False),
        "annotation_is_list": (j([1, 2]), "bad_annotation", False),
        "not_utf8": (b"\xff\xfe{}", "bad_annotation", False),
        "not_json": ("{size: 1", "bad_annotation", False),
        "size_strings": (
            j({**_ann([_poly(SQUARE)]), "size": {"height": "a", "width": "b"}}),
            "bad_annotation",
            False,
        ),
        "size_negative": (j(_ann([_poly(SQUARE)], size=(-32, 40))), "bad_annotation", False),
        "size_float_inf": (
            j(_ann([_poly(SQUARE)])).replace('"height": 32', '"height": 1e999'),
            "bad_annotation",
            False,
        ),
        "unknown_geometry": (
            j(_ann([{"classTitle": "p", "geometryType": "cuboid_3d"}])),
            "unsupported_geometry",
            False,
        ),
        "lone_surrogate_tag": (
            j({**_ann([_poly(SQUARE)]), "tags": ["\ud800"]}),
            "not_utf8",
            False,
        ),
        "empty_objects": (j(_ann([])), "empty_mask", False),
    }
    return cases


def make_supervisely(root: Path) -> dict[str, str]:
    """Write the corpus as a Supervisely project; returns image path -> expected outcome."""
    (root / "meta.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "meta.json").write_text('{"classes": []}')
    img, ann = root / "ds" / "img", root / "ds" / "ann"
    img.mkdir(parents=True)
    ann.mkdir(parents=True)
    expect: dict[str, str] = {}
    for i, (name, (text, outcome, _)) in enumerate(supervisely_cases().items()):
        (img / f"{name}.jpg").write_bytes(_jpeg(i))
        data = text.encode() if isinstance(text, str) else text
        (ann / f"{name}.jpg.json").write_bytes(data)
        expect[name] = outcome
    # images that are the problem: 30000^2 PNG bomb, truncated, a non-UTF-8 file name
    good = json.dumps(_ann([_poly(SQUARE)]))
    for name, data, outcome in (
        ("png_bomb_30000", png_pixel_bomb(), "too_large"),
        ("truncated_jpeg", _jpeg(99)[:300], "truncated"),
        ("text_as_jpeg", b"hello", "not_an_image"),
        ("empty_image", b"", "zero_size"),
    ):
        ext = ".png" if name.startswith("png") else ".jpg"
        (img / f"{name}{ext}").write_bytes(data)
        (ann / f"{name}{ext}.json").write_text(good)
        expect[name] = outcome
    bad = b"bad\xff"
    with open(bytes(img) + b"/" + bad + b".jpg", "wb") as f:
        f.write(_jpeg(123))
    with open(bytes(ann) + b"/" + bad + b".jpg.json", "wb") as f:
        f.write(good.encode())
    expect[os.fsdecode(bad)] = "bad_file_name"
    return expect


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    make_supervisely(root / "inputs" / "sly")
    # backgrounds, with a non-UTF-8 name and a pixel bomb among them
    bgs = root / "inputs" / "bg"
    bgs.mkdir(parents=True)
    for n in range(4):
        (bgs / f"bg{n}.jpg").write_bytes(_jpeg(500 + n, 64, 48))
    with open(bytes(bgs) + b"/odd\xfe\xff.jpg", "wb") as f:
        f.write(_jpeg(600, 64, 48))
    (bgs / "bomb.png").write_bytes(png_pixel_bomb())
    (root / "cwd").mkdir()
    (root / "catalog").mkdir()
    return root


TALLY = {"tried": 0, "handled": 0}


def test_supervisely_corpus_ingest(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each hostile annotation/image is a reject with its reason; the rest is used."""
    from matdata.rejects import read_rejects
    from matdata.sources.base import read_manifest

    monkeypatch.setenv("MATDATA_CATALOG", str(corpus / "catalog"))
    expect = {
        n: o
        for n, o in [
            *((n, o) for n, (_, o, _) in supervisely_cases().items()),
            ("png_bomb_30000", "too_large"),
            ("truncated_jpeg", "truncated"),
            ("text_as_jpeg", "not_an_image"),
            ("empty_image", "zero_size"),
            (os.fsdecode(b"bad\xff"), "bad_file_name"),
        ]
    }
    out = corpus / "out-sly"
    before = _snapshot(corpus, skip=(out, corpus / "catalog"))
    r, peak = _run(
        corpus, "ingest", "supervisely", str(corpus / "inputs" / "sly"), "--name", "sly",
        "--out", str(out), "--no-progress", "-o", "workers=2", cwd=corpus / "cwd",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert _snapshot(corpus, skip=(out, corpus / "catalog")) == before
    items, _ = read_manifest(str(out / "sly.manifest.parquet"))
    rejects = read_rejects(str(out / "sly.rejects.parquet"))
    assert len(items) + len(rejects) == len(expect)  # used + rejected == found
    got: dict[str, str] = {}
    for it in items:
        got[Path(it.image).stem] = "used"
    for rej in rejects:
        stem = Path(rej.path).name.split(".")[0]
        if stem.startswith("bad\\x"):
            stem = os.fsdecode(b"bad\xff")
        got[stem] = rej.reason
    assert got == expect
    TALLY["tried"] += len(expect)
    TALLY["handled"] += sum(got[k] == v for k, v in expect.items())
    print(f"supervisely corpus: peak RSS {peak:.0f} MiB")
    assert peak < MEM_BOUND_MB, f"peak RSS {peak:.0f} MiB"


def test_bomb_cases_alone_stay_bounded(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    """Each memory bomb on its own, in its own process: peak RSS stays under the bound."""
    monkeypatch.setenv("MATDATA_CATALOG", str(corpus / "catalog"))
    cases = supervisely_cases()
    bombs = [n for n, (_, _, bomb) in cases.items() if bomb] + ["png_bomb_30000"]
    src = corpus / "inputs" / "sly" / "ds"
    for name in bombs:
        root = tmp_path / name
        (root / "ds" / "img").mkdir(parents=True)
        (root / "ds" / "ann").mkdir(parents=True)
        ext = ".png" if name.startswith("png") else ".jpg"
        (root / "ds" / "img" / f"{name}{ext}").write_bytes(
            (src / "img" / f"{name}{ext}").read_bytes()
        )
        a = f"{name}{ext}.json"
        (root / "ds" / "ann" / a).write_bytes((src / "ann" / a).read_bytes())
        r, peak = _run(
            tmp_path, "ingest", "supervisely", str(root), "--name", f"b{len(name)}",
            "--out", str(tmp_path / f"o-{name}"), "--no-progress", "--allow-empty",
            cwd=corpus / "cwd",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        print(f"{name}: peak RSS {peak:.0f} MiB")
        assert peak < MEM_BOUND_MB, f"{name}: peak RSS {peak:.0f} MiB"
        TALLY["tried"] += 1
        TALLY["handled"] += 1


def test_build_with_edited_annotation_and_reject_rate(corpus: Path, monkeypatch) -> None:
    """An annotation edited after ingest is one reject (its shard is written); beyond
    --max-reject-rate the build fails with the reasons, and a rerun that allows them
    resumes and finishes with used + rejected == found."""
    from matdata.shards import read_index

    monkeypatch.setenv("MATDATA_CATALOG", str(corpus / "catalog"))
    root = corpus / "inputs" / "sly2"
    (root / "ds" / "img").mkdir(parents=True)
    (root / "ds" / "ann").mkdir(parents=True)
    for i in range(4):
        (root / "ds" / "img" / f"p{i}.jpg").write_bytes(_jpeg(700 + i))
        (root / "ds" / "ann" / f"p{i}.jpg.json").write_text(json.dumps(_ann([_poly(SQUARE)])))
    cat = corpus / "catalog"
    r, _ = _run(
        corpus, "ingest", "supervisely", str(root), "--name", "sly2", "--no-progress",
        cwd=corpus / "cwd",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    r, _ = _run(
        corpus, "ingest", "folder", str(corpus / "inputs" / "bg"), "--name", "bgs",
        "-o", "role=bg", "--no-progress", cwd=corpus / "cwd",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    # 4 usable backgrounds; the odd name and the bomb are rejects
    assert "bad_file_name" in r.stdout and "too_large" in r.stdout
    TALLY["tried"] += 2  # a non-UTF-8 background name, a 30000^2 background
    TALLY["handled"] += 2
    # edit one annotation after ingest (valid JSON, another mask): hostile to a shard
    (root / "ds" / "ann" / "p2.jpg.json").write_text(
        json.dumps(_ann([_poly([[0, 0], [9, 0], [9, 9]])]))
    )
    out = corpus / "built"
    before = _snapshot(corpus, skip=(out, cat))
    args = ["build", "--fg", "sly2", "--bg", "bgs", "--out", str(out), "--per-fg", "2",
            "--size", "32", "--workers", "1", "--no-progress"]  # fmt: skip
    r, _ = _run(corpus, *args, cwd=corpus / "cwd")
    assert r.returncode == 1
    err_lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1 and "sly2: 1 of 4" in err_lines[0]
    assert "changed_since_ingest" in err_lines[0] and "changed_since_ingest" in r.stderr
    assert (out / "rejects.parquet").exists() and not (out / "dataset.json").exists()
    r, _ = _run(corpus, *args, "--max-reject-rate", "0.5", cwd=corpus / "cwd")
    assert r.returncode == 0, r.stderr
    assert _snapshot(corpus, skip=(out, cat)) == before
    index = read_index(str(out))
    acct = index["rejects"]["by_source"]
    assert acct["sly2"]["build_failed"] == 1 and acct["sly2"]["used"] == 3
    for a in acct.values():
        assert a["used"] + a["rejected"] == a["found"]
    assert index["rejects"]["by_reason"].get("changed_since_ingest") == 1
    TALLY["tried"] += 2  # edited annotation, reject rate
    TALLY["handled"] += 2


def jpeg_declaring(side: int = 30000) -> bytes:
    """A small real JPEG whose frame header is patched to declare ``side`` x ``side``."""
    from matdata.imageio import _jpeg_size

    data = bytearray(_jpeg(5, 16, 16))
    i = 2
    while True:  # find the start-of-frame segment (SOF0 for OpenCV's baseline JPEG)
        marker, length = data[i + 1], struct.unpack_from(">H", data, i + 2)[0]
        if marker == 0xC0:
            struct.pack_into(">HH", data, i + 5, side, side)
            break
        i += 2 + length
    assert _jpeg_size(bytes(data)) == (side, side)
    return bytes(data)


def test_shard_images_declaring_huge_sizes(tmp_path: Path, monkeypatch) -> None:
    """Records whose PNG / JPEG declare 30000^2 pixels: ``qa`` flags them undecodable
    (checked against the pixel limit before decoding) and stays under the memory bound."""
    from dataclasses import replace

    from matdata.shards import ShardInfo, iter_shard, read_index, write_index

    monkeypatch.setenv("MATDATA_CATALOG", str(tmp_path / "catalog"))
    ds = tmp_path / "ds"
    (tmp_path / "cwd").mkdir()
    r, _ = _run(
        tmp_path, "build", "--fg", "demo", "--bg", "demo", "--out", str(ds), "--per-fg", "1",
        "--size", "32", "--workers", "1", "--no-progress", cwd=tmp_path / "cwd",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    index = read_index(str(ds))
    from matdata.shards import ShardWriter

    # every record gets a bomb (PNG alpha or JPEG image), so that train meets one for sure
    shards = []
    for d in index["shards"]:
        info = ShardInfo.from_dict(d)
        recs = list(iter_shard(str(ds), info))
        for i, rec in enumerate(recs):
            bomb = {"alpha": png_pixel_bomb()} if i % 2 == 0 else {"image": jpeg_declaring()}
            recs[i] = replace(rec, **bomb)
        with ShardWriter(str(ds), info.split, info.index, (info.format,)) as w:
            for rec in recs:
                w.write(rec)
            shards += w.close()
    keep = {k: index[k] for k in ("config", "sources", "rejects")}
    extra = {k: v for k, v in index.items() if k not in ("format", "schema_version", "formats",
             "splits", "samples", "shards", *keep)}  # fmt: skip
    write_index(str(ds), shards, **keep, extra=extra)
    before = _snapshot(tmp_path, skip=(tmp_path / "report", tmp_path / "catalog"))
    r, peak = _run(
        tmp_path, "qa", str(ds), "--out", str(tmp_path / "report"), "--in-process",
        "--no-progress", cwd=tmp_path / "cwd",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    print(f"qa: peak RSS {peak:.0f} MiB")
    assert peak < MEM_BOUND_MB, f"peak RSS {peak:.0f} MiB"
    assert _snapshot(tmp_path, skip=(tmp_path / "report", tmp_path / "catalog")) == before
    summary = (tmp_path / "report" / "summary.json").read_text()
    assert "too large" in summary and "30000x30000" in summary
    # train streams the same records: no traceback, no bomb-sized allocation (whether it
    # stops on the record with one line or skips it)
    r, peak = _run(
        tmp_path, "train", "--data", str(ds), "--out", str(tmp_path / "run"), "--steps", "2",
        "--batch-size", "2", "--image-size", "32", "--workers", "0", "--device", "cpu",
        "--val-every", "1000", "--ckpt-every", "1000", cwd=tmp_path / "cwd",
    )  # fmt: skip
    assert r.returncode == 0 or r.stderr.strip().splitlines()[-1].startswith("error:"), r.stderr
    print(f"train: rc {r.returncode}, peak RSS {peak:.0f} MiB, {r.stderr.strip()[-300:]}")
    assert peak < TRAIN_MEM_BOUND_MB, f"train: peak RSS {peak:.0f} MiB"
    # harmonize reads them too: a reject or one error line, never the bomb's allocation
    r, peak = _run(
        tmp_path, "harmonize", str(ds), "--model", "reinhard", "--out", str(tmp_path / "harm"),
        "--workers", "1", "--device", "cpu", "--no-progress", cwd=tmp_path / "cwd",
    )  # fmt: skip
    print(f"harmonize: rc {r.returncode}, peak RSS {peak:.0f} MiB, {r.stderr.strip()[-300:]}")
    assert r.returncode == 0 or r.stderr.strip().splitlines()[-1].startswith("error:"), r.stderr
    assert peak < MEM_BOUND_MB, f"harmonize: peak RSS {peak:.0f} MiB"
    TALLY["tried"] += 6  # PNG and JPEG bombs, through qa, train and harmonize
    TALLY["handled"] += 6


def test_tally_reported(capsys) -> None:
    """The count of hostile cases tried / handled (printed for the record)."""
    with capsys.disabled():
        print(f"\nhostile inputs: tried {TALLY['tried']}, handled {TALLY['handled']}")
    assert TALLY["tried"] == 0 or TALLY["handled"] == TALLY["tried"]
