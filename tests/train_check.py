"""An independent recomputation of the trainer's validation metrics, for the trainer tests.

It shares only the data stream and the model with :mod:`modnet.train`: the forward pass,
the coarse filter and the metrics (straight from the definitions: SAD = sum |d| / 1000,
MSE = mean d^2, over the whole image and the trimap's unknown band) are done here, so a
trainer that scores the ground truth (or anything but the model's matte) disagrees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


def independent_val_metrics(
    ckpt: Path, data: Path, image_size: int, batch_size: int, hr_channels: int
) -> dict[str, float]:
    """``whole/sad``, ``whole/mse``, ``unknown/sad`` of ``ckpt``'s model on ``data``'s val
    split (fine samples only, mean per image), as the trainer defines its validation."""
    from modnet import build_modnet, load_modnet_weights
    from modnet.data import MattingStream, StreamConfig, make_loader, prepare_batch

    model = build_modnet("mobilenetv2", hr_channels, log=None)
    load_modnet_weights(model, str(ckpt))
    model.eval()
    scfg = StreamConfig(
        split="val", image_size=(image_size, image_size), batch_size=batch_size, train=False
    )
    stream = MattingStream(str(data), scfg, epochs=1, rank=0, world=1)
    per_image: dict[str, list[float]] = {"whole/sad": [], "whole/mse": [], "unknown/sad": []}
    with torch.no_grad():
        for raw in make_loader(stream, workers=0):
            b = prepare_batch(raw)
            _, _, matte = model(b["image"], False)
            pred = matte.float().clamp(0, 1).numpy().astype(np.float64)
            gt = b["alpha"].numpy().astype(np.float64)
            tri = b["trimap"].numpy()
            for i in range(pred.shape[0]):
                if bool(b["coarse"][i]):
                    continue
                d = pred[i, 0] - gt[i, 0]
                band = tri[i, 0] == 0.5
                per_image["whole/sad"].append(np.abs(d).sum() / 1000.0)
                per_image["whole/mse"].append((d**2).mean())
                per_image["unknown/sad"].append(np.abs(d)[band].sum() / 1000.0)
    assert per_image["whole/sad"], "no fine validation sample to score"
    return {k: float(np.mean(v)) for k, v in per_image.items()}


def assert_metrics_match(logged: dict[str, float], want: dict[str, float]) -> None:
    """The trainer's logged metrics equal the independent ones (float32 forward noise only),
    and the model is not perfect (a matte equal to the ground truth scores 0)."""
    for key, value in want.items():
        assert value > 0, (key, value)
        assert logged[key] == pytest.approx(value, rel=1e-3, abs=1e-7), (key, logged[key], value)
