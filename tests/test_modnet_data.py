"""modnet.data / modnet.augment: sharding arithmetic, shuffle, determinism, resume, samples."""

from __future__ import annotations

import gc

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from matdata.imageio import encode_jpeg, encode_png
from matdata.schema import Record
from matdata.shards import ShardWriter, write_index
from modnet.augment import (
    AugmentConfig,
    augment,
    color_jitter,
    draw_jitter,
    random_crop_box,
    resize,
)
from modnet.data import (
    MattingStream,
    StreamConfig,
    block_slices,
    crop_into,
    is_coarse,
    make_loader,
    prepare_batch,
    rank_block,
    shard_order,
    shuffle_buffer,
    worker_owns,
)

# ------------------------------------------------------------------ pure arithmetic


@pytest.mark.parametrize("total,world", [(10, 1), (10, 2), (11, 3), (7, 4), (100, 8)])
def test_rank_blocks_partition(total: int, world: int) -> None:
    seen: list[int] = []
    for r in range(world):
        lo, hi = rank_block(total, r, world)
        seen += range(lo, hi)
        assert abs((hi - lo) - total / world) < 1
    assert seen == list(range(total))


def test_block_slices_cover_exactly() -> None:
    counts = [5, 3, 7, 1]
    order = shard_order(len(counts), seed=3, epoch=1, shuffle=True)
    assert sorted(order) == [0, 1, 2, 3]
    concat = [(s, i) for s in order for i in range(counts[s])]
    for start, stop in [(0, 16), (2, 9), (5, 8), (15, 16), (4, 4)]:
        got = [
            (s, i) for s, lo, hi in block_slices(order, counts, start, stop) for i in range(lo, hi)
        ]
        assert got == concat[start:stop]


def test_shard_order_depends_on_epoch_and_seed() -> None:
    orders = {tuple(shard_order(8, seed, epoch, True)) for seed in (0, 1) for epoch in (0, 1, 2)}
    assert len(orders) > 3
    assert shard_order(8, 0, 5, False) == list(range(8))
    assert shard_order(8, 0, 1, True) == shard_order(8, 0, 1, True)


def test_shuffle_buffer_is_a_deterministic_permutation() -> None:
    items = list(range(50))
    a = list(shuffle_buffer(items, 8, np.random.default_rng(1)))
    b = list(shuffle_buffer(items, 8, np.random.default_rng(1)))
    c = list(shuffle_buffer(items, 8, np.random.default_rng(2)))
    assert sorted(a) == items and a == b and a != c and a != items
    assert list(shuffle_buffer(items, 1, np.random.default_rng(1))) == items
    # locality: an item is emitted at most (size - 1) positions before its input position
    assert all(pos >= x - 7 for pos, x in enumerate(a))


def test_worker_ownership_partitions_batches() -> None:
    for workers in (1, 2, 3):
        for first in (0, 5):
            owners = [
                [w for w in range(workers) if worker_owns(g, 4, first, w, workers)]
                for g in range(80)
            ]
            assert all(o == [] for o in owners[: first * 4])
            assert all(len(o) == 1 for o in owners[first * 4 :])
            # a batch belongs to a single worker
            assert all(
                len({owners[g][0] for g in range(k * 4, k * 4 + 4)}) == 1 for k in range(5, 20)
            )


def test_is_coarse_flags() -> None:
    assert is_coarse({"coarse": True})
    assert is_coarse({"fg": {"id": "x", "coarse": True}})
    assert is_coarse({"coarse": False, "fg": {"coarse": True}})  # either flag
    assert not is_coarse({"fg": "demo-fg-0001", "coarse": False})
    assert not is_coarse({"alpha_quality": "coarse"})  # no such field is written
    # one rule everywhere: the training stream, `evaluate` and QA use the same function
    import matdata.schema
    from matdata.qa.analysis import provenance

    assert is_coarse is matdata.schema.is_coarse
    assert provenance({"fg": {"coarse": True}, "coarse": False})["coarse"] is True
    assert provenance({})["coarse"] is False


