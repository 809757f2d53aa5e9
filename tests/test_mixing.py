"""modnet.mixing: seeded per-sample mixing of several datasets' training streams."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_modnet_data import _record, _ShardOpener

from matdata.errors import ConfigError
from modnet.data import MattingStream, StreamConfig, make_loader
from modnet.mixing import (
    MixedStream,
    dataset_names,
    draws_before,
    mix_draws,
    parse_weights,
    resolve_weights,
)


def _dataset(first: int, counts: list[int], seed: int) -> MattingStream:
    shards, n = [], first
    for c in counts:
        shards.append([_record(n + j, size=24) for j in range(c)])
        n += c
    cfg = StreamConfig(image_size=(32, 32), batch_size=3, seed=seed, shuffle_buffer=4)
    return MattingStream(
        None, cfg, rank=0, world=1, shard_counts=counts, open_shard=_ShardOpener(shards)
    )


def _mixed(probs: list[float], start: int = 0, block: int = 7) -> MixedStream:
    a = _dataset(0, [4, 3], seed=11)  # keys s0000..s0006
    b = _dataset(100, [5], seed=12)  # keys s0100..s0104
    cfg = StreamConfig(image_size=(32, 32), batch_size=3, seed=5, shuffle_buffer=4)
    return MixedStream([a, b], cfg, probs, start_batch=start, block=block)


def _take(stream, workers: int, n: int) -> list[dict]:
    out = []
    for batch in make_loader(stream, workers=workers):
        out.append(batch)
        if len(out) == n:
            break
    return out


def test_weights_parse_resolve_and_refuse() -> None:
    assert parse_weights("fine=0.7, coarse=0.3") == {"fine": 0.7, "coarse": 0.3}
    assert parse_weights(None) is None
    for bad in ("fine", "fine=x", "fine=-1", "a=1,a=2"):
        with pytest.raises(ConfigError, match="NAME=WEIGHT"):
            parse_weights(bad)
    dirs = ["/d/fine", "/e/coarse", "/f/fine"]
    assert dataset_names(dirs) == ["fine", "coarse", "fine#2"]
    assert resolve_weights(dirs, None, [6, 2, 2]) == [0.6, 0.2, 0.2]
    assert resolve_weights(dirs, {"coarse": 1, "/f/fine": 3}, [1, 1, 1]) == [0, 0.25, 0.75]
    with pytest.raises(ConfigError, match="'other', which is not one of the --data sets"):
        resolve_weights(dirs, {"other": 1}, [1, 1, 1])
    with pytest.raises(ConfigError, match="all zero"):
        resolve_weights(dirs, {"fine": 0}, [1, 1, 1])


def test_draw_counts_follow_the_draws_across_blocks() -> None:
    probs = [0.2, 0.5, 0.3]
    flat = np.concatenate([mix_draws(3, 1, b, probs, 7) for b in range(10)])
    for position in (0, 1, 6, 7, 8, 20, 69):
        expect = np.bincount(flat[:position], minlength=3).tolist()
        assert draws_before(3, 1, position, probs, 7) == expect
    # other rank, other seed: other draws; the weights are followed on average
    assert not np.array_equal(mix_draws(3, 0, 0, probs, 7), mix_draws(3, 1, 0, probs, 7))
    big = np.bincount(mix_draws(0, 0, 0, probs), minlength=3) / 4096
    assert np.allclose(big, probs, atol=0.03)


def test_mixed_batches_independent_of_workers_and_resume_exact() -> None:
    ref = _take(_mixed([0.5, 0.5]), 0, 8)  # 24 samples: several epochs of both, 3+ blocks
    two = _take(_mixed([0.5, 0.5]), 2, 8)
    for a, b in zip(ref, two, strict=True):
        assert a["key"] == b["key"] and torch.equal(a["dataset"], b["dataset"])
        for name in ("image", "alpha", "trimap", "ignore"):
            assert torch.equal(a[name], b[name])
    resumed = _take(_mixed([0.5, 0.5], start=5), 2, 3)  # batch 5 = position 15: block 2
    for a, b in zip(ref[5:], resumed, strict=True):
        assert a["key"] == b["key"] and torch.equal(a["image"], b["image"])
        assert torch.equal(a["trimap"], b["trimap"])
    keys = [k for b in ref for k in b["key"]]
    sources = [int(d) for b in ref for d in b["dataset"]]
    for k, d in zip(keys, sources, strict=True):  # the dataset tag says where a key came from
        assert (int(k[1:]) >= 100) == (d == 1)
    # each dataset's samples come in the order of its own stream (epochs of its own)
    a, b = _mixed([0.5, 0.5]).streams
    a_order = a.epoch_keys(0) + a.epoch_keys(1) + a.epoch_keys(2)
    b_order = b.epoch_keys(0) + b.epoch_keys(1) + b.epoch_keys(2)
    assert [k for k, d in zip(keys, sources, strict=True) if d == 0] == a_order[: sources.count(0)]
    assert [k for k, d in zip(keys, sources, strict=True) if d == 1] == b_order[: sources.count(1)]
    assert 0 < sources.count(1) < len(sources)


def test_weights_steer_the_mix() -> None:
    only_a = _take(_mixed([1.0, 0.0]), 0, 4)
    assert Counter(int(d) for b in only_a for d in b["dataset"]) == {0: 12}
    mostly_b = _take(_mixed([0.1, 0.9], block=4096), 0, 10)
    assert Counter(int(d) for b in mostly_b for d in b["dataset"])[1] >= 22


@settings(max_examples=40, deadline=None)
@given(
    probs=st.lists(st.integers(0, 5), min_size=1, max_size=4).filter(lambda w: sum(w) > 0),
    block=st.integers(1, 50),
    position=st.integers(0, 300),
    seed=st.integers(0, 2**31 - 1),
)
def test_draw_counts_property(probs: list[int], block: int, position: int, seed: int) -> None:
    p = [w / sum(probs) for w in probs]
    blocks = position // block + 1
    flat = np.concatenate([mix_draws(seed, 0, b, p, block) for b in range(blocks)])
    counts = draws_before(seed, 0, position, p, block)
    assert counts == np.bincount(flat[:position], minlength=len(p)).tolist()
    assert sum(counts) == position
    assert all(c == 0 for c, w in zip(counts, probs, strict=True) if w == 0)
