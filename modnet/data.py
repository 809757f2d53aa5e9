"""Streaming training data for MODNet over a built dataset's shards.

How a split is consumed (all of it deterministic for ``(seed, epoch)``):

1. **Epoch order.**  The split's shards are permuted with ``rng(seed, epoch)`` (same on
   every rank) and concatenated into one virtual sequence of ``N`` samples (counts from
   ``dataset.json``).
2. **Ranks.**  Rank ``r`` of ``R`` takes the contiguous block ``[N r / R, N (r+1) / R)`` of
   that sequence (integer division): blocks are disjoint and cover the split, and a rank
   reads only the shards overlapping its block.
3. **Shuffle.**  The rank's records pass a shuffle buffer driven by
   ``rng(seed, epoch, rank)``; output position ``p`` of epoch ``e`` has the rank-global
   position ``g = e * n_r + p`` (``n_r`` = block length).
4. **Batches and workers.**  Sample ``g`` belongs to batch ``k = g // B``.  With ``W``
   DataLoader workers, worker ``w`` decodes and yields only batches with
   ``(k - k0) % W == w`` (``k0`` = first batch to produce); PyTorch's DataLoader takes
   batches from workers round-robin starting at worker 0, so the rank sees batches
   ``k0, k0+1, ...`` in order whatever ``W`` is.  Every worker replays the same record
   stream and shuffle (bytes only; decoding is the expensive part and is not repeated).
5. **Augmentation** of sample ``g`` uses ``rng(seed, epoch, rank, p)``: independent of
   ``W`` and of where a run was interrupted.
6. **Resume.**  The data position is the number of batches a rank has consumed (the
   optimizer step); a resumed stream starts at ``k0 = step``, skipping whole epochs by
   arithmetic and replaying only the current epoch's shuffle.

Each sample is a dict of uint8 tensors, cheap to make and to pass between processes:
``image (H,W,3)``, ``alpha (H,W)``, ``trimap (H,W)`` (0/128/255), ``ignore (H,W)`` (255 =
excluded from losses), plus ``coarse`` (bool: alpha is a coarse mask, train the semantic
branch only), ``key`` (str) and ``position`` (int).  :func:`prepare_batch` turns a
collated batch into MODNet's float layout on the training device (``image`` in
``[-1, 1]``, ``alpha`` in ``[0, 1]``, ``trimap`` in ``{0, 0.5, 1}``).

Speed (``benchmarks/loader_throughput.py``): :func:`make_loader` yields whole batches
(:meth:`MattingStream.iter_batches`, ``batch_size=None`` for the DataLoader); each sample
is written straight into the batch tensors (shared memory in a worker; with or without
workers reused once the consumer released the batch: :class:`_BufferPool`,
:func:`release_batch`), and the crop
is one resize with flip and jitter at the smaller of crop and output size
(:func:`crop_into`).  The trimap is :func:`matdata.trimap.make_trimap` on the final alpha.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
import torch.utils.data

from matdata.errors import DatasetError, MatdataError
from matdata.imageio import fast_decode_jpeg, fast_decode_png_gray
from matdata.schema import is_coarse  # the one coarse rule (re-exported here)
from matdata.trimap import TrimapParams, make_trimap, random_trimap_params
from modnet.augment import (
    AugmentConfig,
    binarize,
    center_box,
    crop_into,
    draw_augment,
    recompose,
)

_log = logging.getLogger("matdata.modnet")

T = TypeVar("T")

# rng stream tags (keep streams of different purposes independent)
_TAG_SHARDS = 0x5348
_TAG_BUFFER = 0x4255
_TAG_SAMPLE = 0x5341
_TAG_MIX = 0x4D49


# ------------------------------------------------------------------ pure arithmetic


def shard_order(n_shards: int, seed: int, epoch: int, shuffle: bool) -> list[int]:
    """Shard visiting order of an epoch: a permutation from ``rng(seed, epoch)``."""
    if not shuffle:
        return list(range(n_shards))
    rng = np.random.default_rng([seed, epoch, _TAG_SHARDS])
    return [int(i) for i in rng.permutation(n_shards)]


def rank_block(total: int, rank: int, world: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank`` of ``world`` in a sequence of ``total`` items."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world of {world}")
    return total * rank // world, total * (rank + 1) // world


def block_slices(
    order: Sequence[int], counts: Sequence[int], start: int, stop: int
) -> list[tuple[int, int, int]]:
    """Rows ``(shard, lo, hi)`` of the shards (in ``order``) that cover ``[start, stop)``
    of their concatenation; ``counts[s]`` is the number of samples of shard ``s``."""
    out = []
    offset = 0
    for s in order:
        n = counts[s]
        lo, hi = max(start, offset), min(stop, offset + n)
        if lo < hi:
            out.append((s, lo - offset, hi - offset))
        offset += n
        if offset >= stop:
            break
    return out


def shuffle_buffer(items: Iterable[T], size: int, rng: np.random.Generator) -> Iterator[T]:
    """Yield ``items`` in a locally shuffled order using a buffer of ``size`` entries.

    Fill the buffer, then for every further item emit a uniformly chosen buffered entry
    and put the item in its place; drain the remainder in random order at the end.
    ``size <= 1`` yields the input order.
    """
    if size <= 1:
        yield from items
        return
    buf: list[T] = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = int(rng.integers(len(buf)))
        out, buf[j] = buf[j], item
        yield out
    for j in rng.permutation(len(buf)):
        yield buf[int(j)]


def worker_owns(
    position: int, batch_size: int, first_batch: int, worker: int, workers: int
) -> bool:
    """Whether rank-global sample ``position`` is produced by loader worker ``worker``."""
    k = position // batch_size
    return k >= first_batch and (k - first_batch) % workers == worker


# ------------------------------------------------------------------------ the dataset


@dataclass
class StreamConfig:
    """What a :class:`MattingStream` produces (recorded in training checkpoints)."""

    split: str = "train"
    image_size: tuple[int, int] = (512, 512)  # (H, W), multiples of 32
    batch_size: int = 8
    train: bool = True  # augment + shuffle + random trimaps; else fixed eval transform
    seed: int = 0
    fmt: str | None = None
    shuffle_buffer: int = 256
    recompose: float = 0.0  # probability of re-compositing fg over another record's bg
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        d["augment"] = self.augment.to_dict()
        return d


RecordOpener = Callable[[int], Iterator[Any]]  # shard number -> Records


class MattingStream:
    """An iterable over samples of one split of a built dataset (see module docstring).

    ``rank``/``world`` default to the initialised ``torch.distributed`` group (or 0/1).
    ``epochs=None`` streams forever (training); ``start_batch`` is the resume position.
    ``shard_counts``/``open_shard`` replace the on-disk shards (tests, benchmarks).
    """

    def __init__(
        self,
        data_dir: str | None,
        cfg: StreamConfig,
        *,
        epochs: int | None = None,
        start_batch: int = 0,
        rank: int | None = None,
        world: int | None = None,
        shard_counts: Sequence[int] | None = None,
        open_shard: RecordOpener | None = None,
        verify: bool = True,
    ):
        self.data_dir = data_dir
        self.verify = verify
        self.cfg = cfg
        self.epochs = epochs
        self.start_batch = int(start_batch)
        if rank is None or world is None:
            rank, world = _dist_rank_world()
        self.rank, self.world = int(rank), int(world)
        if shard_counts is None:
            from matdata.shards import list_shards

            if data_dir is None:
                raise DatasetError("no dataset directory given")
            self._shards = list_shards(data_dir, cfg.split, cfg.fmt)
            shard_counts = [s.samples for s in self._shards]
        self.counts = [int(c) for c in shard_counts]
        self._open = open_shard
        self.total = sum(self.counts)
        lo, hi = rank_block(self.total, self.rank, self.world)
        self.per_rank = hi - lo
        if self.per_rank == 0:
            raise DatasetError(
                f"split {cfg.split!r} has {self.total} samples, too few for {self.world} rank(s)",
                hint="build more data or use fewer processes",
            )

    # ------------------------------------------------------------------ records

    def _open_shard(self, s: int) -> Any:
        if self._open is not None:
            return self._open(s)
        from matdata.shards import ShardReader

        assert self.data_dir is not None
        return ShardReader(self.data_dir, self._shards[s], verify=self.verify)

    def epoch_records(self, epoch: int) -> Iterator[Any]:
        """The records of this rank's block in epoch ``epoch``, before shuffling.

        On-disk shards are hashed while they stream; a shard left early (the block ends
        inside it) has its unread rest hashed without decoding, and with ``verify`` a
        mismatch raises one :class:`DatasetError` naming the shard."""
        order = shard_order(len(self.counts), self.cfg.seed, epoch, self.cfg.train)
        start, stop = rank_block(self.total, self.rank, self.world)
        for s, lo, hi in block_slices(order, self.counts, start, stop):
            reader = self._open_shard(s)
            where = getattr(getattr(reader, "shard", None), "path", f"shard {s}")
            it = iter(reader)
            try:
                for i, rec in enumerate(it):
                    if i >= hi:
                        break
                    if i >= lo:
                        setattr(rec, _SHARD_ATTR, where)  # for bad-record reports
                        yield rec
                finish = getattr(reader, "finish", None)
                if finish is not None:
                    finish()
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()

    def epoch_keys(self, epoch: int = 0) -> list[str]:
        """Keys of this rank's block in ``epoch`` in output order (no decoding)."""
        return [rec.key for rec in self._shuffled(epoch)]

    def _shuffled(self, epoch: int) -> Iterator[Any]:
        recs = self.epoch_records(epoch)
        if not self.cfg.train:
            return recs
        rng = np.random.default_rng([self.cfg.seed, epoch, self.rank, _TAG_BUFFER])
        return shuffle_buffer(recs, self.cfg.shuffle_buffer, rng)

    # ------------------------------------------------------------------ samples

    def _owned(self, worker: int, workers: int) -> Iterator[tuple[int, int, Any, Any]]:
        """``(epoch, position, record, partner)`` of the samples ``worker`` of ``workers``
        produces, in stream order.  With ``recompose``, ``partner`` is the record with a
        ``bg`` seen just before (a different, randomly shuffled record of the dataset)."""
        b, n, first = self.cfg.batch_size, self.per_rank, self.start_batch
        recompose = self.cfg.recompose > 0 and self.cfg.train
        epoch = first * b // n
        while self.epochs is None or epoch < self.epochs:
            base = epoch * n
            prev = None
            for p, rec in enumerate(self._shuffled(epoch)):
                if worker_owns(base + p, b, first, worker, workers):
                    yield epoch, p, rec, prev
                if recompose and rec.bg is not None:
                    prev = rec
            epoch += 1

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, workers = _worker_info()
        for epoch, p, rec, partner in self._owned(worker, workers):
            try:
                yield self.make_sample(rec, epoch, p, partner=partner)
            except MatdataError as exc:
                _log.warning("skipping undecodable record: %s", bad_record(rec, exc))

    def iter_batches(self) -> Iterator[dict[str, Any]]:
        """Collated batches of this loader worker (what :func:`make_loader` yields): the
        samples of :meth:`__iter__` grouped by batch, written straight into the batch
        tensors (in shared memory inside a DataLoader worker), so there is no per-sample
        tensor and no collation copy.  Layout as ``default_collate`` of the samples."""
        worker, workers = _worker_info()
        b, n = self.cfg.batch_size, self.per_rank
        batch: _Batch | None = None
        for epoch, p, rec, partner in self._owned(worker, workers):
            g = epoch * n + p
            if batch is None:
                batch = _Batch(b, self.cfg.image_size)
            try:  # an undecodable record is left out of its batch and reported with it
                self._fill(rec, epoch, p, partner, batch.slot(len(batch.keys)))
                batch.add(rec.key, p, is_coarse(rec.meta))
            except MatdataError as exc:
                batch.bad.append(bad_record(rec, exc))
            if g % b == b - 1:
                yield batch.result()
                batch = None
        if batch is not None:  # end of the data: a partial batch
            yield batch.result()

    def make_sample(
        self, rec: Any, epoch: int, position: int, partner: Any = None
    ) -> dict[str, Any]:
        """Decode and transform one record (deterministic for its position)."""
        h, w = self.cfg.image_size
        slot = _Slot(
            np.empty((h, w, 3), np.uint8),
            np.empty((h, w), np.uint8),
            np.empty((h, w), np.uint8),
            np.empty((h, w), np.uint8),
        )
        self._fill(rec, epoch, position, partner, slot)
        return to_tensors(
            slot.image, slot.alpha, slot.trimap, slot.ignore, is_coarse(rec.meta), rec.key, position
        )

    def _fill(self, rec: Any, epoch: int, position: int, partner: Any, out: _Slot) -> None:
        """Decode one record and write its sample into ``out``.

        Training: random resized crop, horizontal flip, colour jitter
        (:func:`modnet.augment.draw_augment`), then a random-width trimap
        (:func:`matdata.trimap.random_trimap_params`), all drawn from ``rng(seed, epoch,
        rank, position)``; evaluation: centre crop, fixed trimap.  Arrays are written by
        :func:`modnet.augment.crop_into` (one resize, never nearest).
        """
        cfg, aug = self.cfg, self.cfg.augment
        height, width = cfg.image_size
        image = fast_decode_jpeg(rec.image)
        alpha = fast_decode_png_gray(rec.alpha)
        ignore = fast_decode_png_gray(rec.ignore) if rec.ignore is not None else None
        if alpha.shape != image.shape[:2]:
            raise DatasetError(f"record {rec.key}: alpha {alpha.shape} != image {image.shape}")
        jitter: tuple[float, float, float] | None = None
        flip = False
        if cfg.train:
            ids = [cfg.seed, epoch, self.rank, position]
            rng = np.random.default_rng([*ids, _TAG_SAMPLE])
            if (
                partner is not None
                and rec.fg is not None
                and partner.bg is not None
                and np.random.default_rng([*ids, _TAG_MIX]).random() < cfg.recompose
            ):
                fg = fast_decode_jpeg(rec.fg)
                image = recompose(fg, alpha, fast_decode_jpeg(partner.bg))
            box, flip, jitter = draw_augment(alpha.shape, rng, cfg.image_size, aug)
            params = random_trimap_params(rng, aug.trimap_rel_range)
        else:
            box = center_box(*alpha.shape, width / height)
            params = TrimapParams()
        crop_into(image, box, out.image, flip, jitter)
        crop_into(alpha, box, out.alpha, flip)
        if ignore is None:
            out.ignore.fill(0)
        else:
            crop_into(ignore, box, out.ignore, flip)
            binarize(out.ignore)
        make_trimap(out.alpha, params, out=out.trimap)


