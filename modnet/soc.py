"""SOC adaptation: fine-tune a trained MODNet on unlabelled images of a target domain.

MODNet's sub-objectives consistency (Ke et al., AAAI 2022, Sec. 4): on images without
alpha, the semantic prediction is pulled towards the (blurred, downsampled) matte and
back, the detail prediction towards the matte inside the predicted boundary band, and a
frozen copy of the model taken before adaptation keeps the detail branch from drifting
(:func:`modnet.losses.soc_losses`).  Adam with a small learning rate, as in the paper.

Choices of this implementation: BatchNorm layers keep their running statistics (``eval``
mode) during adaptation, since SOC runs on small batches of a few images where batch
statistics are noise; images are centre-cropped to a square and resized to
``image_size``; the image order is a seeded permutation per pass, so a run is
deterministic on the CPU.  Undecodable images are recorded as rejects, never fatal.

Output ``OUT/soc.pt`` (``{"model": state_dict, "soc": config}``, tensors and plain
containers only) loads wherever a MODNet checkpoint does (``predict``, ``evaluate``,
``train --init``); ``OUT/metrics.jsonl`` logs the losses, ``OUT/rejects.parquet`` the
images that could not be used.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from matdata.errors import ConfigError, MatdataError
from matdata.rejects import Reject


@dataclass(frozen=True)
class SOCConfig:
    """Everything that decides an adaptation run."""

    checkpoint: str
    images: tuple[str, ...]
    out: str
    steps: int = 500
    batch_size: int = 1
    image_size: int = 512
    lr: float = 1e-5
    device: str = "auto"
    seed: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("--steps and --batch-size must be at least 1")
        if self.image_size < 32 or self.image_size % 32:
            raise ConfigError(f"--image-size must be a multiple of 32, got {self.image_size}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")


def _square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop of ``rgb`` (H,W,3) resized to ``size`` x ``size`` (area)."""
    import cv2

    h, w = rgb.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    crop = rgb[y : y + s, x : x + s]
    interp = cv2.INTER_AREA if s >= size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)


def _batches(
    files: list[str], cfg: SOCConfig, rejects: list[Reject]
) -> Iterator[tuple[list[str], torch.Tensor]]:
    """Endless batches ``(names, (B,3,S,S) in [-1,1])`` over seeded passes of ``files``."""
    from matdata.imageio import load_image
    from modnet.inference import to_input

    bad: set[str] = set()
    rng = np.random.default_rng(cfg.seed)
    names: list[str] = []
    xs: list[torch.Tensor] = []
    while True:  # a batch may span passes (fewer usable images than the batch size)
        for i in rng.permutation(len(files)):
            path = files[int(i)]
            if path in bad:
                continue
            try:
                rgb = load_image(path)
            except MatdataError as err:
                bad.add(path)
                rejects.append(Reject.from_error("soc", path, err, stage="adapt"))
                continue
            names.append(path)
            xs.append(to_input(_square(rgb, cfg.image_size)))
            if len(xs) == cfg.batch_size:
                yield names, torch.cat(xs)
                names, xs = [], []
        if len(bad) == len(files):
            raise ConfigError("none of the images could be decoded", hint="see the rejects")


def _keep_norm_statistics(model: torch.nn.Module) -> None:
    """Train mode for everything but BatchNorm, whose running statistics stay fixed."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def adapt(
    cfg: SOCConfig, on_step: Callable[[int, dict[str, float]], None] | None = None
) -> dict[str, Any]:
    """Run SOC adaptation; return a summary (steps, first/last losses, rejects, paths)."""
    from matdata.rejects import write_rejects
    from matdata.storage import atomic_open, atomic_write_text, join, makedirs
    from modnet.inference import list_images, load_checkpoint_model
    from modnet.losses import soc_losses

    files = list_images(cfg.images)
    if not files:
        raise ConfigError("no images found", hint="give image files or folders with --images")
    torch.manual_seed(cfg.seed)
    loaded = load_checkpoint_model(cfg.checkpoint, cfg.device)
    model = loaded.model
    device = next(model.parameters()).device
    backup = copy.deepcopy(model).eval()
    for p in backup.parameters():
        p.requires_grad_(False)
    _keep_norm_statistics(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))

    makedirs(cfg.out)
    rejects: list[Reject] = []
    log: list[dict[str, float]] = []
    batches = _batches(files, cfg, rejects)
    t0 = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        _, x = next(batches)
        x = x.to(device)
        semantic, detail, matte = model(x, False)
        with torch.no_grad():
            _, backup_detail, _ = backup(x, False)
        losses = soc_losses(semantic, detail, matte, backup_detail)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        opt.step()
        row = {"step": step, **{k: float(v.detach()) for k, v in losses.items()}}
        log.append(row)
        if on_step is not None:
            on_step(step, row)

    state = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "soc": json.dumps(dataclasses.asdict(cfg), sort_keys=True),
    }
    target = join(cfg.out, "soc.pt")
    with atomic_open(target, "wb") as f:
        torch.save(state, f)
    every = max(1, cfg.log_every)
    lines = [json.dumps(r) for r in log if r["step"] % every == 0 or r["step"] in (1, cfg.steps)]
    atomic_write_text(join(cfg.out, "metrics.jsonl"), "\n".join(lines) + "\n")
    write_rejects(join(cfg.out, "rejects.parquet"), rejects)
    return {
        "checkpoint": target,
        "images": len(files),
        "rejected": len(rejects),
        "steps": cfg.steps,
        "first": log[0],
        "last": log[-1],
        "seconds": time.perf_counter() - t0,
        "backbone": loaded.config,
    }
