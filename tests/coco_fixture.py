"""A tiny COCO tree in the official layout (annotations/instances_*2017.json + image dirs).

Images (train2017 unless said otherwise):

=====  ==========================================  =======================
id     content                                     expected (default opts)
=====  ==========================================  =======================
1      a person                                    filtered (person)
2      a crowd person region only (iscrowd=1, RLE) filtered (person)
3      a tiny person (area 4) next to a car        filtered (person)
4      a car only                                  item, tags [car]
5      no annotation                               item, tags []
6      a car and a dog, grayscale JPEG             item, tags [car, dog]
7      listed but not on disk                      reject missing_image
8      truncated JPEG, a dog                       reject (decode reason)
11     val2017: a car                              item, split val
12     val2017: a person                           filtered (person)
=====  ==========================================  =======================

Plus ``train2017/notes.txt`` and an unlisted ``train2017/000000000099.jpg`` (rejects
``unexpected_file``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

CATEGORIES = [
    {"supercategory": "person", "id": 1, "name": "person"},
    {"supercategory": "vehicle", "id": 3, "name": "car"},
    {"supercategory": "animal", "id": 18, "name": "dog"},
]


def jpeg(seed: int, gray: bool = False, size: tuple[int, int] = (48, 40)) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if gray else (size[1], size[0], 3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _ann(aid: int, image: int, cat: int, area: float = 300.0, crowd: int = 0) -> dict:
    seg = {"counts": [0, 12, 30], "size": [40, 48]} if crowd else [[1.0, 1.0, 9.0, 1.0, 9.0, 9.0]]
    return {
        "id": aid,
        "image_id": image,
        "category_id": cat,
        "iscrowd": crowd,
        "area": area,
        "bbox": [1.0, 1.0, 8.0, 8.0],
        "segmentation": seg,
    }


def _image(i: int, w: int = 48, h: int = 40) -> dict:
    return {"id": i, "file_name": f"{i:012d}.jpg", "width": w, "height": h, "license": 1}


def make_coco(root: Path, *, val: bool = True) -> Path:
    """Write the tree above under ``root``; returns ``root``."""
    ann_dir = root / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    train_imgs = [_image(i) for i in (1, 2, 3, 4, 5, 6, 7, 8)]
    train_anns = [
        _ann(101, 1, 1),
        _ann(102, 2, 1, area=900.0, crowd=1),
        _ann(103, 3, 1, area=4.0),
        _ann(104, 3, 3),
        _ann(105, 4, 3),
        _ann(106, 6, 3),
        _ann(107, 6, 18),
        _ann(108, 6, 18),
        _ann(109, 8, 18),
    ]
    # official key order: info, licenses, images, annotations, categories (last)
    doc = {
        "info": {"year": 2017},
        "licenses": [{"id": 1, "name": "x"}],
        "images": train_imgs,
        "annotations": train_anns,
        "categories": CATEGORIES,
    }
    (ann_dir / "instances_train2017.json").write_text(json.dumps(doc))
    tr = root / "train2017"
    tr.mkdir(exist_ok=True)
    for i in (1, 2, 3, 4, 5):
        (tr / f"{i:012d}.jpg").write_bytes(jpeg(i))
    (tr / f"{6:012d}.jpg").write_bytes(jpeg(6, gray=True))
    (tr / f"{8:012d}.jpg").write_bytes(jpeg(8)[:150])  # truncated
    (tr / f"{99:012d}.jpg").write_bytes(jpeg(99))  # not listed
    (tr / "notes.txt").write_bytes(b"x")
    if val:
        vdoc = {
            "info": {"year": 2017},
            "licenses": [],
            "images": [_image(11), _image(12)],
            "annotations": [_ann(201, 11, 3), _ann(202, 12, 1)],
            "categories": CATEGORIES,
        }
        (ann_dir / "instances_val2017.json").write_text(json.dumps(vdoc))
        va = root / "val2017"
        va.mkdir(exist_ok=True)
        for i in (11, 12):
            (va / f"{i:012d}.jpg").write_bytes(jpeg(i))
    return root