# ------------------------------------------------------------------ augment


def test_augment_shapes_and_soft_alpha() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)
    alpha = np.zeros((90, 70), np.uint8)
    alpha[20:70, 15:55] = 255  # hard edges: area/bilinear resizing must soften them
    ign = np.zeros_like(alpha)
    ign[:10] = 255
    out_i, out_a, out_g = augment(img, alpha, rng, (32, 48), AugmentConfig(scale=(0.9, 1.0)), ign)
    assert out_i.shape == (32, 48, 3) and out_a.shape == (32, 48) and out_g is not None
    assert out_i.dtype == np.uint8 and out_a.dtype == np.uint8
    assert set(np.unique(out_g)) <= {0, 255}
    frac = ((out_a > 0) & (out_a < 255)).sum()
    assert frac > 0, "alpha was resized without filtering (nearest?)"
    # enlarging is bilinear too
    up = resize(alpha[18:24, 13:19], 24, 24)
    assert ((up > 0) & (up < 255)).any()


def test_crop_box_inside_image() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        y0, x0, h, w = random_crop_box(50, 80, rng, 1.0)
        assert y0 >= 0 and x0 >= 0 and y0 + h <= 50 and x0 + w <= 80 and h > 0 and w > 0


def test_color_jitter_identity_and_range() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    same = color_jitter(img, np.random.default_rng(1), 0.0, 0.0, 0.0)
    assert np.array_equal(same, img)
    # brightness only: a scaled copy
    bright = color_jitter(np.full((4, 4, 3), 100, np.uint8), np.random.default_rng(2), 0.5, 0, 0)
    assert len(np.unique(bright)) == 1 and bright[0, 0, 0] != 100
    # saturation only (amplitude 1: the factor s is drawn from [0, 2]): each pixel moves
    # along its grey axis, z = s x + (1 - s) luma(x); luma is kept
    b, c, sat = draw_jitter(np.random.default_rng(3), 0.0, 0.0, 1.0)
    assert (b, c) == (1.0, 1.0) and abs(sat - 1.0) > 0.3, sat  # a seed that really jitters
    got = color_jitter(img, np.random.default_rng(3), 0.0, 0.0, 1.0).astype(float)
    x = img.astype(float)
    luma = x @ np.array([0.299, 0.587, 0.114])
    want = np.clip(sat * x + (1.0 - sat) * luma[..., None], 0, 255)
    assert np.abs(got - want).max() <= 1.0
    assert (
        np.abs(got @ np.array([0.299, 0.587, 0.114]) - luma)[
            (want > 0).all(-1) & (want < 255).all(-1)
        ].max()
        <= 1.0
    )
    assert np.abs(got - x).max() > 10  # not the identity
    out = color_jitter(img, np.random.default_rng(1), 0.5, 0.5, 0.5)
    assert out.dtype == np.uint8 and not np.array_equal(out, img)


