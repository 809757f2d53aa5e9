"""Inference with MODNet as released: reference-size rule, area resizing, batches.

For an image (H,W): if ``max(H,W) < 512`` or ``min(H,W) > 512`` it is scaled so its short
side is 512 (the long side ``int(long / short * 512)``), otherwise kept; both sides are then
floored to multiples of 32, the image (RGB / 255, then to [-1, 1]) is resized with ``area``
interpolation, the model runs with ``inference=True`` and the matte is resized back to
(H,W) with ``area`` interpolation.  (This is the rule of the official demo code; images of
the same working size are batched together, which does not change results in ``eval()``.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from matdata.device import resolve_device
from matdata.errors import CheckpointError
from modnet.model import MODNet, build_modnet, infer_config, load_modnet_weights

REF_SIZE = 512


def working_size(h: int, w: int, ref_size: int = REF_SIZE) -> tuple[int, int]:
    """The network input size (h, w) for an (h, w) image (see the module doc)."""
    if max(h, w) < ref_size or min(h, w) > ref_size:
        if w >= h:
            rh, rw = ref_size, int(w / h * ref_size)
        else:
            rh, rw = int(h / w * ref_size), ref_size
    else:
        rh, rw = h, w
    return max(32, rh - rh % 32), max(32, rw - rw % 32)


def to_input(rgb: np.ndarray) -> torch.Tensor:
    """(H,W,3) uint8 RGB -> (1,3,H,W) float32 in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0
    return (t * 2.0 - 1.0)[None]


@dataclass
class LoadedModel:
    model: MODNet
    config: dict[str, Any]
    path: str


def load_checkpoint_model(path: str, device: str | torch.device = "cpu") -> LoadedModel:
    """Build the right MODNet for a checkpoint file and load it strictly, in ``eval()``.

    Works for the released ``.ckpt`` files and for this project's checkpoints (a bare
    state_dict or ``{"model": state_dict, ...}``); backbone and ``hr_channels`` are read
    from the keys.
    """
    from matdata.checkpoints import read_state_dict, strip_prefix

    state = strip_prefix(read_state_dict(path))
    try:
        config = infer_config(state)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}", hint=exc.hint) from None
    model = build_modnet(**config)
    load_modnet_weights(model, state, name=path)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    return LoadedModel(model.to(dev).eval(), config, path)


def iter_predictions(
    model: MODNet,
    items: Iterable[tuple[Any, np.ndarray]],
    *,
    batch_size: int = 4,
    ref_size: int = REF_SIZE,
    device: torch.device | None = None,
) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
    """Stream ``(key, rgb, alpha)`` for ``(key, rgb)`` items, in input order.

    ``rgb`` (H,W,3) uint8; ``alpha`` (H,W) float32 in [0, 1] at the input's resolution.
    Consecutive images with the same working size share a batch (at most ``batch_size``).
    """
    model.eval()
    dev = device or next(model.parameters()).device
    pending: list[tuple[Any, np.ndarray, torch.Tensor]] = []

    def flush() -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
        with torch.inference_mode():
            batch = torch.cat([x for _, _, x in pending]).to(dev)
            _, _, matte = model(batch, True)
            matte = matte.float()
            outs = []
            for j, (key, rgb, _) in enumerate(pending):
                h, w = rgb.shape[:2]
                a = F.interpolate(matte[j : j + 1], size=(h, w), mode="area")[0, 0]
                outs.append((key, rgb, a.clamp(0, 1).cpu().numpy()))
        pending.clear()
        yield from outs

    for key, rgb in items:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"{key}: expected an (H,W,3) uint8 RGB image, got {rgb.shape}")
        size = working_size(rgb.shape[0], rgb.shape[1], ref_size)
        x = F.interpolate(to_input(rgb), size=size, mode="area")
        if pending and (pending[0][2].shape[-2:] != x.shape[-2:] or len(pending) >= batch_size):
            yield from flush()
        pending.append((key, rgb, x))
    if pending:
        yield from flush()


def predict_alphas(model: MODNet, images: Iterable[np.ndarray], **kwargs: Any) -> list[np.ndarray]:
    """Alpha mattes (H,W) float32 in [0, 1] of (H,W,3) uint8 RGB images, in order."""
    return [a for _, _, a in iter_predictions(model, enumerate(images), **kwargs)]


def predict_alpha(model: MODNet, rgb: np.ndarray, **kwargs: Any) -> np.ndarray:
    """One image: (H,W,3) uint8 RGB -> (H,W) float32 alpha in [0, 1]."""
    return predict_alphas(model, [rgb], **kwargs)[0]


def alpha_to_uint8(alpha: np.ndarray, truncate: bool = False) -> np.ndarray:
    """[0, 1] float -> uint8: ``rint(255 a)`` (round half to even), or with ``truncate``
    ``floor(255 a)`` as the official MODNet demo writes it (``(matte * 255).astype(uint8)``;
    up to 1 lower, e.g. 0.999 -> 254 instead of 255)."""
    scaled = np.asarray(alpha, dtype=np.float32) * np.float32(255.0)
    if truncate:
        return np.clip(scaled, 0, 255).astype(np.uint8)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def cutout(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(H,W,4) uint8 RGBA: the image with the predicted alpha as its alpha channel."""
    a = alpha if alpha.dtype == np.uint8 else alpha_to_uint8(alpha)
    return np.concatenate([rgb, a[..., None]], axis=2)


def encode_rgba_png(rgba: np.ndarray) -> bytes:
    """(H,W,4) uint8 RGBA -> PNG bytes (``matdata.imageio.encode_png`` takes 1 or 3 channels)."""
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    if not ok:  # pragma: no cover - OpenCV only fails on invalid input
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


# ------------------------------------------------------------------------------ inputs

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def list_images(paths: Iterable[str]) -> list[str]:
    """Image files named directly or found (recursively, sorted) under named folders.

    A missing path is a :class:`~matdata.errors.ConfigError`.
    """
    from pathlib import Path

    from matdata.errors import ConfigError

    files: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(
                str(f)
                for f in path.rglob("*")
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            )
            files.extend(found)
        elif path.is_file():
            files.append(str(path))
        else:
            raise ConfigError(f"{p} does not exist", hint="give image files or folders")
    return files


def pair_by_stem(images: list[str], alphas: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """Pair image and alpha files by file stem; return ``(pairs, images without alpha)``."""
    from pathlib import Path

    from matdata.errors import ConfigError

    by_stem: dict[str, str] = {}
    for a in alphas:
        stem = Path(a).stem
        if stem in by_stem:
            raise ConfigError(f"two alpha files share the name {stem!r}: {by_stem[stem]}, {a}")
        by_stem[stem] = a
    pairs, unpaired = [], []
    for im in images:
        a = by_stem.get(Path(im).stem)
        if a is None:
            unpaired.append(im)
        else:
            pairs.append((im, a))
    return pairs, unpaired


__all__ = [
    "REF_SIZE",
    "LoadedModel",
    "alpha_to_uint8",
    "IMAGE_SUFFIXES",
    "cutout",
    "encode_rgba_png",
    "list_images",
    "pair_by_stem",
    "iter_predictions",
    "load_checkpoint_model",
    "predict_alpha",
    "predict_alphas",
    "resolve_device",
    "to_input",
    "working_size",
]
