"""Predict alpha mattes for image files and folders (what ``matdata predict`` runs).

Output naming: ``IMAGE`` becomes ``OUT/STEM.png`` (the 8-bit matte) and, with ``cutout``,
``OUT/STEM.cutout.png`` (RGBA).  Collision policy: two inputs with the same stem would
overwrite each other, so the run is refused before anything is loaded or written
(:class:`~matdata.errors.ConfigError` naming the first clash).  Images that do not decode
are skipped and counted by reason; every output is written atomically.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matdata.errors import ConfigError, ImageDecodeError


def output_paths(image: str, out_dir: str) -> tuple[str, str]:
    """``(alpha PNG, cut-out PNG)`` that ``image`` is written to under ``out_dir``."""
    from matdata.storage import join

    stem = Path(image).stem
    return join(out_dir, f"{stem}.png"), join(out_dir, f"{stem}.cutout.png")


def plan_predictions(images: Sequence[str], out_dir: str) -> list[str]:
    """The image files under ``images`` (files or folders, recursive), in order.

    Raises :class:`~matdata.errors.ConfigError` when there is none, or when two of them
    would be written to the same output (same stem)."""
    from matdata.storage import join
    from modnet.inference import list_images

    files = list_images(images)
    if not files:
        raise ConfigError("no image files found in " + ", ".join(images))
    by_stem: dict[str, list[str]] = {}
    for f in files:
        by_stem.setdefault(Path(f).stem, []).append(f)
    clash = sorted((s, fs) for s, fs in by_stem.items() if len(fs) > 1)
    if clash:
        stem, paths = clash[0]
        more = f" (and {len(clash) - 1} more names)" if len(clash) > 1 else ""
        raise ConfigError(
            f"{' and '.join(paths)} would both be written as {join(out_dir, stem + '.png')}"
            f"{more}; predict them in separate runs or rename one"
        )
    return files


@dataclass
class PredictResult:
    """What :func:`predict_images` did."""

    out_dir: str
    #: Input image files found.
    files: int
    #: Alpha mattes written.
    written: int
    #: Skipped inputs by reason (``ImageDecodeError.reason``).
    skipped: dict[str, int] = field(default_factory=dict)
    backbone: str = ""
    hr_channels: int = 0
    #: The device the model ran on (``cpu``, ``cuda:0``...).
    device: str = ""


def predict_images(
    images: Sequence[str],
    checkpoint: str,
    out_dir: str,
    *,
    cutout: bool = False,
    device: str = "auto",
    batch_size: int = 4,
    ref_size: int = 512,
    truncate: bool = False,
    on_skip: Callable[[ImageDecodeError], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> PredictResult:
    """Predict a matte for every image under ``images`` with the MODNet ``checkpoint`` and
    write them to ``out_dir`` (see the module docstring for names and collisions).

    The matte is written as ``round(255 a)`` (``truncate``: ``floor``, as the official
    demo).  ``on_skip`` receives each image that does not decode; ``on_progress(done,
    total)`` is called after each input (written or skipped)."""
    from matdata.imageio import encode_png, load_image
    from matdata.storage import atomic_write_bytes, makedirs
    from modnet.inference import (
        alpha_to_uint8,
        encode_rgba_png,
        iter_predictions,
        load_checkpoint_model,
    )
    from modnet.inference import cutout as make_cutout

    files = plan_predictions(images, out_dir)
    loaded = load_checkpoint_model(checkpoint, device)
    makedirs(out_dir)
    skipped: Counter[str] = Counter()

    def _inputs():
        for f in files:
            try:
                yield f, load_image(f)
            except ImageDecodeError as exc:
                skipped[exc.reason] += 1
                if on_skip is not None:
                    on_skip(exc)

    written = 0
    if on_progress is not None:
        on_progress(0, len(files))
    for f, rgb, alpha in iter_predictions(
        loaded.model, _inputs(), batch_size=batch_size, ref_size=ref_size
    ):
        alpha_path, cutout_path = output_paths(f, out_dir)
        a8 = alpha_to_uint8(alpha, truncate)
        atomic_write_bytes(alpha_path, encode_png(a8))
        if cutout:
            atomic_write_bytes(cutout_path, encode_rgba_png(make_cutout(rgb, a8)))
        written += 1
        if on_progress is not None:
            on_progress(written + sum(skipped.values()), len(files))
    return PredictResult(
        out_dir=out_dir,
        files=len(files),
        written=written,
        skipped=dict(sorted(skipped.items())),
        backbone=loaded.config["backbone"],
        hr_channels=loaded.config["hr_channels"],
        device=str(next(loaded.model.parameters()).device),
    )