def test_crop_into_filters_and_flips() -> None:
    rng = np.random.default_rng(4)
    alpha = np.zeros((90, 70), np.uint8)
    alpha[20:70, 15:55] = 255  # hard edges: area/bilinear resizing must soften them
    for box, size in [((5, 3, 40, 30), (64, 48)), ((0, 0, 90, 70), (30, 20))]:
        # enlarging (bilinear) and shrinking 3x (area): fractional alpha, never nearest
        out = np.empty(size, np.uint8)
        crop_into(alpha, box, out)
        assert ((out > 0) & (out < 255)).any(), "alpha was resized without filtering"
        # the flip (before or after the resize) is exactly the mirrored result
        flipped = np.empty(size, np.uint8)
        crop_into(alpha, box, flipped, flip=True)
        assert np.array_equal(flipped, out[:, ::-1])
    # smooth and mid-range: no clipping, so the order of jitter and resize is rounding only
    low = rng.integers(70, 180, (6, 8, 3), dtype=np.uint8)
    img = cv2.resize(low, (80, 60), interpolation=cv2.INTER_CUBIC)
    # the factors color_jitter draws from rng(9) with amplitudes 0.2 (same draw order)
    draw = np.random.default_rng(9)
    jitter = (draw.uniform(0.8, 1.2), draw.uniform(0.8, 1.2), draw.uniform(0.8, 1.2))
    for box, size in [((10, 10, 30, 40), (60, 80)), ((0, 0, 60, 80), (30, 40))]:
        plain = np.empty((*size, 3), np.uint8)
        crop_into(img, box, plain)
        got = np.empty((*size, 3), np.uint8)
        crop_into(img, box, got, jitter=jitter)
        # jitter after the resize, as modnet.augment.color_jitter does it (same factors)
        ref = color_jitter(plain, np.random.default_rng(9), 0.2, 0.2, 0.2)
        diff = np.abs(got.astype(int) - ref.astype(int))
        # exact when applied after the resize, rounding apart when applied before it
        assert diff.max() <= (0 if size[0] < box[2] else 3) and diff.mean() < 0.5
        assert not np.array_equal(got, plain)


# ------------------------------------------------------------------ streams


def _record(
    i: int, size: int = 40, coarse: bool = False, layers: bool = False, ignore_every: int = 1
) -> Record:
    rng = np.random.default_rng(i)
    img = rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:size, : size + 8]
    alpha = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 3) ** 2).astype(np.uint8) * 255
    ignore = np.zeros_like(alpha)
    ignore[:4] = 255
    meta = {"split": "train", "fg": {"id": f"f{i}", "coarse": coarse}, "bg": f"b{i}", "seed": i}
    rec = Record(key=f"s{i:04d}", image=encode_jpeg(img, 90), alpha=encode_png(alpha), meta=meta)
    rec.ignore = encode_png(ignore) if i % ignore_every == 0 else None
    if layers:
        rec.fg = encode_jpeg(np.full_like(img, 200), 90)
        rec.bg = encode_jpeg(rng.integers(0, 256, img.shape, dtype=np.uint8), 90)
    return rec


def _memory_shards(counts: list[int], **kw) -> tuple[list[int], callable]:
    shards, n = [], 0
    for c in counts:
        shards.append([_record(n + j, **kw) for j in range(c)])
        n += c
    return counts, _ShardOpener(shards)


class _ShardOpener:
    """Picklable opener over in-memory shards (loader workers start from a forkserver)."""

    def __init__(self, shards: list[list[dict]]):
        self.shards = shards

    def __call__(self, s: int):
        return iter(self.shards[s])


def _cfg(**kw) -> StreamConfig:
    base = dict(image_size=(32, 32), batch_size=3, seed=7, shuffle_buffer=6)
    base.update(kw)
    return StreamConfig(**base)


def test_ranks_disjoint_and_cover_every_epoch() -> None:
    counts, opener = _memory_shards([5, 4, 6])
    all_keys = {f"s{i:04d}" for i in range(15)}
    for world in (1, 2, 3):
        for epoch in (0, 1):
            per_rank = [
                MattingStream(
                    None, _cfg(), rank=r, world=world, shard_counts=counts, open_shard=opener
                ).epoch_keys(epoch)
                for r in range(world)
            ]
            flat = [k for keys in per_rank for k in keys]
            assert len(flat) == len(set(flat)) == 15
            assert set(flat) == all_keys
    e0 = MattingStream(None, _cfg(), rank=0, world=1, shard_counts=counts, open_shard=opener)
    assert e0.epoch_keys(0) != e0.epoch_keys(1)  # reshuffled each epoch


def _batches(stream: MattingStream, workers: int, n: int) -> list[dict]:
    out = []
    for batch in make_loader(stream, workers=workers):
        out.append(batch)
        if len(out) == n:
            break
    return out


