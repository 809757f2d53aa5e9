"""Harmonizers: callables from ``(uint8 composite (H,W,3), 0..1 mask (H,W))`` to uint8 RGB.

* ``none``: returns the composite unchanged.
* ``reinhard``: colour-statistics transfer in CIE Lab from a ring of background around the
  foreground to the foreground (Reinhard et al., "Color Transfer between Images", 2001),
  blended by ``strength``.  No weights, fast, robust; the default.
* a network (``idih256``, ``issam256``, ``dih256``, ``rainnet``, ``rainnet512``, and the
  backboned ``hrnet18s_idih256``, ``hrnet18_idih256``, ``hrnet18_v2p_idih256``,
  ``hrnet32_idih256``, ``deeplab_r34_idih256``): runs at
  the network's resolution and carries the *correction* back to full resolution
  (:func:`paste_back`), so the composite keeps its detail and the background its pixels.

Every harmonizer leaves pixels with ``mask == 0`` bit-identical, and returns empty or full
masks unchanged (:func:`mask_kind`; nothing to harmonize against / nothing to harmonize).
The pure array functions are at the top; torch enters only in :class:`NetworkHarmonizer`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from matdata.errors import CheckpointError, ConfigError, ItemError

# ------------------------------------------------------------------ pure array functions


def check_inputs(
    image: np.ndarray, mask: np.ndarray, name: str = "composite"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a composite and its mask; return ``(image uint8 (H,W,3), mask float32 (H,W))``.

    The mask must be floating point (or bool) in [0, 1] with the image's height and width;
    an integer mask is refused (is 1 the maximum or 255?), divide by 255 first.
    """
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ItemError(
            name, "bad_image", f"expected uint8 (H, W, 3), got {image.dtype} {image.shape}"
        )
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.shape != image.shape[:2]:
        raise ItemError(
            name,
            "size_mismatch",
            f"mask is {mask.shape[1]}x{mask.shape[0]} but image is "
            f"{image.shape[1]}x{image.shape[0]} (W x H)",
        )
    if mask.dtype == bool:
        mask = mask.astype(np.float32)
    elif not np.issubdtype(mask.dtype, np.floating):
        raise ItemError(
            name, "bad_mask", f"mask must be float in 0..1, got {mask.dtype} (divide by 255)"
        )
    mask = mask.astype(np.float32, copy=False)
    if mask.size and (not np.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1):
        raise ItemError(name, "bad_mask", "mask values must lie in [0, 1]")
    return image, mask


def mask_kind(mask: np.ndarray) -> str:
    """``"empty"`` (all 0), ``"full"`` (all 1) or ``"partial"`` for a 0..1 mask (H, W)."""
    if not np.any(mask > 0):
        return "empty"
    if np.all(mask >= 1):
        return "full"
    return "partial"


