"""Export a MODNet checkpoint for use outside matdata.

Three targets (``matdata export CHECKPOINT --to T --out FILE``):

* ``official``: the state_dict layout of the released ``.ckpt`` files, which the official
  MODNet code loads with ``load_state_dict(..., strict=True)`` after wrapping its model in
  ``nn.DataParallel``: every key starts with ``module.``, and the shared encoder appears
  twice (``module.backbone.model.*`` and ``module.lr_branch.backbone.model.*``).  Saved with
  ``torch.save`` as a plain ``OrderedDict`` of tensors (loads with ``weights_only=True``).
  The official code has only the MobileNetV2 backbone; other backbones are refused.
* ``onnx``: the matte alone, ``matte = f(image)``, image (B,3,H,W) float32 in [-1, 1]
  (RGB / 127.5 - 1), matte (B,1,H,W) in [0, 1]; batch, height and width are dynamic (H
  and W multiples of 32, as for the model itself).  Default opset 17 with torch's
  TorchScript-based exporter (``exporter="legacy"``: no extra dependency, emits exactly
  the requested opset); ``exporter="dynamo"`` uses ``torch.export`` + ``onnxscript``
  (opset 18 and up).
* ``torchscript``: the same matte-only function, traced (``torch.jit.load`` runs it with
  no matdata installed); any H, W multiple of 32.

Pre- and post-processing (resize to the working size, colour scaling, resizing the matte
back) are not part of the exported graphs; :mod:`modnet.inference` documents them.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from matdata.errors import ConfigError, MatdataError
from modnet.model import MODNet

TARGETS = ("official", "onnx", "torchscript")
OFFICIAL_PREFIX = "module."


class ExportError(MatdataError):
    """A model cannot be exported to the requested target."""

    reason = "export"


class MatteOnly(nn.Module):
    """``image (B,3,H,W) in [-1, 1] -> matte (B,1,H,W)``: MODNet with ``inference=True``."""

    def __init__(self, model: MODNet):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image, True)[2]


def official_state_dict(model: MODNet) -> OrderedDict[str, torch.Tensor]:
    """The released layout: ``module.`` + every key of the model's state_dict (which lists
    the shared encoder under both names), tensors detached, contiguous, on the CPU."""
    if model.backbone_name != "mobilenetv2":
        raise ExportError(
            f"the official MODNet code has only the MobileNetV2 backbone; this model uses "
            f"{model.backbone_name}",
            hint="export it with --to onnx or --to torchscript",
        )
    return OrderedDict(
        (OFFICIAL_PREFIX + k, v.detach().cpu().contiguous().clone())
        for k, v in model.state_dict().items()
    )


def _tmp(path: str) -> str:
    return f"{path}.tmp-{os.getpid()}"


def export_official(model: MODNet, out: str) -> None:
    """Write :func:`official_state_dict` to ``out`` (atomically)."""
    state = official_state_dict(model)
    tmp = _tmp(out)
    torch.save(state, tmp)
    os.replace(tmp, out)


def export_onnx(
    model: MODNet,
    out: str,
    *,
    opset: int | None = None,
    exporter: str = "legacy",
    sample_hw: tuple[int, int] = (256, 256),
) -> None:
    """Write the matte-only ONNX graph (dynamic batch, height, width) to ``out``."""
    import warnings

    if exporter not in ("legacy", "dynamo"):
        raise ConfigError(f"unknown ONNX exporter {exporter!r}", hint="legacy | dynamo")
    opset = opset or (17 if exporter == "legacy" else 18)
    if opset < 17:
        raise ConfigError(f"ONNX opset {opset} asked for; matdata exports opset 17 or newer")
    wrapper = MatteOnly(model).eval().cpu()
    x = torch.zeros(1, 3, *sample_hw)
    tmp = _tmp(out)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporters' deprecation chatter
            if exporter == "legacy":
                axes = {0: "batch", 2: "height", 3: "width"}
                torch.onnx.export(
                    wrapper,
                    (x,),
                    tmp,
                    input_names=["image"],
                    output_names=["matte"],
                    opset_version=opset,
                    dynamic_axes={"image": axes, "matte": axes},
                    dynamo=False,
                )
            else:
                try:
                    import onnxscript  # noqa: F401
                except ImportError:
                    raise ExportError(
                        "the dynamo ONNX exporter needs onnxscript",
                        hint="pip install onnxscript, or use the legacy exporter",
                    ) from None
                dim = torch.export.Dim.DYNAMIC
                torch.onnx.export(
                    wrapper,
                    (x,),
                    tmp,
                    input_names=["image"],
                    output_names=["matte"],
                    opset_version=opset,
                    dynamo=True,
                    dynamic_shapes={"image": {0: dim, 2: dim, 3: dim}},
                    external_data=False,  # one self-contained file (weights inside)
                )
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def export_torchscript(model: MODNet, out: str, *, sample_hw: tuple[int, int] = (256, 256)):
    """Write the traced matte-only module to ``out``."""
    import warnings

    wrapper = MatteOnly(model).eval().cpu()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # check_trace re-runs and compares the graph (4x the time); check_export does it
        traced = torch.jit.trace(wrapper, torch.zeros(1, 3, *sample_hw), check_trace=False)
    tmp = _tmp(out)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated
            torch.jit.save(traced, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def export_options(
    target: str, opset: int | None = None, exporter: str = "legacy"
) -> dict[str, Any]:
    """The keyword arguments of :func:`export_model` for ``target`` from the command line's
    ``--opset`` / ``--exporter`` (ONNX only), checked before any model is loaded."""
    if target not in TARGETS:
        raise ConfigError(f"--to must be one of {', '.join(TARGETS)}, got {target!r}")
    if target != "onnx" and (opset is not None or exporter != "legacy"):
        raise ConfigError("--opset and --exporter apply to --to onnx only")
    return {"opset": opset, "exporter": exporter} if target == "onnx" else {}


def export_model(model: MODNet, target: str, out: str, **kwargs: Any) -> None:
    """Export ``model`` to ``target`` (one of :data:`TARGETS`) at ``out``."""
    if target not in TARGETS:
        raise ConfigError(f"unknown export target {target!r}", hint="one of " + ", ".join(TARGETS))
    model = model.eval().cpu()
    if target == "official":
        if kwargs:
            raise ConfigError(f"--to official takes no options, got {sorted(kwargs)}")
        export_official(model, out)
    elif target == "onnx":
        export_onnx(model, out, **kwargs)
    else:
        export_torchscript(model, out, **kwargs)


# ------------------------------------------------------------------------------ checks


def exported_runner(target: str, path: str, model: MODNet | None = None):
    """A function ``image (B,3,H,W) tensor -> matte ndarray`` running an exported file.

    ``official`` loads the state_dict strictly into ``nn.DataParallel(MODNet)`` built like
    ``model`` (the official code's wrapping); ``onnx`` runs in onnxruntime (CPU);
    ``torchscript`` with ``torch.jit.load``.
    """
    import warnings

    import numpy as np

    if target == "official":
        if model is None:
            raise ConfigError("checking an official export needs the model's configuration")
        fresh = nn.DataParallel(MODNet(**model.config()))
        fresh.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        net = fresh.module.eval()

        def run_official(image: torch.Tensor) -> np.ndarray:
            with torch.no_grad():
                return net(image, True)[2].numpy()

        return run_official
    if target == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise ExportError(
                "checking an ONNX export needs onnxruntime", hint="pip install onnxruntime"
            ) from None
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return lambda image: sess.run(None, {"image": image.numpy().astype(np.float32)})[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ts = torch.jit.load(path, map_location="cpu")

    def run_script(image: torch.Tensor) -> np.ndarray:
        # the profiling executor re-optimises the graph per new shape: seconds, not ms
        with torch.no_grad(), torch.jit.optimized_execution(False):
            return ts(image).numpy()

    return run_script


def run_exported(target: str, path: str, image: torch.Tensor, model: MODNet | None = None):
    """The matte of ``image`` (B,3,H,W) computed by an exported file (see
    :func:`exported_runner`)."""
    return exported_runner(target, path, model)(image)


def check_export(
    model: MODNet, target: str, path: str, sizes: tuple[tuple[int, int], ...], seed: int = 0
) -> float:
    """Max |exported - torch| of the matte on random [-1, 1] inputs at ``sizes``."""
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    model = model.eval().cpu()
    run = exported_runner(target, path, model)
    for h, w in sizes:
        x = torch.rand(1, 3, h, w, generator=gen) * 2 - 1
        with torch.no_grad():
            ref = model(x, True)[2].numpy()
        got = run(x)
        if got.shape != ref.shape:
            raise ExportError(f"{target} export gives shape {got.shape}, torch {ref.shape}")
        worst = max(worst, float(abs(got - ref).max()))
    return worst


__all__ = [
    "OFFICIAL_PREFIX",
    "TARGETS",
    "ExportError",
    "MatteOnly",
    "check_export",
    "export_model",
    "export_options",
    "export_official",
    "export_onnx",
    "export_torchscript",
    "exported_runner",
    "official_state_dict",
    "run_exported",
]