@dataclass
class _Slot:
    """Where one sample's arrays go (views into batch tensors, or standalone arrays)."""

    image: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray  # (H, W) uint8
    trimap: np.ndarray  # (H, W) uint8
    ignore: np.ndarray  # (H, W) uint8


class _Batch:
    """Batch tensors filled slot by slot; shared memory inside a DataLoader worker (what
    ``default_collate`` does there), so sending the batch to the main process is free.
    Under :func:`make_loader` the tensors come from the loader's :class:`_BufferPool`
    (the worker's, or the loader's own without workers), reused once the consumer
    released them."""

    def __init__(self, size: int, image_size: tuple[int, int]):
        h, w = image_size
        shapes = {
            "image": (size, h, w, 3),
            "alpha": (size, h, w),
            "trimap": (size, h, w),
            "ignore": (size, h, w),
        }
        self.buffer: torch.Tensor | None = None
        pool = _CURRENT_POOL
        if pool is not None:
            self.tensors, self.buffer = pool.acquire(shapes)
        else:
            shared = torch.utils.data.get_worker_info() is not None
            self.tensors = {k: _empty(v, shared) for k, v in shapes.items()}
        self.arrays = {k: t.numpy() for k, t in self.tensors.items()}
        self.keys: list[str] = []
        self.positions: list[int] = []
        self.coarse: list[bool] = []
        self.bad: list[dict[str, str]] = []

    def slot(self, i: int) -> _Slot:
        a = self.arrays
        return _Slot(a["image"][i], a["alpha"][i], a["trimap"][i], a["ignore"][i])

    def add(self, key: str, position: int, coarse: bool) -> None:
        self.keys.append(key)
        self.positions.append(position)
        self.coarse.append(bool(coarse))

    def result(self) -> dict[str, Any]:
        n = len(self.keys)
        out: dict[str, Any] = {k: t[:n] for k, t in self.tensors.items()}
        out["coarse"] = torch.tensor(self.coarse, dtype=torch.bool)
        out["key"] = list(self.keys)
        out["position"] = torch.tensor(self.positions, dtype=torch.int64)
        if self.bad:  # undecodable records left out: {key, shard, reason, detail}
            out["bad"] = list(self.bad)
        if self.buffer is not None:  # pooled worker buffer: see release_batch
            out[BUFFER_KEY] = self.buffer
        return out