def test_worker_count_invariance_and_resume() -> None:
    counts, opener = _memory_shards([5, 4, 6])

    def stream(start: int = 0) -> MattingStream:
        return MattingStream(
            None,
            _cfg(),
            rank=0,
            world=1,
            shard_counts=counts,
            open_shard=opener,
            start_batch=start,
        )

    ref = _batches(stream(), 0, 9)  # 27 samples: crosses an epoch boundary (15 per epoch)
    two = _batches(stream(), 2, 9)
    for a, b in zip(ref, two, strict=True):
        assert a["key"] == b["key"]
        for name in ("image", "alpha", "trimap", "ignore"):
            assert torch.equal(a[name], b[name])
    resumed = _batches(stream(start=4), 2, 5)
    for a, b in zip(ref[4:], resumed, strict=True):
        assert a["key"] == b["key"] and torch.equal(a["image"], b["image"])
        assert torch.equal(a["trimap"], b["trimap"])
    # one epoch of batches covers the split once
    keys = [k for b in ref[:5] for k in b["key"]]
    assert sorted(keys) == sorted(f"s{i:04d}" for i in range(15))


@pytest.mark.parametrize("workers", [0, 1])
def test_batch_buffers_are_reused_only_after_release(workers: int) -> None:
    """Loaders write batches into buffers (shared memory in workers) they reuse once the
    consumer released them (``prepare_batch`` does): released or held, the batches are
    the same, and a held batch is never overwritten."""
    from modnet.data import _POOL_SLOTS, BUFFER_KEY, release_batch

    counts, opener = _memory_shards([5, 4, 6], ignore_every=2)

    def stream() -> MattingStream:
        return MattingStream(
            None, _cfg(), rank=0, world=1, shard_counts=counts, open_shard=opener, epochs=2
        )

    # never released: the pool's slots stay taken, later batches get fresh memory
    ref = [dict(b) for b in _batches(stream(), 0, 10)]
    assert [BUFFER_KEY in b for b in ref] == [True] * _POOL_SLOTS + [False] * (10 - _POOL_SLOTS)
    assert len({b["image"].data_ptr() for b in ref}) == 10
    held = _batches(stream(), 1, 10)
    for a, b in zip(ref, held, strict=True):
        for name in ("image", "alpha", "trimap", "ignore"):
            assert torch.equal(a[name], b[name]), name
    loader = make_loader(stream(), workers=workers)
    for _ in range(2):  # two passes over one loader: each pass has its own buffers
        slots, prepared = [], []
        for k, batch in enumerate(loader):
            slots.append(int(batch[BUFFER_KEY][2]))
            assert batch["key"] == ref[k]["key"]
            for name in ("position", "coarse"):
                assert batch[name].dtype == ref[k][name].dtype
                assert torch.equal(batch[name], ref[k][name])
            copies = {n: batch[n].clone() for n in ("image", "alpha", "trimap", "ignore")}
            if k % 2:
                prepared.append(prepare_batch(batch))  # releases
                assert BUFFER_KEY not in batch and BUFFER_KEY not in prepared[-1]
            else:
                release_batch(batch)
            for name, t in copies.items():
                assert torch.equal(t, ref[k][name]), (k, name)
        assert len(slots) == 10 and min(slots) >= 0 and max(slots) < _POOL_SLOTS
        assert len(set(slots)) < len(slots)  # buffers were reused
    for k, b in zip(range(1, 10, 2), prepared, strict=True):  # the float copies stay intact
        assert torch.equal(b["image"], prepare_batch(ref[k])["image"])
    # worker buffers the loader's process keeps mapped go with the loader
    from modnet.data import _RECEIVED

    number = loader.dataset.loader
    assert any(k[0] == number for k in _RECEIVED) == (workers > 0)
    del loader
    gc.collect()
    assert not any(k[0] == number for k in _RECEIVED)


