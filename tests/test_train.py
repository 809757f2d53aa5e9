"""modnet.train / `matdata train`: a short CPU run on demo data learns, checkpoints, resumes
bit-exactly, and its checkpoint serves predict / evaluate."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import CLI, cli_env
from cli_run import run_main as _main
from train_check import assert_metrics_match, independent_val_metrics

from modnet.train import (
    LOCKED,
    TrainConfig,
    Trainer,
    lr_factor,
    mask_ignored,
    read_checkpoint,
    resolve_config,
)

STEPS = 10
COMMON = [
    "--backbone", "mobilenetv2", "--hr-channels", "8", "--batch-size", "4",
    "--image-size", "64", "--device", "cpu", "--lr", "3e-3", "--warmup", "0",
    "--log-every", "1", "--seed", "3",
]  # fmt: skip


def _log(run: Path) -> dict[tuple[str, int], dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return {(d["kind"], d["step"]): d for d in map(json.loads, lines)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, demo_dataset) -> dict[str, Path]:
    """Demo data; run A: STEPS straight (checkpoint at STEPS/2); run B: resumed from it."""
    root = tmp_path_factory.mktemp("train")
    data = demo_dataset(name="demo", size="96", per_fg=2, samples_per_shard=16)
    a, b = root / "runA", root / "runB"
    assert _main([
        "train", "--data", str(data), "--out", str(a), "--steps", str(STEPS),
        "--ckpt-every", str(STEPS // 2), "--val-every", "0", "--workers", "1", *COMMON,
    ]) == 0  # fmt: skip
    mid = a / "checkpoints" / f"step-{STEPS // 2:07d}.pt"
    # different loader worker count on purpose: the data order must not depend on it
    assert _main(["train", "--resume", str(mid), "--out", str(b), "--workers", "0"]) == 0
    return {"data": data, "a": a, "b": b, "mid": mid}


def test_training_lowers_validation_loss(runs: dict[str, Path]) -> None:
    log = _log(runs["a"])
    first, last = log[("val", 0)], log[("val", STEPS)]
    assert last["loss"] < 0.75 * first["loss"], (first["loss"], last["loss"])
    assert last["samples"] == first["samples"] > 0
    # the logged metrics are the model's: an independent recomputation on the same val
    # split agrees (scoring the ground truth instead would log 0)
    want = independent_val_metrics(runs["a"] / "last.pt", runs["data"], 64, 4, 8)
    assert_metrics_match(last, want)
    for region in ("unknown", "whole"):
        for metric in ("sad", "mse", "mad", "grad", "conn"):
            assert last[f"{region}/{metric}"] > 0, (region, metric)
    # the LR schedule steps (cosine, no warm-up): strictly decreasing
    lrs = [log[("train", s)]["lr"] for s in range(1, STEPS + 1)]
    assert lrs[0] == pytest.approx(3e-3) and all(x > y for x, y in zip(lrs, lrs[1:], strict=False))


def test_checkpoints_are_safe_and_complete(runs: dict[str, Path]) -> None:
    a = runs["a"]
    names = sorted(p.name for p in (a / "checkpoints").iterdir())
    assert names == [f"step-{STEPS // 2:07d}.pt", f"step-{STEPS:07d}.pt"]
    ckpt = torch.load(a / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == STEPS and ckpt["data_position"]["batches_per_rank"] == STEPS
    from matdata.shards import read_index

    n_train = read_index(str(runs["data"]))["splits"]["train"]["samples"]
    pos = ckpt["data_position"]
    assert (pos["epoch"], pos["sample_in_epoch"]) == divmod(STEPS * 4, n_train)
    for key in ("model", "optimizer", "scheduler", "scaler", "rng", "config"):
        assert key in ckpt
    cfg = TrainConfig.from_json(ckpt["config"])
    assert cfg.hr_channels == 8 and cfg.steps == STEPS and cfg.image_size == 64
    assert json.loads(ckpt["model_config"]) == {"backbone": "mobilenetv2", "hr_channels": 8}
    # the model weights load into a fresh model with the model engineer's loader
    from modnet import build_modnet, load_modnet_weights

    load_modnet_weights(build_modnet("mobilenetv2", 8), str(a / "last.pt"))


def test_resume_is_bit_exact(runs: dict[str, Path]) -> None:
    la, lb = _log(runs["a"]), _log(runs["b"])
    half = STEPS // 2
    # run B starts its own log at the resumed step
    assert sorted(k[1] for k in lb if k[0] == "train") == list(range(half + 1, STEPS + 1))
    for s in range(half + 1, STEPS + 1):
        for term in ("total", "semantic", "detail", "matte", "lr", "grad_norm"):
            assert la[("train", s)][term] == lb[("train", s)][term], (s, term)
    assert la[("val", STEPS)]["loss"] == lb[("val", STEPS)]["loss"]
    ca = torch.load(runs["a"] / "last.pt", weights_only=True)
    cb = torch.load(runs["b"] / "last.pt", weights_only=True)
    assert ca["model"].keys() == cb["model"].keys()
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)


def test_resume_in_place_after_an_interruption(runs: dict[str, Path], tmp_path) -> None:
    """A run killed after step 10 whose newest checkpoint is step 5: `--resume RUN` goes on
    from last.pt, drops the log lines written after it and ends with the same log."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["a"], run)
    shutil.copy(runs["mid"], run / "last.pt")
    assert _main(["train", "--resume", str(run), "--workers", "0", "--val-every", "0"]) == 0
    want = [json.loads(x) for x in (runs["a"] / "metrics.jsonl").read_text().splitlines()]
    got = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    timing = ("step_time", "data_time")
    strip = [{k: v for k, v in d.items() if k not in timing} for d in (want, got)[0]]
    assert [{k: v for k, v in d.items() if k not in timing} for d in got] == strip


