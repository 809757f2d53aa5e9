"""COCO background source: official layout, person filtering, categories, rejects, CLI."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_cli
from coco_fixture import jpeg, make_coco

from matdata.errors import ConfigError, SourceError
from matdata.rejects import Reject
from matdata.sources.base import Item
from matdata.sources.coco import CocoSource, parse_instances


def scan(root: Path, **opts) -> tuple[CocoSource, list[Item], list[Reject]]:
    src = CocoSource(str(root), **opts)
    out = list(src.scan())
    return (
        src,
        [x for x in out if isinstance(x, Item)],
        [x for x in out if isinstance(x, Reject)],
    )


def test_person_images_are_filtered_and_the_rest_accounted(tmp_path: Path) -> None:
    src, items, rejects = scan(make_coco(tmp_path / "coco"))
    by_id = {it.id: it for it in items}
    # person, crowd-person, tiny-person (with a car) and the val person: filtered, not rejects
    assert src.filtered == 4 and src.filtered_reasons == {"category person": 4}
    assert set(by_id) == {
        "train2017-000000000004",
        "train2017-000000000005",
        "train2017-000000000006",
        "val2017-000000000011",
    }
    assert by_id["train2017-000000000004"].tags == ("car",)
    assert by_id["train2017-000000000005"].tags == ()  # unannotated: usable
    assert by_id["train2017-000000000006"].tags == ("car", "dog")
    assert by_id["val2017-000000000011"].split == "val"
    assert {it.split for it in items if it.id.startswith("train")} == {"train"}
    assert all(it.role == "bg" and it.source == "coco" for it in items)
    assert json.loads(by_id["train2017-000000000006"].extra)["annotations"] == 3
    reasons = Counter(r.reason for r in rejects)
    assert reasons == {"missing_image": 1, "truncated": 1, "unexpected_file": 2}
    missing = next(r for r in rejects if r.reason == "missing_image")
    assert missing.path.endswith("train2017/000000000007.jpg")
    # every input is an item, a reject or filtered, exactly once
    assert src.total == len(items) + len(rejects) + src.filtered == 12


def test_grayscale_background_loads_as_rgb(tmp_path: Path) -> None:
    src, items, _ = scan(make_coco(tmp_path / "coco"))
    gray = next(it for it in items if it.id == "train2017-000000000006")
    rgb = src.load_background(gray)
    assert rgb.shape == (40, 48, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[..., 0], rgb[..., 1])


def test_exclude_option(tmp_path: Path) -> None:
    root = make_coco(tmp_path / "coco")
    src, items, _ = scan(root, exclude="none")
    assert src.filtered == 0 and len(items) == 8  # the person images are usable now
    crowd = next(it for it in items if it.id == "train2017-000000000002")
    assert crowd.tags == ("person",)
    src, items, _ = scan(root, exclude="car,dog")
    assert dict(src.filtered_reasons) == {
        "category car": 3,
        "category car, dog": 1,
        "category dog": 1,
    }
    assert {it.id for it in items} == {
        "train2017-000000000001",
        "train2017-000000000002",
        "train2017-000000000005",
        "val2017-000000000012",
    }


def test_2014_layout_and_year_choice(tmp_path: Path) -> None:
    root = tmp_path / "coco14"
    (root / "annotations").mkdir(parents=True)
    doc = {
        "images": [{"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "width": 48,
                    "height": 40}],
        "annotations": [],
        "categories": [{"id": 1, "name": "person"}],
    }  # fmt: skip
    (root / "annotations" / "instances_train2014.json").write_text(json.dumps(doc))
    (root / "train2014").mkdir()
    (root / "train2014" / "COCO_train2014_000000000009.jpg").write_bytes(jpeg(9))
    _, items, rejects = scan(root)
    assert [it.id for it in items] == ["train2014-COCO_train2014_000000000009"] and not rejects
    with pytest.raises(ConfigError, match="year=2017"):
        scan(root, year=2017)


def test_parse_is_order_independent_and_bad_json_is_one_error(tmp_path: Path) -> None:
    # categories first, annotations before images, a non-COCO file name
    doc = {
        "categories": [{"id": 7, "name": "car"}, {"id": 1, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 7},
            {"id": 2, "image_id": 3, "category_id": 1},
            {"id": 3, "image_id": 5, "category_id": 99},  # unknown category
            {"id": 4, "image_id": 42, "category_id": 7},  # unknown image
        ],
        "images": [
            {"id": 5, "file_name": "street.jpg", "width": 10, "height": 8},
            {"id": 3, "file_name": "000000000003.jpg", "width": 4, "height": 4},
        ],
    }
    p = tmp_path / "instances_train2017.json"
    p.write_text(json.dumps(doc))
    ix = parse_instances(str(p), "train2017")
    assert ix.ids.tolist() == [3, 5] and ix.width.tolist() == [4, 10]
    assert ix.file_name(1) == "street.jpg" and ix.names == {5: "street.jpg"}
    assert ix.categories(0) == ["person"] and ix.categories(1) == ["car"]
    assert ix.n_ann.tolist() == [1, 2]
    assert ix.unknown_categories == 1 and ix.unknown_images == 1
    p.write_text(json.dumps(doc)[:-40])
    with pytest.raises(SourceError, match="not a valid COCO annotation file"):
        parse_instances(str(p), "train2017")


def test_missing_annotations_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="instances_"):
        scan(tmp_path / "empty")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_cli(list(args), cwd=cwd, timeout=120)


def test_cli_ingest_reports_filtered_and_missing_val(tmp_path: Path) -> None:
    root = make_coco(tmp_path / "coco", val=False)
    r = _cli("ingest", "coco", str(root), "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "category person" in r.stdout and "missing_image" in r.stdout
    # no val split: said once, with what fixes it
    assert "no val items" in r.stderr and "instances_val2017.json" in r.stderr
    from matdata.catalog import lookup

    entry = lookup("coco")
    assert entry["counts"]["filtered"] == 3
    assert entry["counts"]["filtered_by_reason"] == {"category person": 3}
    assert entry["counts"]["usable"] == 3 and entry["counts"]["rejected"] == 4
    bad = tmp_path / "bad"
    (bad / "annotations").mkdir(parents=True)
    (bad / "annotations" / "instances_val2017.json").write_text('{"images": [')
    r = _cli("ingest", "coco", str(bad), "--no-progress", cwd=tmp_path)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "not a valid COCO annotation file" in r.stderr


def test_the_image_folder_walk_reports_exactly_the_unlisted_files(tmp_path: Path) -> None:
    """The image folder is streamed (os.scandir, not listed into memory); the rejects are
    still every file the JSON does not list, in a sorted depth-first walk's order, the same
    as a full listing through fsspec gives; an image the JSON names outside COCO's form
    (street.jpg for id 5) is listed, its default-form name is not."""
    from matdata.sources.coco import _unlisted_files
    from matdata.storage import get_fs

    root = make_coco(tmp_path / "coco", val=False)
    ann = root / "annotations" / "instances_train2017.json"
    doc = json.loads(ann.read_text())
    for im in doc["images"]:
        if im["id"] == 5:
            im["file_name"] = "street.jpg"
    ann.write_text(json.dumps(doc))
    tr = root / "train2017"
    (tr / "street.jpg").write_bytes(jpeg(5))
    (tr / "._000000000004.jpg").write_bytes(b"\x00\x05\x16\x07")
    (tr / "sub").mkdir()
    (tr / "sub" / "junk.bin").write_bytes(b"x")
    want = ["._000000000004.jpg", "000000000005.jpg", "000000000099.jpg", "notes.txt",
            "sub/junk.bin"]  # fmt: skip

    _, items, rejects = scan(root)
    unlisted = [r for r in rejects if r.reason in ("unexpected_file", "macos_resource_fork")]
    assert [Path(r.path).relative_to(tr).as_posix() for r in unlisted] == want
    assert [r.reason for r in unlisted][:2] == ["macos_resource_fork", "unexpected_file"]
    assert "train2017-street" in {it.id for it in items}
    # the same files through fsspec's listing (the path other file systems take)
    ix = parse_instances(str(ann), "train2017")
    url = "file://" + str(tr)
    listed = [p.split("://", 1)[1] for p in _unlisted_files(url, "", "train2017", ix)]
    assert listed == [r.path for r in unlisted]
    _, local = get_fs(str(tr))
    assert list(_unlisted_files(str(tr), local, "train2017", ix)) == listed