def test_loader_forkserver_stays_single_threaded() -> None:
    """Workers fork from a server that preloads modules; a server with a second thread
    could fork a worker holding a lock (OpenCV and pyarrow start threads on import)."""
    from multiprocessing import forkserver

    counts, opener = _memory_shards([3])
    s = MattingStream(None, _cfg(), rank=0, world=1, shard_counts=counts, open_shard=opener)
    assert len(_batches(s, 1, 1)) == 1
    pid = forkserver._forkserver._forkserver_pid  # private, but the only way to find it
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f)
    assert int(status["Threads"]) == 1


def test_batches_are_collated_samples() -> None:
    """The loader's batches (written in place) equal ``default_collate`` of the samples of
    the same positions, including a partial last batch; a rerun is byte-identical."""
    counts, opener = _memory_shards([4, 3], layers=True, ignore_every=2)
    cfg = _cfg(recompose=0.5)
    stream = MattingStream(
        None, cfg, rank=0, world=1, shard_counts=counts, open_shard=opener, epochs=2
    )
    batches = list(stream.iter_batches())
    assert [len(b["key"]) for b in batches] == [3, 3, 3, 3, 2]  # 14 samples
    samples = list(stream)
    for k, batch in enumerate(batches):
        ref = default_collate(samples[3 * k : 3 * k + 3])
        assert batch.keys() == ref.keys()
        assert batch["key"] == ref["key"]
        for name in ("image", "alpha", "trimap", "ignore", "coarse", "position"):
            assert batch[name].dtype == ref[name].dtype
            assert torch.equal(batch[name], ref[name]), name
        for i, key in enumerate(batch["key"]):  # records without an ignore mask: all zero
            if int(key[1:]) % 2 == 1:
                assert batch["ignore"][i].max() == 0
    again = list(stream.iter_batches())
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(batches, again, strict=True))
    other = MattingStream(
        None, _cfg(recompose=0.5, seed=8), rank=0, world=1, shard_counts=counts,
        open_shard=opener, epochs=2,
    )  # fmt: skip
    assert not torch.equal(next(other.iter_batches())["image"], batches[0]["image"])


def test_sample_tensors() -> None:
    counts, opener = _memory_shards([4], coarse=True)
    s = MattingStream(
        None, _cfg(), rank=0, world=1, shard_counts=counts, open_shard=opener, epochs=1
    )
    samples = list(s)
    assert len(samples) == 4
    x = samples[0]
    assert x["image"].shape == (32, 32, 3) and x["image"].dtype == torch.uint8
    assert x["alpha"].shape == (32, 32) and x["alpha"].dtype == torch.uint8
    assert set(torch.unique(x["trimap"]).tolist()) <= {0, 128, 255}
    assert 128 in torch.unique(x["trimap"]).tolist()
    b = prepare_batch(default_collate(samples))
    assert b["image"].shape == (4, 3, 32, 32) and b["image"].dtype == torch.float32
    assert b["image"].min() >= -1.0 and b["image"].max() <= 1.0 and b["image"].min() < -0.5
    assert torch.equal(b["image"][0], x["image"].permute(2, 0, 1).float() / 127.5 - 1)
    assert b["alpha"].shape == (4, 1, 32, 32) and b["alpha"].min() >= 0 and b["alpha"].max() <= 1
    assert set(torch.unique(b["trimap"]).tolist()) == {0.0, 0.5, 1.0}
    assert torch.equal(b["trimap"][0, 0] == 0.5, x["trimap"] == 128)
    assert b["coarse"].dtype == torch.bool and b["coarse"].all()
    assert x["coarse"].item() is True
    # eval transform is deterministic and unshuffled
    ev = MattingStream(
        None, _cfg(train=False), rank=0, world=1, shard_counts=counts, open_shard=opener, epochs=1
    )
    a, b = list(ev), list(ev)
    assert [t["key"] for t in a] == [f"s{i:04d}" for i in range(4)]
    assert all(torch.equal(p["image"], q["image"]) for p, q in zip(a, b, strict=True))
    # the centre crop keeps the ignored top rows (4 of 40 rows -> 3.2 of 32)
    assert a[0]["ignore"][:3].min() == 255 and a[0]["ignore"][5:].max() == 0