def test_ctrl_c_saves_a_consistent_checkpoint(runs: dict[str, Path], tmp_path) -> None:
    """SIGINT during training: the step in progress finishes, last.pt is written, exit 130;
    resuming then reproduces the uninterrupted run.  The run sends itself the SIGINT right
    after step 3 (a test hook, see matdata.testhooks), so it stops at exactly step 3."""
    run = tmp_path / "run"
    args = [
        "train", "--data", str(runs["data"]), "--out", str(run), "--steps", str(STEPS),
        "--ckpt-every", "100", "--val-every", "0", "--workers", "0", *COMMON,
    ]  # fmt: skip
    env = cli_env(MATDATA_TEST_SIGINT_AFTER_STEPS="3")
    proc = subprocess.Popen([*CLI, *args], env=env, stderr=subprocess.PIPE, text=True)
    log = run / "metrics.jsonl"
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    # the message names the checkpoint written and the command that continues the run
    assert str(run / "checkpoints" / "step-") in err and f"--resume {run}" in err, err
    assert "completed shards" not in err and "Traceback" not in err
    stopped = torch.load(run / "last.pt", weights_only=True)["step"]
    assert stopped == 3
    assert max(d["step"] for d in map(json.loads, log.read_text().splitlines())) == stopped
    assert _main(["train", "--resume", str(run)]) == 0
    la, lb = _log(runs["a"]), _log(run)
    for s in range(1, STEPS + 1):
        assert la[("train", s)]["total"] == lb[("train", s)]["total"], s


