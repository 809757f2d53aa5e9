"""Training on several built datasets at once: seeded per-sample mixing of their streams.

``matdata train --data A --data B [--data-weights A=0.7,B=0.3]``.  Each dataset is a
:class:`~modnet.data.MattingStream` of its own (its rank block, epochs, shuffle buffer and
augmentation, with a seed derived from the run seed and the dataset's position).  Sample ``g``
of a rank (rank-global position, ``g = batch * B + slot``) comes from dataset
``d(g)``, drawn with the weights from ``rng(seed, rank, g // MIX_BLOCK)``; it is the next
unused sample of that dataset's stream.  So:

* the draw of a position does not depend on loader workers: every worker replays the draws
  and the datasets' record streams (bytes only) and decodes only its own batches, which the
  DataLoader returns in order, exactly as :mod:`modnet.data` does for one dataset;
* resuming at batch ``k0`` counts the draws before ``k0 * B`` per dataset (arithmetic on
  ``MIX_BLOCK``-sized draws, no decoding) and starts each dataset's stream at its count:
  the continuation equals the uninterrupted run;
* default weights are proportional to the datasets' train split sizes (every sample about
  equally often); each dataset cycles its own epochs independently.

:func:`describe_datasets` is what ``config.json`` and checkpoints record per dataset
(path, name, weight, split sizes, SHA-256 of ``dataset.json``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from matdata.errors import ConfigError
from modnet.data import MattingStream, StreamConfig, _Batch, _worker_info, is_coarse

MIX_BLOCK = 4096
_TAG_DATASET = 0x4453
_TAG_SUBSEED = 0x5353


def dataset_names(dirs: Sequence[str]) -> list[str]:
    """Short unique names: the folder name (``NAME#2``... when two folders share one)."""
    names: list[str] = []
    for d in dirs:
        base = os.path.basename(os.path.normpath(d.rstrip("/"))) or d
        name, i = base, 2
        while name in names:
            name, i = f"{base}#{i}", i + 1
        names.append(name)
    return names


def parse_weights(text: str | None) -> dict[str, float] | None:
    """``"A=0.7,B=0.3"`` -> ``{"A": 0.7, "B": 0.3}`` (``None``/empty -> ``None``)."""
    if not text:
        return None
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        try:
            w = float(value)
        except ValueError:
            w = -1.0
        if not sep or not name or not w >= 0 or name in out:
            raise ConfigError(
                f"--data-weights {text!r}: {part.strip()!r} is not NAME=WEIGHT",
                hint="e.g. --data-weights coarse=0.3,fine=0.7 (each --data once, weights >= 0)",
            )
        out[name.strip()] = w
    return out


def resolve_weights(
    dirs: Sequence[str], weights: dict[str, float] | None, sizes: Sequence[int]
) -> list[float]:
    """Normalised per-dataset probabilities.  ``weights`` keys are the ``--data`` values or
    their :func:`dataset_names`; datasets left out get 0; default: proportional to ``sizes``."""
    if not weights:
        total = float(sum(sizes))
        return [s / total for s in sizes] if total > 0 else [1.0 / len(dirs)] * len(dirs)
    names = dataset_names(dirs)
    raw = [0.0] * len(dirs)
    for key, w in weights.items():
        hits = [i for i, (d, n) in enumerate(zip(dirs, names, strict=True)) if key in (d, n)]
        if not hits:
            raise ConfigError(
                f"--data-weights names {key!r}, which is not one of the --data sets",
                hint="use the dataset folder names: " + ", ".join(names),
            )
        raw[hits[0]] = float(w)
    total = sum(raw)
    if total <= 0:
        raise ConfigError("--data-weights are all zero", hint="give some dataset a weight > 0")
    return [w / total for w in raw]


def mix_draws(
    seed: int, rank: int, block: int, probs: Sequence[float], size: int = MIX_BLOCK
) -> np.ndarray:
    """Dataset index of the ``size`` positions of draw block ``block``."""
    rng = np.random.default_rng([seed, rank, block, _TAG_DATASET])
    return rng.choice(len(probs), size=size, p=np.asarray(probs, dtype=np.float64))


def draws_before(
    seed: int, rank: int, position: int, probs: Sequence[float], size: int = MIX_BLOCK
) -> list[int]:
    """How many of positions ``[0, position)`` each dataset received."""
    counts = np.zeros(len(probs), dtype=np.int64)
    full, rest = divmod(position, size)
    for block in range(full):
        counts += np.bincount(mix_draws(seed, rank, block, probs, size), minlength=len(probs))
    if rest:
        draws = mix_draws(seed, rank, full, probs, size)[:rest]
        counts += np.bincount(draws, minlength=len(probs))
    return [int(c) for c in counts]


def sub_seed(seed: int, index: int) -> int:
    """The stream seed of dataset ``index`` of a mixed run."""
    return int(np.random.default_rng([seed, index, _TAG_SUBSEED]).integers(2**31 - 1))


class MixedStream:
    """Batches mixing several datasets' training streams (see the module docstring).

    Has the face :func:`modnet.data.make_loader` needs (``iter_batches``, ``cfg``,
    ``per_rank``); batches carry an extra ``dataset`` tensor (index per sample).
    """

    def __init__(
        self,
        streams: Sequence[MattingStream],
        cfg: StreamConfig,
        probs: Sequence[float],
        *,
        start_batch: int = 0,
        rank: int = 0,
        block: int = MIX_BLOCK,
    ):
        if not cfg.train or not all(s.cfg.train for s in streams):
            raise ValueError("MixedStream is for training streams")
        self.cfg = cfg
        self.streams = list(streams)
        self.probs = [float(p) for p in probs]
        self.rank = int(rank)
        self.start_batch = int(start_batch)
        self.block = int(block)
        self.per_rank = sum(s.per_rank for s in self.streams)

    @classmethod
    def open(
        cls,
        data_dirs: Sequence[str],
        cfg: StreamConfig,
        weights: dict[str, float] | None = None,
        *,
        start_batch: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> MixedStream:
        """The mixed training stream of built datasets (``weights`` as ``--data-weights``)."""
        streams = [
            MattingStream(
                d,
                dataclasses.replace(cfg, seed=sub_seed(cfg.seed, i)),
                epochs=None,
                rank=rank,
                world=world,
            )
            for i, d in enumerate(data_dirs)
        ]
        probs = resolve_weights(list(data_dirs), weights, [s.total for s in streams])
        return cls(streams, cfg, probs, start_batch=start_batch, rank=rank)

    def _records(self, d: int, start: int) -> Iterator[tuple[int, int, Any, Any]]:
        """``(epoch, position, record, partner)`` of dataset ``d`` from its sample ``start``
        on (the same partner rule as :meth:`MattingStream._owned`)."""
        s = self.streams[d]
        n = s.per_rank
        recompose = s.cfg.recompose > 0
        epoch = start // n
        while True:
            prev = None
            for p, rec in enumerate(s._shuffled(epoch)):
                if epoch * n + p >= start:
                    yield epoch, p, rec, prev
                if recompose and rec.bg is not None:
                    prev = rec
            epoch += 1

    def iter_batches(self) -> Iterator[dict[str, Any]]:
        worker, workers = _worker_info()
        b, k0 = self.cfg.batch_size, self.start_batch
        g = k0 * b
        seed = self.cfg.seed
        size = self.block
        starts = draws_before(seed, self.rank, g, self.probs, size)
        gens = [self._records(d, start) for d, start in enumerate(starts)]
        block = g // size
        draws = mix_draws(seed, self.rank, block, self.probs, size)
        batch: _Batch | None = None
        sources: list[int] = []
        while True:
            if g // size != block:
                block = g // size
                draws = mix_draws(seed, self.rank, block, self.probs, size)
            d = int(draws[g % size])
            epoch, p, rec, partner = next(gens[d])
            if (g // b - k0) % workers == worker:
                if batch is None:
                    batch, sources = _Batch(b, self.cfg.image_size), []
                self.streams[d]._fill(rec, epoch, p, partner, batch.slot(g % b))
                batch.add(rec.key, p, is_coarse(rec.meta))
                sources.append(d)
                if g % b == b - 1:
                    out = batch.result()
                    out["dataset"] = torch.tensor(sources, dtype=torch.int64)
                    yield out
                    batch = None
            g += 1


def describe_datasets(
    dirs: Sequence[str], weights: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """Per dataset: ``path``, ``name``, ``weight`` (mixing probability), ``splits`` (samples per
    split) and ``dataset_json_sha256`` (the exact index the run read)."""
    from matdata.shards import INDEX_NAME, read_index
    from matdata.storage import join, open_input, sha256_bytes

    sizes, out = [], []
    for d, name in zip(dirs, dataset_names(dirs), strict=True):
        index = read_index(d)
        with open_input(join(d, INDEX_NAME), "rb") as f:
            sha = sha256_bytes(f.read())
        splits = {k: int(v.get("samples", 0)) for k, v in index.get("splits", {}).items()}
        sizes.append(splits.get("train", 0))
        out.append({"path": d, "name": name, "splits": splits, "dataset_json_sha256": sha})
    for info, w in zip(out, resolve_weights(dirs, weights, sizes), strict=True):
        info["weight"] = w
    return out
