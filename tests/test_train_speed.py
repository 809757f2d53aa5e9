"""Speed options of `matdata train` (modnet/speed.py) on the CPU: precision and --amp combine
or are refused in one line, bf16 autocast trains close to fp32, channels_last and the fused
optimizer match the defaults, --compile falls back to eager with one warning, the options
are recorded in config.json, and a resumed run may change them."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from matdata.errors import ConfigError
from matdata.imageio import encode_jpeg, encode_png
from matdata.schema import Record
from matdata.shards import ShardWriter, write_index
from modnet.train import Trainer, resolve_config

CLI = [sys.executable, "-m", "matdata"]
SIZE = 64


def _record(i: int, split: str) -> Record:
    rng = np.random.default_rng(i)
    img = rng.integers(0, 256, (72, 72, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:72, :72]
    alpha = np.clip((18 + i % 5 - np.hypot(yy - 36, xx - 36)) * 60 + 128, 0, 255)
    meta = {"split": split, "fg": f"f{i}", "bg": f"b{i}", "seed": i, "coarse": False}
    return Record(
        key=f"{split}{i:04d}",
        image=encode_jpeg(img, 90),
        alpha=encode_png(alpha.astype(np.uint8)),
        meta=meta,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small dataset: 16 train and 4 val records of 72 px (no val split needed here)."""
    root = tmp_path_factory.mktemp("speed") / "data"
    infos, n = [], 0
    for split, count in (("train", 16), ("val", 4)):
        with ShardWriter(str(root), split, 0, formats=("webdataset",)) as w:
            for _ in range(count):
                w.write(_record(n, split))
                n += 1
            infos += w.close()
    write_index(str(root), infos, config={}, sources={}, rejects={})
    return root


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", COLUMNS="200")
    env.update(extra)
    return env


def _trainer(data: Path, tmp: Path, **options) -> Trainer:
    cfg = resolve_config(
        dict(data=str(data), out=str(tmp / "run"), hr_channels=8, image_size=SIZE,
             batch_size=2, device="cpu", warmup=0, lr=3e-3, threads=1, workers=0, **options)
    )  # fmt: skip
    return Trainer(cfg)


def _batch(trainer: Trainer, seed: int = 0) -> dict:
    """One loader-shaped batch (uint8 NHWC, as the stream yields it), made device-ready."""
    g = torch.Generator().manual_seed(seed)
    alpha = torch.randint(0, 256, (2, SIZE, SIZE), generator=g, dtype=torch.uint8)
    raw = {
        "image": torch.randint(0, 256, (2, SIZE, SIZE, 3), generator=g, dtype=torch.uint8),
        "alpha": alpha,
        "trimap": torch.where(alpha < 50, 0, torch.where(alpha > 200, 255, 128)).to(torch.uint8),
        "ignore": torch.zeros_like(alpha),
        "coarse": torch.zeros(2, dtype=torch.bool),
    }
    return trainer._to_device(raw)


def _losses(trainer: Trainer, steps: int = 3) -> list[float]:
    return [trainer.train_step(_batch(trainer, s))["total"] for s in range(steps)]