def resize_area(arr: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Area-average resize of an (H,W) or (H,W,C) float32 array to ``size_hw``."""
    h, w = size_hw
    if arr.shape[:2] == (h, w):
        return arr.astype(np.float32, copy=True)
    interp = cv2.INTER_AREA if h <= arr.shape[0] and w <= arr.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(arr.astype(np.float32, copy=False), (w, h), interpolation=interp)


def paste_back(
    image: np.ndarray,
    mask: np.ndarray,
    low_in: np.ndarray,
    low_out: np.ndarray,
    low_mask: np.ndarray,
) -> np.ndarray:
    """Carry a low-resolution harmonization back to the full-resolution composite.

    ``image`` (H,W,3) uint8, ``mask`` (H,W) float 0..1; ``low_in`` / ``low_out`` (h,w,3)
    float in [0,1]: the network's input and output; ``low_mask`` (h,w) 0..1.  The colour
    change ``d = low_out - low_in`` is trusted where the low mask is set; elsewhere it is
    replaced by the mask-weighted mean change ``d_bar`` so background pixels do not leak
    into the foreground's correction along the boundary::

        d'  = w d + (1 - w) d_bar,   w = low_mask
        out = image + 255 * mask * upsample_bilinear(d')

    Pixels with ``mask == 0`` are returned bit-identical; detail inside the mask is the
    composite's own (only the smooth colour change is upsampled, not the image).
    """
    h, w = image.shape[:2]
    d = low_out.astype(np.float32) - low_in.astype(np.float32)
    wgt = low_mask.astype(np.float32)[..., None]
    total = float(wgt.sum())
    d_bar = (d * wgt).sum(axis=(0, 1)) / total if total > 0 else np.zeros(3, np.float32)
    filled = d * wgt + d_bar[None, None, :] * (1.0 - wgt)
    up = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
    out = image.copy()
    ys, xs = np.nonzero(mask > 0)
    if len(ys) == 0:
        return out
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    sub_mask = mask[box]
    changed = image[box].astype(np.float32) + (255.0 * sub_mask)[..., None] * up[box]
    changed = np.clip(np.rint(changed), 0, 255).astype(np.uint8)
    np.copyto(changed, image[box], where=(sub_mask <= 0)[..., None])
    out[box] = changed
    return out


def paste_back_torch(image: Any, mask: Any, low_in: Any, low_out: Any, low_mask: Any) -> Any:
    """:func:`paste_back` on torch tensors, on the tensors' device (the GPU path).

    ``image`` (H,W,3) uint8, ``mask`` (H,W) float; ``low_in``/``low_out`` (3,h,w) in
    [0,1]; ``low_mask`` (h,w).  Same formula; the upsampling is torch's half-pixel
    bilinear (as OpenCV's), so results agree with :func:`paste_back` to rounding.
    Pixels with ``mask == 0`` are returned bit-identical.
    """
    import torch
    import torch.nn.functional as F

    h, w = image.shape[:2]
    d = low_out.float() - low_in.float()
    wgt = low_mask.float()[None]
    total = wgt.sum()
    d_bar = (d * wgt).sum(dim=(1, 2)) / total.clamp_min(1e-12)
    filled = d * wgt + d_bar[:, None, None] * (1.0 - wgt)
    up = F.interpolate(filled[None], size=(h, w), mode="bilinear", align_corners=False)
    changed = image.float() + (255.0 * mask)[..., None] * up[0].permute(1, 2, 0)
    changed = changed.round_().clamp_(0, 255).to(torch.uint8)
    return torch.where((mask > 0)[..., None], changed, image)


def background_ring(mask: np.ndarray, ring: float = 0.25, min_pixels: int = 16) -> np.ndarray:
    """Boolean (H,W) ring of background pixels around the foreground of a 0..1 mask.

    Width ``max(3, ring * sqrt(foreground area))`` px; when the ring holds fewer than
    ``min_pixels`` pixels, the whole background (``mask == 0``) is used.
    """
    fg = mask > 0
    bg = ~fg
    radius = max(3, int(round(ring * float(np.sqrt(fg.sum())))))
    # distance to the nearest foreground pixel: linear time, unlike a large dilation
    dist = cv2.distanceTransform(bg.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    out = bg & (dist <= radius)
    return out if out.sum() >= min_pixels else bg


def _weighted_stats(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel weighted mean and std of ``x`` (N, C) with weights ``w`` (N,)."""
    s = float(w.sum())
    mu = (x * w[:, None]).sum(axis=0) / s
    var = (((x - mu) ** 2) * w[:, None]).sum(axis=0) / s
    return mu, np.sqrt(var)


def reinhard_transfer(
    image: np.ndarray,
    mask: np.ndarray,
    strength: float = 0.5,
    ring: float = 0.25,
    max_ratio: float = 3.0,
) -> np.ndarray:
    """Reinhard colour transfer in CIE Lab from the background ring to the foreground.

    ``image`` (H,W,3) uint8, ``mask`` (H,W) float 0..1 (not empty, not full).  With
    foreground statistics ``mu_f, s_f`` (weighted by the mask) and ring statistics
    ``mu_b, s_b`` per Lab channel::

        t   = (lab - mu_f) * clip(s_b / s_f, 1/max_ratio, max_ratio) + mu_b
        lab'= lab + strength * (t - lab)
        out = image + mask * (rgb(lab') - image)        (exactly image where mask == 0)
    """
    if not 0.0 <= strength <= 1.0:
        raise ConfigError(f"reinhard strength must be in [0, 1], got {strength}")

    def to_lab(rgb: np.ndarray) -> np.ndarray:  # (..., 3) uint8 -> (N, 3) float32 Lab
        px = rgb.reshape(-1, 1, 3).astype(np.float32) / 255.0
        return cv2.cvtColor(px, cv2.COLOR_RGB2Lab).reshape(-1, 3)

    # only the foreground's bounding box is converted and changed; the ring is sampled
    ys, xs = np.nonzero(mask > 0)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    sub_img, sub_mask = image[box], mask[box]
    lab = to_lab(sub_img)
    wf = sub_mask.reshape(-1)
    sel_f = wf > 0
    mu_f, s_f = _weighted_stats(lab[sel_f], wf[sel_f])
    ring_lab = to_lab(image[background_ring(mask, ring)])
    mu_b, s_b = _weighted_stats(ring_lab, np.ones(len(ring_lab), np.float32))
    ratio = np.clip(s_b / np.maximum(s_f, 1e-3), 1.0 / max_ratio, max_ratio)
    # lab' = lab + strength * (t - lab) with t = (lab - mu_f) ratio + mu_b, as one affine map
    gain = (1.0 - strength + strength * ratio).astype(np.float32)
    shift = (strength * (mu_b - ratio * mu_f)).astype(np.float32)
    new_lab = (lab * gain + shift).reshape(sub_img.shape)
    new_rgb = np.clip(cv2.cvtColor(new_lab, cv2.COLOR_Lab2RGB), 0.0, 1.0) * 255.0
    img_f = sub_img.astype(np.float32)
    changed = img_f + sub_mask[..., None] * (new_rgb - img_f)
    changed = np.clip(np.rint(changed), 0, 255).astype(np.uint8)
    np.copyto(changed, sub_img, where=(sub_mask <= 0)[..., None])
    out = image.copy()
    out[box] = changed
    return out


# ------------------------------------------------------------------------ harmonizers


class Harmonizer:
    """Base class: ``h(image, mask) -> uint8 image``; ``h.batch(images, masks)``."""

    name: str = "base"
    checkpoint_sha256: str | None = None

    def params(self) -> dict[str, Any]:
        """Parameters that determine the output (recorded in each record's meta)."""
        return {}

    def provenance(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "checkpoint_sha256": self.checkpoint_sha256,
            "params": self.params(),
        }

    def _harmonize(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        image, mask = check_inputs(image, mask)
        if mask_kind(mask) != "partial":
            return image.copy()
        return self._harmonize(image, mask)

    def batch(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Harmonize several composites (of any sizes); networks batch them on the device."""
        if len(images) != len(masks):
            raise ConfigError(f"{len(images)} images but {len(masks)} masks")
        return [self(i, m) for i, m in zip(images, masks, strict=True)]


class NoneHarmonizer(Harmonizer):
    """Identity: the composite as it is (a baseline, or to re-shard without changes)."""

    name = "none"

    def _harmonize(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return image.copy()


class ReinhardHarmonizer(Harmonizer):
    """Classical Lab statistics transfer (:func:`reinhard_transfer`)."""

    name = "reinhard"

    def __init__(self, strength: float = 0.5, ring: float = 0.25, max_ratio: float = 3.0):
        if not 0.0 <= float(strength) <= 1.0:
            raise ConfigError(f"reinhard strength must be in [0, 1], got {strength}")
        self.strength = float(strength)
        self.ring = float(ring)
        self.max_ratio = float(max_ratio)

    def params(self) -> dict[str, Any]:
        return {"strength": self.strength, "ring": self.ring, "max_ratio": self.max_ratio}

    def _harmonize(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return reinhard_transfer(image, mask, self.strength, self.ring, self.max_ratio)


def _net_size(cfg: Any, size: int | Sequence[int] | None) -> tuple[int, int]:
    if size is None:
        hw = (cfg.size, cfg.size)
    elif isinstance(size, int):
        hw = (size, size)
    else:
        hw = (int(size[0]), int(size[1]))
    if min(hw) < cfg.min_size or hw[0] % cfg.multiple or hw[1] % cfg.multiple:
        raise ConfigError(
            f"{cfg.name} runs at sides that are multiples of {cfg.multiple} and at least "
            f"{cfg.min_size}, got {hw[1]}x{hw[0]}",
            hint=f"e.g. size {cfg.size}",
        )
    return hw


class NetworkHarmonizer(Harmonizer):
    """A harmonization network run at its resolution, with :func:`paste_back`.

    ``size`` (int or (h, w)) is the network input size (default: the config's square
    size, as the released inference resizes to it).  Composites are resized with area
    averaging; on CUDA, batches of ``batch_size`` run under fp16 autocast when the config
    allows it (``autocast=False`` forces float32).
    """

    def __init__(
        self,
        config: Any,
        model: Any,
        device: Any,
        checkpoint_sha256: str | None,
        size: int | Sequence[int] | None = None,
        batch_size: int = 8,
        autocast: bool | None = None,
        on_device: bool | None = None,
    ):
        import torch

        self.config = config
        self.name = config.name
        self.model = model
        self.device = device
        self.checkpoint_sha256 = checkpoint_sha256
        self.size = _net_size(config, size)
        self.batch_size = max(1, int(batch_size))
        use = config.autocast if autocast is None else bool(autocast) and config.autocast
        self.autocast = bool(use and device.type == "cuda")
        # resize + paste-back on the device too (default on CUDA: on the host they cost
        # 3-4x the network's time per 800x600 image on an H200)
        self.on_device = device.type == "cuda" if on_device is None else bool(on_device)
        if config.convention == "imagenet":
            from harmonization.networks.common import IMAGENET_MEAN, IMAGENET_STD

            self._mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
            self._std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def params(self) -> dict[str, Any]:
        return {"size": list(self.size), "paste_back": "lowres_delta_bilinear"}

    def _prepare(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        low_in = resize_area(image.astype(np.float32) / 255.0, self.size)
        low_mask = np.clip(resize_area(mask, self.size), 0.0, 1.0)
        return low_in, low_mask

    def _prepare_on_device(self, image: np.ndarray, mask: np.ndarray) -> tuple[Any, ...]:
        """Upload a composite and mask; return them with the (3,h,w) / (h,w) network inputs."""
        import torch
        import torch.nn.functional as F

        img = torch.from_numpy(image).to(self.device)
        m = torch.from_numpy(mask).to(self.device)
        h, w = self.size
        x = img.permute(2, 0, 1)[None].float().div_(255.0)
        mm = m[None, None]
        if x.shape[-2:] != (h, w):
            down = h <= x.shape[-2] and w <= x.shape[-1]
            kw: dict[str, Any] = {"mode": "area"} if down else {"mode": "bilinear"}
            if not down:
                kw["align_corners"] = False
            x = F.interpolate(x, size=(h, w), **kw)
            mm = F.interpolate(mm, size=(h, w), **kw)
        return img, m, x[0], mm[0, 0].clamp(0.0, 1.0)

    def _forward(self, x: Any, m: Any) -> Any:
        """Network prediction in [0,1]: device tensors (B,3,h,w) in [0,1] + masks (B,h,w)
        -> (B,3,h,w), in the network's conventions in between."""
        import torch

        m = m[:, None]
        if self.config.convention == "tanh":
            x = x * 2.0 - 1.0
            m = (m > 0.5).to(x.dtype)
        else:
            x = (x - self._mean) / self._std
        with (
            torch.inference_mode(),
            torch.autocast("cuda", dtype=torch.float16, enabled=self.autocast),
        ):
            y = self.model(x, m)
        y = y.float()
        y = (y + 1.0) / 2.0 if self.config.convention == "tanh" else y * self._std + self._mean
        return y.clamp(0.0, 1.0)

    def _harmonize(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.batch([image], [mask])[0]

    def batch(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(images) != len(masks):
            raise ConfigError(f"{len(images)} images but {len(masks)} masks")
        checked = [check_inputs(i, m) for i, m in zip(images, masks, strict=True)]
        out: list[np.ndarray | None] = [None] * len(checked)
        todo = []
        for i, (img, m) in enumerate(checked):
            if mask_kind(m) == "partial":
                todo.append(i)
            else:
                out[i] = img.copy()
        run = self._chunk_on_device if self.on_device else self._chunk_on_host
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            for i, o in zip(chunk, run([checked[i] for i in chunk]), strict=True):
                out[i] = o
        return [o for o in out if o is not None]

    def _chunk_on_host(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Resize and paste-back on the host (OpenCV), the network on the device."""
        import torch

        prepared = [self._prepare(img, m) for img, m in pairs]
        low_in = np.stack([p[0] for p in prepared])
        low_mask = np.stack([p[1] for p in prepared])
        x = torch.from_numpy(np.ascontiguousarray(low_in.transpose(0, 3, 1, 2)))
        pred = self._forward(x.to(self.device), torch.from_numpy(low_mask).to(self.device))
        pred = pred.permute(0, 2, 3, 1).cpu().numpy()
        return [
            paste_back(img, m, low_in[j], pred[j], low_mask[j]) for j, (img, m) in enumerate(pairs)
        ]

    def _chunk_on_device(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Resize, network and paste-back of one batch, all on the device."""
        import torch

        prepared = [self._prepare_on_device(img, m) for img, m in pairs]
        low_in = torch.stack([p[2] for p in prepared])
        low_mask = torch.stack([p[3] for p in prepared])
        pred = self._forward(low_in, low_mask)
        return [
            paste_back_torch(img, m, low_in[j], pred[j], low_mask[j]).cpu().numpy()
            for j, (img, m, _, _) in enumerate(prepared)
        ]


# ------------------------------------------------------------------------------ loading


def load_network(name: str, checkpoint: str | Mapping[str, Any], device: Any = "cpu") -> Any:
    """Build network ``name``, load ``checkpoint`` strictly (safe unpickling), ``eval()``."""
    from harmonization.device import resolve_device
    from harmonization.registry import get_config
    from matdata.checkpoints import load_weights

    cfg = get_config(name)
    dev = resolve_device(device)
    model = cfg.builder()
    load_weights(model, checkpoint, filter_fn=cfg.filter_fn)
    return model.eval().to(dev)


_CACHE: dict[tuple, Harmonizer] = {}
_CACHE_LOCK = threading.Lock()


def _file_key(path: str) -> tuple:
    try:
        st = os.stat(path)
        return (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    except OSError:
        return (path,)


def load_harmonizer(
    name: str,
    checkpoint: str | os.PathLike | Mapping[str, Any] | None = None,
    device: str = "auto",
    **params: Any,
) -> Harmonizer:
    """A ready harmonizer by name (see :func:`harmonization.registry.available`).

    Networks need ``checkpoint`` (a released state_dict file, or a state_dict); nothing
    is shipped or downloaded.  ``params``: ``strength``/``ring``/``max_ratio`` for
    ``reinhard``; ``size``, ``batch_size``, ``autocast``, ``on_device`` for networks.  Harmonizers
    loaded from a path are cached per process, so a Dask worker loads a network once.
    """
    from harmonization.registry import CLASSICAL, REGISTRY, available

    if name in CLASSICAL:
        if checkpoint is not None:
            raise ConfigError(f"harmonizer {name!r} takes no checkpoint")
        if name == "none":
            if params:
                raise ConfigError(
                    f"harmonizer 'none' takes no parameters, got {', '.join(sorted(params))}"
                )
            return NoneHarmonizer()
        try:
            return ReinhardHarmonizer(**params)
        except TypeError as exc:
            raise ConfigError(f"reinhard: {exc}") from None
    if name not in REGISTRY:
        raise ConfigError(
            f"unknown harmonizer {name!r}", hint=f"choose one of {', '.join(available())}"
        )
    cfg = REGISTRY[name]
    if checkpoint is None:
        files = " / ".join(cfg.released_files) or "a state_dict of this architecture"
        raise CheckpointError(
            f"{name} needs its released weights ({files}): pass --checkpoint PATH",
            hint="matdata ships and downloads no weights; --model reinhard needs none",
        )
    unknown = set(params) - {"size", "batch_size", "autocast", "on_device"}
    if unknown:
        raise ConfigError(f"{name}: unknown parameters {', '.join(sorted(unknown))}")
    from harmonization.device import resolve_device

    dev = resolve_device(device)
    if isinstance(checkpoint, Mapping):
        from matdata.checkpoints import state_dict_sha256

        model = load_network(name, checkpoint, dev)
        return NetworkHarmonizer(cfg, model, dev, state_dict_sha256(checkpoint), **params)
    path = os.fspath(checkpoint)
    key = (name, _file_key(path), str(dev), tuple(sorted((k, repr(v)) for k, v in params.items())))
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is None:
            from matdata.checkpoints import file_sha256

            model = load_network(name, path, dev)
            cached = NetworkHarmonizer(cfg, model, dev, file_sha256(path), **params)
            _CACHE[key] = cached
    return cached


def clear_cache() -> None:
    """Forget cached networks (frees their memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()