_NO_JITTER = AugmentConfig(brightness=0.0, contrast=0.0, saturation=0.0)


def test_stream_applies_the_saturation_jitter() -> None:
    """The training stream applies the saturation factor it draws: with the same seed
    and only saturation jitter on, crops, flips and mattes are those of the stream without
    jitter (the factors are drawn either way), the colours move and the luma stays."""
    counts, opener = _memory_shards([4])

    def samples(aug: AugmentConfig) -> list[dict]:
        stream = MattingStream(
            None, _cfg(augment=aug), rank=0, world=1, shard_counts=counts, open_shard=opener,
            epochs=1,
        )  # fmt: skip
        return list(stream)

    plain = samples(_NO_JITTER)
    sat = samples(AugmentConfig(brightness=0.0, contrast=0.0, saturation=0.5))
    luma = torch.tensor([0.299, 0.587, 0.114])
    colour, grey = [], []
    for p, q in zip(plain, sat, strict=True):
        assert p["key"] == q["key"] and torch.equal(p["alpha"], q["alpha"])
        x, y = p["image"].float(), q["image"].float()
        colour.append((x - y).abs().mean())
        grey.append((x @ luma - y @ luma).abs().mean())
    # measured: colours move by 2-6 levels on average, the luma by 0.2-0.3 (rounding)
    assert float(torch.stack(colour).mean()) > 1.5, colour
    assert float(torch.stack(grey).max()) < 0.5, grey


def test_recompose_changes_background_only() -> None:
    counts, opener = _memory_shards([6], layers=True)
    plain = MattingStream(
        None, _cfg(), rank=0, world=1, shard_counts=counts, open_shard=opener, epochs=1
    )
    recomp = MattingStream(
        None, _cfg(recompose=1.0), rank=0, world=1, shard_counts=counts, open_shard=opener, epochs=1
    )
    a, b = list(plain), list(recomp)
    assert [x["key"] for x in a] == [x["key"] for x in b]
    assert torch.equal(a[3]["alpha"], b[3]["alpha"])
    assert not torch.equal(a[3]["image"], b[3]["image"])
    # inside the solid foreground the recomposited image is the stored fg colour (200)
    fg_px = b[3]["image"][b[3]["alpha"] > 250].float()
    assert fg_px.numel() > 0
    # (up to the train-time colour jitter: b * c * 200 + (1 - c) * b * m, factors in
    # [0.8, 1.2]; the pixels share one affine map, so they agree among themselves)
    assert fg_px.max() - fg_px.min() <= 8, (fg_px.min(), fg_px.max())
    flat = MattingStream(
        None, _cfg(recompose=1.0, augment=_NO_JITTER), rank=0, world=1, shard_counts=counts,
        open_shard=opener, epochs=1,
    )  # fmt: skip
    c = list(flat)[3]
    fg_flat = c["image"][c["alpha"] > 250].float()
    # no jitter: the stored colour (JPEG q90 of a flat 200: exact) up to the <= 5/255 of
    # background left at alpha > 250, and rounding
    assert fg_flat.numel() > 0 and (fg_flat - 200.0).abs().max() <= 6


@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
def test_stream_reads_built_shards(tmp_path, fmt: str) -> None:
    infos = []
    n = 0
    for idx, c in enumerate([4, 3]):
        with ShardWriter(str(tmp_path), "train", idx, formats=(fmt,)) as w:
            for _ in range(c):
                w.write(_record(n))
                n += 1
            infos += w.close()
    write_index(str(tmp_path), infos, config={}, sources={}, rejects={})
    keys = set()
    for r in range(2):
        s = MattingStream(str(tmp_path), _cfg(), rank=r, world=2, epochs=1)
        got = [x["key"] for x in s]
        assert len(got) == s.per_rank
        assert not keys & set(got)
        keys |= set(got)
    assert keys == {f"s{i:04d}" for i in range(7)}
