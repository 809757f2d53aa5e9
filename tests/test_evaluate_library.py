"""Evaluation from Python: a built dataset's split as an evaluation set (coarse, undecodable
and mismatched records skipped with reasons), one evaluation loop, one per-image CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from portraits import portrait
from spec_weights import deterministic_state_dict, modnet_rename

from matdata.benchmarks import DatasetSplit, Skip, open_eval_set, scan_dataset
from matdata.errors import ConfigError, MatdataError
from matdata.imageio import decode_image, encode_jpeg, encode_png
from matdata.metrics import MetricSums
from matdata.schema import Record
from matdata.shards import ShardWriter, write_index
from matdata.trimap import make_trimap
from modnet.benchmarks import evaluate_set
from modnet.inference import load_checkpoint_model, predict_alpha

MANIFEST = Path(__file__).parent / "data" / "specs" / "modnet.state_dict.json"
REF = 64


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    state = deterministic_state_dict(MANIFEST, seed=0, rename=modnet_rename)
    path = tmp_path_factory.mktemp("ckpt") / "modnet.ckpt"
    torch.save({"module." + k: v for k, v in state.items()}, path)
    return load_checkpoint_model(str(path), "cpu").model


def _record(key: str, seed: int, *, coarse: bool = False, junk: bool = False, small=False):
    rgb, alpha = portrait(seed)
    if small:
        alpha = alpha[:20]
    meta = {"split": "val", "fg": {"id": key}, "bg": {"id": "b"}, "seed": seed, "coarse": coarse}
    image = b"not a jpeg" if junk else encode_jpeg(rgb, 95)
    return Record(key=key, image=image, alpha=encode_png(alpha), meta=meta)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    """val: ok, coarse, ok, undecodable, alpha of another size, ok (in this order)."""
    root = tmp_path_factory.mktemp("ds") / "ds"
    records = [
        _record("a0", 1),
        _record("c1", 2, coarse=True),
        _record("a2", 3),
        _record("j3", 4, junk=True),
        _record("m4", 5, small=True),
        _record("a5", 6),
    ]
    with ShardWriter(str(root), "val", 0, formats="parquet") as w:
        for rec in records:
            w.write(rec)
        infos = w.close()
    write_index(str(root), infos, config={}, sources={}, rejects={})
    return str(root)


def test_a_dataset_split_yields_samples_and_reasoned_skips(dataset) -> None:
    ds = scan_dataset(dataset, "val")
    assert isinstance(ds, DatasetSplit) and ds.records == 6 and ds.expected() == 6
    out = list(ds.samples())
    skips = [(s.key, s.reason) for s in out if isinstance(s, Skip)]
    assert skips == [("c1", "coarse"), ("j3", "undecodable"), ("m4", "size_mismatch")]
    assert [s.key for s in out if not isinstance(s, Skip)] == ["a0", "a2", "a5"]
    first = out[0]
    assert first.rgb.shape == (40, 48, 3) and first.alpha.shape == (40, 48)
    # a limit counts decoded samples; the skips met before the limit are still reported
    limited = [(s.key, isinstance(s, Skip)) for s in ds.samples(limit=2)]
    assert limited == [("a0", False), ("c1", True), ("a2", False)]
    assert ds.expected(limit=2) is None  # unknown: skips come on top of the limit


def test_evaluate_a_dataset_from_python(dataset, model) -> None:
    ds = open_eval_set(data=dataset, split="val")
    progress: list[tuple[int, int | None]] = []
    skipped: list[str] = []
    res = evaluate_set(
        model,
        ds,
        ref_size=REF,
        on_progress=lambda done, total: progress.append((done, total)),
        on_skip=lambda s: skipped.append(s.key),
    )
    assert [im["key"] for im in res.images] == ["a0", "a2", "a5"]
    assert skipped == ["c1", "j3", "m4"]
    assert [d for d, _ in progress] == list(range(1, 7)) and {t for _, t in progress} == {6}
    d = res.to_dict()
    assert d["trimaps"] == "generated" and d["source"] == f"{dataset} [val]"
    assert d["skipped"] == {"coarse": 1, "size_mismatch": 1, "undecodable": 1}
    # independent check: the same metrics computed image by image
    sums = MetricSums()
    for seed in (1, 3, 6):
        rgb, gt = portrait(seed)
        rgb = decode_image(encode_jpeg(rgb, 95), "x")  # as stored
        sums.add(predict_alpha(model, rgb, ref_size=REF), gt, make_trimap(gt))
    for region, values in sums.result().items():
        for k, v in values.items():
            assert d["metrics"][region][k] == pytest.approx(v, rel=1e-6), (region, k)
    # one CSV writer for datasets and benchmarks: a row per image and per skipped record
    rows = list(csv.DictReader(io.StringIO(res.per_image_csv())))
    assert [(r["key"], r["status"], r["reason"]) for r in rows] == [
        ("a0", "ok", ""),
        ("a2", "ok", ""),
        ("a5", "ok", ""),
        ("c1", "skipped", "coarse"),
        ("j3", "skipped", "undecodable"),
        ("m4", "skipped", "size_mismatch"),
    ]
    assert float(rows[0]["whole_sad"]) == pytest.approx(res.images[0]["whole"]["sad"])
    res.require_images()  # images were scored: no error


def test_limit_scores_the_first_n_images(dataset, model) -> None:
    res = evaluate_set(model, scan_dataset(dataset), ref_size=REF, limit=1)
    assert [im["key"] for im in res.images] == ["a0"] and res.skipped == []


def test_nothing_to_evaluate_is_a_clear_error(tmp_path, dataset, model) -> None:
    root = tmp_path / "coarse"
    with ShardWriter(str(root), "val", 0, formats="parquet") as w:
        w.write(_record("c0", 1, coarse=True))
        infos = w.close()
    write_index(str(root), infos, config={}, sources={}, rejects={})
    res = evaluate_set(model, open_eval_set(data=str(root)), ref_size=REF)
    assert res.images == [] and [s.reason for s in res.skipped] == ["coarse"]
    with pytest.raises(ConfigError) as exc:
        res.require_images()
    assert "nothing could be evaluated" in exc.value.one_line()
    assert "1 coarse" in exc.value.one_line()
    with pytest.raises(MatdataError, match="no split 'test'"):
        open_eval_set(data=dataset, split="test")
    with pytest.raises(ConfigError, match="needs --root"):
        open_eval_set(benchmark="p3m")
    with pytest.raises(ConfigError, match="either --data"):
        open_eval_set()
    empty = tmp_path / "empty"
    (empty / "i").mkdir(parents=True)
    (empty / "a").mkdir()
    (empty / "i" / "x.png").write_bytes(encode_png(np.zeros((8, 8, 3), np.uint8)))
    with pytest.raises(ConfigError, match="nothing to evaluate"):
        open_eval_set(images=empty / "i", alphas=empty / "a")
