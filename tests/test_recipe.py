"""docs/recipes.md at toy scale: the seed's coarse-to-fine recipe, command by command.

Fixtures are the real layouts of Supervisely Person, AISegment, Places365 and COCO made by
the source tests (every quirk included); images 64 px, two training steps per stage.  The
commands are the ones in docs/recipes.md with toy sizes; both builds mix Places365 and COCO
backgrounds.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
import torch
from cli_run import run_cli
from cli_run import run_main as _main

TOY = [
    "--hr-channels", "8", "--batch-size", "2", "--image-size", "64", "--device", "cpu",
    "--workers", "0", "--log-every", "1", "--warmup", "0",
]  # fmt: skip


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return run_cli(args, cwd=cwd, check=True)


def test_recipe_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    import test_sources_aisegment as aiseg
    import test_sources_places365 as places
    import test_sources_supervisely as sly
    from coco_fixture import make_coco

    monkeypatch.chdir(tmp_path)
    sly.build_project(tmp_path / "raw" / "supervisely")
    aiseg.build_tree(tmp_path / "raw" / "aisegment")
    places.build(tmp_path / "raw" / "places365")
    make_coco(tmp_path / "raw" / "coco")

    # 1. ingest (val_fraction so that the toy sources have a val split; COCO has its own)
    for kind in ("supervisely", "aisegment", "places365", "coco"):
        opts = [] if kind == "coco" else ["-o", "val_fraction=0.5"]
        proc = _cli(["ingest", kind, f"raw/{kind}", *opts, "--no-progress"], tmp_path)
        assert f"registered as {kind}" in proc.stdout

    # 2. coarse dataset, backbone pretraining on it
    build = ["--size", "64", "--per-fg", "2", "--workers", "1", "--no-progress"]
    _cli(["build", "--fg", "supervisely", "--bg", "places365", "--bg", "coco", "--out", "coarse",
          *build], tmp_path)  # fmt: skip
    assert _main(["train", "--task", "segmentation", "--data", "coarse", "--backbone",
                  "mobilenetv2", "--out", "runs/seg", "--steps", "2", *TOY]) == 0  # fmt: skip
    seg_vals = [json.loads(x) for x in Path("runs/seg/metrics.jsonl").read_text().splitlines()]
    seg_vals = [r for r in seg_vals if r["kind"] == "val"]
    assert seg_vals and all(0.0 <= r["iou"] <= 1.0 for r in seg_vals)

    # 3. fine dataset (layers kept for harmonization and --recompose), harmonized
    _cli(["build", "--fg", "aisegment", "--bg", "places365", "--bg", "coco", "--bg-weights",
          "places365=0.7,coco=0.3", "--out", "fine", "--keep-layers", *build],
         tmp_path)  # fmt: skip
    fine_index = json.loads(Path("fine/dataset.json").read_text())
    assert fine_index["samples"] > 0
    _cli(["harmonize", "fine", "--model", "reinhard", "--out", "fine-h", "--workers", "1",
          "--no-progress"], tmp_path)  # fmt: skip
    capfd.readouterr()

    # 4. MODNet from the pretrained backbone, fine data mixed with some coarse data
    assert _main(["train", "--data", "fine-h", "--data", "coarse", "--data-weights",
                  "fine-h=0.8,coarse=0.2", "--backbone-weights", "runs/seg", "--out",
                  "runs/modnet", "--steps", "2", *TOY]) == 0  # fmt: skip
    err = capfd.readouterr().err
    assert "backbone weights runs/seg/last.pt: took 312 tensors" in err
    cfg = json.loads(Path("runs/modnet/config.json").read_text())
    assert [(d["name"], d["weight"]) for d in cfg["datasets"]] == [
        ("fine-h", pytest.approx(0.8)), ("coarse", pytest.approx(0.2)),
    ]  # fmt: skip
    vals = [json.loads(x) for x in Path("runs/modnet/metrics.jsonl").read_text().splitlines()]
    last = {r["dataset"]: r for r in vals if r["kind"] == "val" and r["step"] == 2}
    assert last["fine-h"]["whole/sad"] >= 0 and last["fine-h"]["samples"] > 0
    # coarse masks count in the (semantic) loss only, never in the matting metrics
    assert last["coarse"]["loss"] > 0 and math.isnan(last["coarse"]["whole/sad"])
    seg_backbone = {
        k: v for k, v in torch.load("runs/seg/last.pt", weights_only=True)["model"].items()
        if k.startswith("backbone.")
    }  # fmt: skip
    assert seg_backbone and len(seg_backbone) == 312

    # 5. evaluate on the fine val split
    evaluate = ["evaluate", "-c", "runs/modnet/last.pt", "--data", "fine-h", "--split", "val",
                "--device", "cpu", "--json", "eval.json", "--no-progress"]  # fmt: skip
    assert _main(evaluate) == 0
    report = json.loads(Path("eval.json").read_text())
    assert report["source"] == "fine-h [val]" and report["count"]["whole"] > 0
    assert report["metrics"]["whole"]["mse"] >= 0