def test_precision_and_amp_combine_or_are_refused() -> None:
    base = dict(data="d", out="o")
    assert resolve_config({**base, "precision": "bf16"}).amp is True
    cfg = resolve_config({**base, "precision": "fp32"})
    assert cfg.amp is False and cfg.precision == "fp32"
    cfg = resolve_config({**base, "amp": False})
    assert cfg.precision is None and cfg.amp is False
    assert resolve_config({**base, "amp": True, "precision": "bf16"}).precision == "bf16"
    for bad in ({"amp": True, "precision": "fp32"}, {"amp": False, "precision": "bf16"}):
        with pytest.raises(ConfigError, match="contradicts --precision"):
            resolve_config({**base, **bad})
    with pytest.raises(ConfigError, match="unknown --precision"):
        resolve_config({**base, "precision": "fp64"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-amp", "--precision", "bf16"], "--no-amp contradicts --precision bf16"),
        (["--amp", "--precision", "fp32"], "--amp contradicts --precision fp32"),
        (["--precision", "fp16", "--device", "cpu"], "--precision fp16 needs a CUDA device"),
        (["--precision", "int8"], "unknown --precision 'int8'"),
    ],
)
def test_cli_refuses_contradictions_in_one_line(
    data: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    cmd = [*CLI, "train", "--data", str(data), "--out", str(tmp_path / "r"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    err = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(err) == 1 and message in err[0], proc.stderr
    assert not (tmp_path / "r" / "last.pt").exists()


def test_bf16_autocast_trains_on_cpu_close_to_fp32(data: Path, tmp_path: Path) -> None:
    fp32 = _trainer(data, tmp_path / "a")
    bf16 = _trainer(data, tmp_path / "b", precision="bf16")
    assert (fp32.precision, fp32.use_amp) == ("fp32", False)
    assert (bf16.precision, bf16.use_amp) == ("bf16", False)  # bf16 needs no GradScaler
    with bf16.autocast():
        _, _, matte = bf16.model(_batch(bf16)["image"], False)
    assert matte.dtype == torch.bfloat16  # autocast is really on
    a, b = _losses(fp32), _losses(bf16)
    assert all(math.isfinite(x) for x in a + b)
    # bf16 has 8 mantissa bits: close, not equal (same weights at the first step; after
    # updates at lr 3e-3 on random batches the two runs drift apart a little)
    assert a[0] != b[0] and abs(a[0] - b[0]) <= 0.02 * a[0], (a, b)
    assert np.allclose(a, b, rtol=0.1), (a, b)


def test_channels_last_matches_contiguous(data: Path, tmp_path: Path) -> None:
    plain = _trainer(data, tmp_path / "a")
    nhwc = _trainer(data, tmp_path / "b", channels_last=True)
    conv = next(p for p in nhwc.model.parameters() if p.dim() == 4 and p.shape[-1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    image = _batch(nhwc)["image"]
    assert image.is_contiguous(memory_format=torch.channels_last)
    a, b = _losses(plain), _losses(nhwc)
    # same weights: equal to float rounding; after AdamW updates within 1e-4
    assert abs(a[0] - b[0]) <= 1e-6 * a[0] and np.allclose(a, b, rtol=1e-4, atol=0), (a, b)
    # the checkpoint's tensors load into a contiguous model (predict, --init)
    state = nhwc.model.state_dict()
    plain.model.load_state_dict(state)
    assert all(torch.equal(plain.model.state_dict()[k], v) for k, v in state.items())


def test_fused_adamw_matches_the_default_on_cpu(data: Path, tmp_path: Path) -> None:
    ref = _trainer(data, tmp_path / "a")
    fused = _trainer(data, tmp_path / "b", fused=True)
    assert ref.fused is False and fused.fused is True  # off by default on the CPU
    assert fused.opt.defaults.get("fused") is True
    a, b = [ref.train_step(_batch(ref))["total"]], [fused.train_step(_batch(fused))["total"]]
    assert a == b  # same weights, same batch
    for p, q in zip(ref.model.parameters(), fused.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)  # one update: same to rounding
    a += [ref.train_step(_batch(ref, s))["total"] for s in (1, 2, 3)]
    b += [fused.train_step(_batch(fused, s))["total"] for s in (1, 2, 3)]
    assert np.allclose(a, b, rtol=1e-4, atol=0), (a, b)
    sgd = _trainer(data, tmp_path / "c", optimizer="sgd", fused=True)
    assert sgd.fused is True and math.isfinite(_losses(sgd, 1)[0])


def test_compile_failure_falls_back_to_eager_with_one_line(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    """A backend torch cannot build: torch.compile refuses at once, one line, eager run."""
    monkeypatch.setenv("MATDATA_COMPILE_BACKEND", "no_such_backend")
    eager = _trainer(data, tmp_path / "a")
    capfd.readouterr()
    comp = _trainer(data, tmp_path / "b", compile=True)
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "--compile: torch.compile failed" in err[0], err
    assert "training continues without it" in err[0]
    assert comp.speed_options()["compile"] is False
    assert _losses(eager) == _losses(comp)


def test_compile_error_at_the_first_step_falls_back(
    data: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """torch.compile compiles lazily, at the first call (inductor's C++ compiler missing,
    say): that step is redone eagerly after one warning line, with the eager result.
    Compiling MODNet for real takes minutes on this 2-core machine, so the compiled module
    is stood in for by one that raises Dynamo's own error, as a failed backend does."""
    from torch._dynamo.exc import BackendCompilerFailed

    class FailsToCompile(torch.nn.Module):
        def forward(self, *args):
            raise BackendCompilerFailed(lambda *a: None, RuntimeError("no C++ compiler: g++"))

    eager = _trainer(data, tmp_path / "a")
    comp = _trainer(data, tmp_path / "b")
    comp.net, comp._compile_pending = FailsToCompile(), True
    assert comp.speed_options()["compile"] is True
    capfd.readouterr()
    got = _losses(comp)
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "BackendCompilerFailed" in err[0], err
    assert comp.net is comp.model and comp.speed_options()["compile"] is False
    assert got == _losses(eager)

    # after the first step, only Dynamo's errors fall back: a model's own error is raised
    class Broken(torch.nn.Module):
        def forward(self, *args):
            raise ValueError("a bug in the model")

    broken = _trainer(data, tmp_path / "c")
    broken.net = Broken()
    with pytest.raises(ValueError, match="a bug in the model"):
        broken.train_step(_batch(broken))


def test_options_are_recorded_and_a_resume_may_change_precision(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    common = ["--hr-channels", "8", "--batch-size", "2", "--image-size", str(SIZE),
              "--device", "cpu", "--workers", "0", "--val-every", "0", "--log-every", "1",
              "--warmup", "0"]  # fmt: skip
    env = _env(MATDATA_COMPILE_BACKEND="no_such_backend")
    cmd = [*CLI, "train", "--data", str(data), "--out", str(run), "--steps", "2",
           "--precision", "bf16", "--channels-last", "--fused", "--compile", *common]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sum("--compile: torch.compile failed" in ln for ln in proc.stderr.splitlines()) == 1
    config = json.loads((run / "config.json").read_text())
    assert (config["precision"], config["amp"]) == ("bf16", True)
    assert config["channels_last"] is True and config["compile"] is True
    assert config["fused"] is True
    assert config["resolved"] == {
        "precision": "bf16", "grad_scaler": False, "channels_last": True, "compile": False,
        "fused_optimizer": True, "device": "cpu",
    }  # fmt: skip

    # resume: precision (and the other speed options) may change, and each change is said
    cmd = [*CLI, "train", "--resume", str(run), "--steps", "3", "--precision", "fp32",
           "--no-channels-last", "--no-compile"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = " ".join(proc.stderr.split())
    assert "resume changes precision: bf16 -> fp32" in text
    assert "resume changes channels_last: True -> False" in text
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["precision"] == "fp32" and config["amp"] is False
    log = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [d for d in log if d["kind"] == "train"]
    assert [d["step"] for d in steps] == [1, 2, 3]
    assert all(math.isfinite(d["total"]) for d in steps)


def test_speed_options_under_ddp(data: Path, tmp_path: Path) -> None:
    """Two gloo processes (torchrun) with bf16, channels_last, fused AdamW and a --compile
    that falls back: they train in step, rank 0 warns once, the checkpoint loads."""
    from modnet import build_modnet

    run = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "matdata", "train", "--data", str(data), "--out", str(run), "--steps", "2",
        "--hr-channels", "8", "--batch-size", "2", "--image-size", str(SIZE), "--device", "cpu",
        "--workers", "0", "--val-every", "0", "--log-every", "1", "--precision", "bf16",
        "--channels-last", "--fused", "--compile",
    ]  # fmt: skip
    env = _env(MATDATA_COMPILE_BACKEND="no_such_backend")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sum("--compile: torch.compile failed" in ln for ln in proc.stderr.splitlines()) == 1
    resolved = json.loads((run / "config.json").read_text())["resolved"]
    assert resolved["precision"] == "bf16" and resolved["fused_optimizer"] is True
    log = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    train = [d for d in log if d["kind"] == "train"]
    assert [d["step"] for d in train] == [1, 2] and all(math.isfinite(d["total"]) for d in train)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["data_position"]["world"] == 2
    build_modnet("mobilenetv2", 8, log=None).load_state_dict(ckpt["model"])