def test_resume_refuses_to_change_the_run(runs: dict[str, Path], capsys) -> None:
    capsys.readouterr()
    assert _main(["train", "--resume", str(runs["a"]), "--batch-size", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot change batch_size" in err[0]
    assert _main(["train", "--resume", str(runs["data"] / "dataset.json")]) == 1
    assert "checkpoint" in capsys.readouterr().err
    with pytest.raises(Exception, match="cannot change"):
        resolve_config({"image_size": 128}, str(runs["mid"]))
    assert "image_size" in LOCKED
    # allowed overrides: more steps, another output directory
    cfg = resolve_config({"steps": 20, "out": "elsewhere"}, str(runs["mid"]))
    assert cfg.steps == 20 and cfg.hr_channels == 8 and cfg.out == "elsewhere"


def test_init_loads_weights_and_restarts_at_step_zero(runs: dict[str, Path], tmp_path) -> None:
    cfg = resolve_config(
        dict(data=str(runs["data"]), out=str(tmp_path / "c"), hr_channels=8, image_size=64,
             device="cpu", init=str(runs["a"] / "last.pt"))
    )  # fmt: skip
    trainer = Trainer(cfg)
    want = read_checkpoint(str(runs["a"]))["model"]
    got = trainer.model.state_dict()
    assert trainer.step == 0 and all(torch.equal(got[k], want[k]) for k in want)


def test_predict_and_evaluate_on_the_checkpoint(runs: dict[str, Path], tmp_path, capsys) -> None:
    from matdata.cli import app
    from matdata.imageio import encode_jpeg, load_alpha
    from matdata.schema import decode_record
    from matdata.shards import iter_records

    names = {c.name for c in app.registered_commands}
    assert {"predict", "evaluate"} <= names, "predict/evaluate commands are missing"
    ckpt = str(runs["a"] / "last.pt")
    small = ["--ref-size", "64", "--device", "cpu", "--no-progress"]
    capsys.readouterr()
    report = tmp_path / "eval.json"
    args = ["evaluate", "--checkpoint", ckpt, "--data", str(runs["data"]), "--json", str(report)]
    assert _main([*args, *small]) == 0
    printed = capsys.readouterr().out
    # every fine val record is scored, with the model's own prediction: the per-image SAD
    # equals one computed here from `predict_alpha` and the ground truth (SAD = sum|d|/1000)
    from modnet.inference import load_checkpoint_model, predict_alpha

    got = json.loads(report.read_text())
    fine = [
        decode_record(r) for r in iter_records(str(runs["data"]), "val") if not r.meta.get("coarse")
    ]
    assert [d["key"] for d in got["images"]] == [r.key for r in fine]
    model = load_checkpoint_model(ckpt, "cpu").model
    sads = []
    for rec, row in zip(fine, got["images"], strict=True):
        pred = predict_alpha(model, rec.image, ref_size=64).astype(np.float64)
        want = float(np.abs(pred - rec.alpha / 255.0).sum() / 1000.0)
        assert want > 0 and row["whole"]["sad"] == pytest.approx(want, rel=1e-3), rec.key
        sads.append(want)
    assert got["metrics"]["whole"]["sad"] == pytest.approx(np.mean(sads), rel=1e-3)
    # the printed table shows the report's numbers (SAD /1000 as is, MSE x 1e3), per region
    for label, key, scale in (("SAD (/1000)", "sad", 1.0), ("MSE (x1e3)", "mse", 1e3)):
        line = next(ln for ln in printed.splitlines() if label in ln)
        want = [f"{got['metrics'][r][key] * scale:.4f}" for r in ("unknown", "whole")]
        assert re.findall(r"\d+\.\d{4}", line.split(label, 1)[1]) == want, (line, want)

    rec = decode_record(next(iter_records(str(runs["data"]), "val")))
    img = tmp_path / "p.jpg"
    img.write_bytes(encode_jpeg(rec.image, 95))
    assert (
        _main(["predict", str(img), "--checkpoint", ckpt, "--out", str(tmp_path / "o"), *small])
        == 0
    )
    pngs = list((tmp_path / "o").glob("*.png"))
    assert len(pngs) == 1 and load_alpha(str(pngs[0])).shape == rec.alpha.shape


# ------------------------------------------------------------------ pure parts


def test_lr_factor_schedules() -> None:
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(99, 100, 10, "cosine") < 0.01
    assert [lr_factor(s, 100, 0, "step") for s in (0, 24, 25, 50, 99)] == pytest.approx(
        [1, 1, 0.1, 0.01, 0.001]
    )
    assert lr_factor(70, 100, 0, "constant") == 1.0


def test_ignored_pixels_get_no_gradient() -> None:
    from modnet.losses import modnet_losses

    torch.manual_seed(0)
    sem = torch.rand(1, 1, 4, 4, requires_grad=True)
    det = torch.rand(1, 1, 64, 64, requires_grad=True)
    mat = torch.rand(1, 1, 64, 64, requires_grad=True)
    alpha = torch.rand(1, 1, 64, 64)
    trimap = torch.full_like(alpha, 0.5)
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    ignore = torch.zeros_like(alpha)
    ignore[..., :20, :] = 1
    s, d, m = mask_ignored((sem, det, mat), alpha, ignore)
    modnet_losses(s, d, m, image, alpha, trimap)["total"].backward()
    assert det.grad[..., :20, :].abs().max() == 0 and det.grad[..., 20:, :].abs().max() > 0
    assert mat.grad[..., :20, :].abs().max() == 0 and mat.grad[..., 20:, :].abs().max() > 0
    assert sem.grad[..., :2, :].abs().max() == 0 and sem.grad[..., 2:, :].abs().max() > 0


def test_loss_weights_have_one_source_and_reach_the_loss(tmp_path, capsys) -> None:
    """The trainer's default IS modnet.losses.DEFAULT_WEIGHTS (editing the constant changes
    training), ``--loss-weights`` sets them, and compute_losses scales each term by its own."""
    import dataclasses

    from modnet import build_modnet
    from modnet.losses import DEFAULT_WEIGHTS, parse_loss_weights
    from modnet.train import compute_losses

    field = {f.name: f for f in dataclasses.fields(TrainConfig)}["loss_weights"]
    assert field.default is DEFAULT_WEIGHTS
    assert parse_loss_weights(" 1, 0.5,2 ") == (1.0, 0.5, 2.0)
    for bad in ("1,2", "a,b,c", "1,-1,1", "0,0,0", "1,nan,1"):
        with pytest.raises(Exception, match="loss-weights"):
            parse_loss_weights(bad)
    capsys.readouterr()
    assert _main(["train", "--data", str(tmp_path), "--loss-weights", "1,2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--loss-weights '1,2'" in err[0], err
    # the weights are part of the run's config (and a resumed run may not change them)
    cfg = TrainConfig.from_json(TrainConfig(loss_weights=(1.0, 0.0, 3.0)).to_json())
    assert cfg.loss_weights == (1.0, 0.0, 3.0) and "loss_weights" in LOCKED

    torch.manual_seed(0)
    model = build_modnet("mobilenetv2", 8, log=None).eval()
    alpha = (torch.rand(2, 1, 64, 64) > 0.5).float()
    batch = {
        "image": torch.rand(2, 3, 64, 64) * 2 - 1, "alpha": alpha,
        "trimap": torch.full_like(alpha, 0.5), "ignore": torch.zeros_like(alpha),
        "coarse": torch.zeros(2, dtype=torch.bool),
    }  # fmt: skip
    with torch.no_grad():
        unit, _ = compute_losses(model, batch, (1.0, 1.0, 1.0))
        got, _ = compute_losses(model, batch, (2.0, 0.0, 5.0))
    for term, w in (("semantic", 2.0), ("detail", 0.0), ("matte", 5.0)):
        assert float(got[term]) == pytest.approx(w * float(unit[term]), rel=1e-5), term
    assert float(got["total"]) == pytest.approx(
        2 * float(unit["semantic"]) + 5 * float(unit["matte"]), rel=1e-5
    )