#: Batch key of a pooled worker buffer's handle ``[loader, worker, slot]`` (int64).
BUFFER_KEY = "_buffer"

#: Buffers a worker keeps for reuse: the DataLoader has at most ``prefetch_factor`` (2)
#: batches of a worker in flight, plus the one the consumer is working on.
_POOL_SLOTS = 4


class _BufferPool:
    """The batch buffers of one loader worker (shared memory), or of a loader without
    workers (heap), reused across batches.

    Fresh shared memory costs about as much as decoding (first-touch page faults on new
    shared pages: 1.5-1.8 ms per 512x512 sample here, against 0.04 ms for reused heap;
    fresh heap batches cost 0.6-0.8 ms per sample, as the allocator returns freed
    multi-megabyte batches to the system), so a worker keeps up to :data:`_POOL_SLOTS`
    buffer sets and writes a new batch into
    one only after the consumer has released it (:func:`release_batch`, which
    :func:`prepare_batch` calls once it has copied the batch).  The release flags are a
    small shared tensor made by :func:`make_loader` (``flags[worker, slot] = 1``: free).
    A batch that is never released keeps its buffer: when every slot is taken the worker
    allocates fresh shared memory as before, so holding batches stays correct.
    """

    def __init__(self, loader: int, flags: torch.Tensor, worker: int, shared: bool = True):
        self.loader, self.flags, self.worker, self.shared = loader, flags, worker, shared
        self.sets: list[dict[str, torch.Tensor]] = []
        self.token = int.from_bytes(os.urandom(8), "little") >> 1  # this pool, for receivers
        self.shipped: set[int] = set()

    def acquire(
        self, shapes: dict[str, tuple[int, ...]]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        row = self.flags[self.worker]
        for slot, tensors in enumerate(self.sets):
            if row[slot] and all(tuple(tensors[k].shape) == v for k, v in shapes.items()):
                row[slot] = 0
                return tensors, self._handle(slot)
        tensors = {k: _empty(v, self.shared) for k, v in shapes.items()}
        if len(self.sets) < row.numel():
            row[len(self.sets)] = 0  # taken (a flag left over from an earlier pass is stale)
            self.sets.append(tensors)
            return tensors, self._handle(len(self.sets) - 1)
        return tensors, None

    def _handle(self, slot: int) -> torch.Tensor:
        return torch.tensor([self.loader, self.worker, slot], dtype=torch.int64)

    def ship(self, batch: dict[str, Any]) -> _Shipment:
        """``batch`` (made from buffer set ``slot`` of this pool) as a :class:`_Shipment`."""
        slot = int(batch[BUFFER_KEY][2])
        tensors = self.sets[slot]
        first = slot not in self.shipped
        self.shipped.add(slot)
        rest = {
            k: v.numpy() if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()
            if k not in tensors and k != BUFFER_KEY
        }
        n = len(batch["key"])
        return _Shipment(
            (self.loader, self.worker, self.token, slot), n, tensors if first else None, rest
        )


#: The pool of the loader whose stream is producing a batch right now (set by
#: :func:`_pooled` around each step of the stream; None outside :func:`make_loader`).
_CURRENT_POOL: _BufferPool | None = None

#: Release flags of the live loaders of this process, by loader number.
_LOADER_FLAGS: weakref.WeakValueDictionary[int, torch.Tensor] = weakref.WeakValueDictionary()
_loader_numbers = itertools.count()


def release_batch(batch: dict[str, Any]) -> None:
    """Hand a loader batch's buffers back to the pool that made it: it may
    overwrite them with a later batch, so the batch's tensors must not be read after this.
    A no-op for batches without a pooled buffer (not from :func:`make_loader`, or already
    released)."""
    handle = batch.pop(BUFFER_KEY, None)
    if handle is None:
        return
    loader, worker, slot = (int(v) for v in handle)
    flags = _LOADER_FLAGS.get(loader)
    if flags is not None:
        flags[worker, slot] = 1


#: Attribute set on streamed records: the shard they came from (for bad-record reports).
_SHARD_ATTR = "_matdata_shard"


def bad_record(rec: Any, exc: BaseException) -> dict[str, str]:
    """``{key, shard, reason, detail}`` of a record that could not be decoded."""
    return {
        "key": str(getattr(rec, "key", "?")),
        "shard": str(getattr(rec, _SHARD_ATTR, "?")),
        "reason": str(getattr(exc, "reason", type(exc).__name__)),
        "detail": str(exc)[:300],
    }


def _empty(shape: tuple[int, ...], shared: bool) -> torch.Tensor:
    """An uninitialised uint8 tensor, in shared memory if ``shared``.  Otherwise numpy
    allocates it: its buffers come back from the heap of earlier batches, while torch's
    allocator maps fresh pages for every batch (page faults cost ~0.1 ms per sample)."""
    if not shared:
        return torch.from_numpy(np.empty(shape, np.uint8))
    numel = int(np.prod(shape))
    try:
        storage = torch.UntypedStorage._new_shared(numel)
        return torch.empty(0, dtype=torch.uint8).set_(storage, 0, shape)
    except (AttributeError, RuntimeError, TypeError):  # private API: fall back
        return torch.empty(shape, dtype=torch.uint8).share_memory_()


def to_tensors(
    image: np.ndarray,
    alpha: np.ndarray,
    trimap: np.ndarray,
    ignore: np.ndarray | None,
    coarse: bool,
    key: str,
    position: int,
) -> dict[str, Any]:
    """Arrays -> the loader's sample dict: uint8 tensors without copies (the conversion to
    float happens once per batch on the training device, :func:`prepare_batch`)."""
    if ignore is None:
        ignore = np.zeros_like(alpha)
    return {
        "image": torch.from_numpy(image),  # (H,W,3) uint8
        "alpha": torch.from_numpy(alpha),  # (H,W) uint8
        "trimap": torch.from_numpy(trimap),  # (H,W) uint8 0/128/255
        "ignore": torch.from_numpy(ignore),  # (H,W) uint8, 255 = ignore
        "coarse": torch.tensor(bool(coarse)),
        "key": key,
        "position": position,
    }


def prepare_batch(
    batch: dict[str, Any], device: torch.device | str = "cpu", release: bool = True
) -> dict[str, Any]:
    """A collated loader batch -> float tensors on ``device``, as MODNet's losses expect.

    ``image`` (B,3,H,W) ``= x / 127.5 - 1``; ``alpha`` (B,1,H,W) ``= a / 255``; ``trimap``
    (B,1,H,W) in ``{0, 0.5, 1}``; ``ignore`` (B,1,H,W) in ``{0, 1}``; ``coarse`` (B,) bool.
    With ``release`` (default) a batch from a loader worker is then handed back
    (:func:`release_batch`): read the returned tensors, not ``batch``'s uint8 ones.
    """
    dev = torch.device(device)
    nb = dev.type == "cuda"
    image = batch["image"].to(dev, non_blocking=nb).permute(0, 3, 1, 2).float()
    out = dict(batch)
    out["image"] = image.div_(127.5).sub_(1.0)
    out["alpha"] = batch["alpha"].to(dev, non_blocking=nb)[:, None].float().div_(255.0)
    t = batch["trimap"].to(dev, non_blocking=nb)[:, None]
    out["trimap"] = (t >= 192).float() + 0.5 * ((t >= 64) & (t < 192)).float()
    out["ignore"] = (batch["ignore"].to(dev, non_blocking=nb)[:, None] >= 128).float()
    out["coarse"] = batch["coarse"].to(dev, non_blocking=nb)
    out.pop(BUFFER_KEY, None)
    if release:
        # Every uint8 tensor has been read: on the CPU into new tensors; to CUDA, shared
        # memory is pageable, and a copy from pageable memory returns once the source
        # is staged (with pin_memory the batch here is a pinned copy anyway).
        release_batch(batch)
    return out


# ------------------------------------------------------------------ torch glue


def _dist_rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _worker_info() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _worker_init(_: int) -> None:
    """One thread per loader worker: workers run side by side with the trainer."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def make_loader(stream: MattingStream, workers: int = 2, pin_memory: bool = False) -> Any:
    """A :class:`torch.utils.data.DataLoader` yielding batches of ``stream`` in order."""
    ds = _TorchStream(stream, workers)
    return torch.utils.data.DataLoader(
        ds,
        batch_size=None,  # the stream yields whole batches (MattingStream.iter_batches)
        num_workers=workers,
        persistent_workers=False,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if workers > 0 else None,
        prefetch_factor=2 if workers > 0 else None,
        # Forked workers inherit the parent's OpenCV/OpenMP thread pools in a broken state
        # and can deadlock (e.g. after a Dask pipeline ran in this process); forkserver
        # workers start clean and still avoid spawn's full re-import per worker.
        multiprocessing_context=_loader_context() if workers > 0 else None,
    )


#: Modules the loader's forkserver imports once, so that each worker forks with them loaded
#: instead of importing torch itself (about 2 CPU-seconds per worker start) and the
#: record/image modules (0.3 -> 0.2 CPU-s per worker start).  None of them starts a thread
#: (the server stays single-threaded, so forking from it is safe); ``pyarrow`` does start
#: one on import, ``cv2`` too without ``OMP_NUM_THREADS=1``: the workers import those.
_PRELOAD = ("torch", "modnet.data", "modnet.augment", "matdata.imageio", "matdata.trimap",
            "matdata.shards")  # fmt: skip


def _loader_context() -> Any:
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    from multiprocessing import forkserver

    # extend (not replace) the preload list; it only matters until the server has started
    server = getattr(forkserver, "_forkserver", None)
    current = list(getattr(server, "_preload_modules", None) or ["__main__"])
    wanted = current + [m for m in _PRELOAD if m not in current]
    if wanted != current:
        ctx.set_forkserver_preload(wanted)
    return ctx


class _TorchStream(torch.utils.data.IterableDataset):
    """The torch face of a :class:`MattingStream` (workers split it by batch index); it
    carries the release flags of the :class:`_BufferPool` of each worker (shared memory),
    or of the loader's own pool without workers (reused heap buffers: freshly mapped
    batch tensors cost page faults, 0.6-0.8 ms per 512x512 sample here)."""

    def __init__(self, stream: MattingStream, workers: int = 0):
        super().__init__()
        self.stream = stream
        self.loader = next(_loader_numbers)
        self.flags = torch.zeros((max(workers, 1), _POOL_SLOTS), dtype=torch.uint8)
        if workers > 0:
            self.flags.share_memory_()
            # the buffers received from this loader's workers go with it
            weakref.finalize(self, _forget_received, self.loader)
        _LOADER_FLAGS[self.loader] = self.flags

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        if info is None:
            # each pass its own flags: a late release of an earlier pass's batch is a no-op
            self.loader = next(_loader_numbers)
            self.flags = torch.zeros((1, _POOL_SLOTS), dtype=torch.uint8)
            _LOADER_FLAGS[self.loader] = self.flags
            pool = _BufferPool(self.loader, self.flags, 0, shared=False)
        else:
            pool = _BufferPool(self.loader, self.flags, info.id)
        return _pooled(self.stream.iter_batches(), pool)


def _pooled(batches: Iterator[dict[str, Any]], pool: _BufferPool) -> Iterator[Any]:
    """``batches`` with ``pool`` as :data:`_CURRENT_POOL` while each one is made (only
    then: several loaders may be iterated in turn in one process); in a worker, pooled
    batches leave as :class:`_Shipment`."""
    global _CURRENT_POOL
    while True:
        prev, _CURRENT_POOL = _CURRENT_POOL, pool
        try:
            item = next(batches)
        except StopIteration:
            return
        finally:
            _CURRENT_POOL = prev
        yield pool.ship(item) if pool.shared and BUFFER_KEY in item else item


class _Shipment:
    """A pooled worker batch as it travels to the loader's process: the buffer set's
    shared tensors only the first time that set is sent (the receiver keeps them mapped,
    :data:`_RECEIVED`), afterwards just its slot, the sample count and the small fields
    (numpy arrays and Python values).  Sending shared tensors costs a file-descriptor
    transfer per tensor, and small tensors a new shared-memory segment each: about 4 ms
    of worker CPU per batch here (0.5 ms per sample), and as much in the receiver.
    Unpickling yields the plain batch dict (:func:`_receive`)."""

    def __init__(self, key: tuple[int, int, int, int], n: int, tensors: Any, rest: dict):
        self.key, self.n, self.tensors, self.rest = key, n, tensors, rest

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _receive, (self.key, self.n, self.tensors, self.rest)


#: What a loader's process received of worker buffer sets: ``(loader, worker, pool token)
#: -> {slot: full-size tensors}``, for the latest pool of each worker of each live loader
#: (a new pass over a loader starts new workers with new pools; passes of one loader
#: cannot interleave anyway, as their workers share its release flags).
_RECEIVED: dict[tuple[int, int, int], dict[int, dict[str, torch.Tensor]]] = {}


def _forget_received(loader: int) -> None:
    for key in [k for k in _RECEIVED if k[0] == loader]:
        _RECEIVED.pop(key, None)


def _receive(
    key: tuple[int, int, int, int], n: int, tensors: Any, rest: dict[str, Any]
) -> dict[str, Any]:
    """The batch dict of a :class:`_Shipment` (runs where it is unpickled)."""
    loader, worker, token, slot = key
    got = _RECEIVED.get((loader, worker, token))
    if got is None:  # a new pool: forget the worker's previous one
        for old in [k for k in _RECEIVED if k[:2] == (loader, worker)]:
            del _RECEIVED[old]
        got = _RECEIVED[(loader, worker, token)] = {}
    if tensors is not None:
        got[slot] = tensors
    full = got.get(slot)
    if full is None:
        raise RuntimeError(f"loader worker {worker} sent buffer {slot} before its memory")
    out: dict[str, Any] = {k: t[:n] for k, t in full.items()}
    for k, v in rest.items():
        out[k] = torch.from_numpy(v) if isinstance(v, np.ndarray) else v
    out[BUFFER_KEY] = torch.tensor([loader, worker, slot], dtype=torch.int64)
    return out
