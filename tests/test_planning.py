"""Pairing arrays of the compact planner, property-tested over pool sizes and K."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matdata.errors import ConfigError
from matdata.planning import Pools, draw_backgrounds, parse_weights, split_warnings


def _pools(sizes: dict[str, list[int]]) -> Pools:
    """Global indices: source j's backgrounds of each split, in order."""
    by_split: dict[str, list] = {}
    every: list = []
    base = 0
    for j in range(max(len(v) for v in sizes.values())):
        start = base
        for split, per_src in sizes.items():
            n = per_src[j] if j < len(per_src) else 0
            by_split.setdefault(split, []).append((j, np.arange(base, base + n)))
            base += n
        every.append((j, np.arange(start, base)))
    return Pools(by_split, every)


@settings(max_examples=60, deadline=None)
@given(
    n_train=st.lists(st.integers(0, 40), min_size=1, max_size=3),
    n_val=st.lists(st.integers(0, 5), min_size=1, max_size=3),
    k=st.integers(1, 12),
    n_fg=st.integers(1, 8),
    weighted=st.booleans(),
)
def test_draws_stay_in_pool_are_distinct_and_independent(n_train, n_val, k, n_fg, weighted):
    if sum(n_train) + sum(n_val) == 0:
        n_train = [1]
    pools = _pools({"train": n_train, "val": n_val})
    n_src = len(pools.every)
    weights = [1.0 + j for j in range(n_src)] if weighted else None
    keys = [("a", f"f{i}") for i in range(n_fg)] + [("b", f"f{i}") for i in range(n_fg)]
    splits = ["train" if i % 2 == 0 else "val" for i in range(2 * n_fg)]
    picks, seeds, pool_all, replaced = draw_backgrounds(keys, splits, pools, weights, k, 5)
    assert picks.shape == seeds.shape == (2 * n_fg, k)
    for i, split in enumerate(splits):
        in_split = np.concatenate([a for _, a in pools.by_split[split]])
        pool = in_split if len(in_split) else np.concatenate([a for _, a in pools.every])
        assert bool(pool_all[i]) == (len(in_split) == 0)
        assert np.isin(picks[i], pool).all()
        if not replaced[i]:
            assert len(set(picks[i].tolist())) == k
        if weights is None:
            assert bool(replaced[i]) == (k > len(pool))
    # a foreground's draws depend on its (source, id) only: drop half, reorder the rest
    sub = list(range(2 * n_fg))[::-2]
    p2, s2, _, _ = draw_backgrounds(
        [keys[i] for i in sub], [splits[i] for i in sub], pools, weights, k, 5
    )
    assert np.array_equal(p2, picks[sub]) and np.array_equal(s2, seeds[sub])
    # ... and on the build seed (the 63-bit sample seeds all change)
    _, s3, _, _ = draw_backgrounds(keys, splits, pools, weights, k, 6)
    assert not (s3 == seeds).any()


def test_weights_zero_leaves_a_source_out_and_all_zero_is_refused() -> None:
    pools = _pools({"train": [30, 30]})
    keys = [("a", f"f{i}") for i in range(20)]
    picks, *_ = draw_backgrounds(keys, ["train"] * 20, pools, [0.0, 1.0], 5, 1)
    assert (picks >= 30).all()  # source 1's indices are 30..59
    with pytest.raises(ConfigError, match="weight 0"):
        draw_backgrounds(keys, ["train"] * 20, pools, [0.0, 0.0], 5, 1)


def test_weight_parsing_and_split_warnings() -> None:
    assert parse_weights("places=0.7, coco=0.3") == {"coco": 0.3, "places": 0.7}
    assert parse_weights(None) is None and parse_weights("") is None
    for bad in ("places", "places=x", "places=-1", "a=0,b=0"):
        with pytest.raises(ConfigError):
            parse_weights(bad)
    assert split_warnings("s", {"train": 10, "val": 2}, "fix") == []
    (w,) = split_warnings("s", {"train": 10}, "use -o val_fraction=0.1")
    assert "no val" in w and "val_fraction" in w
    (w,) = split_warnings("s", {"train": 999, "val": 1}, "fix")
    assert "only 1 of 1000" in w


def test_tag_match_on_a_source_without_any_tags() -> None:
    import pyarrow as pa

    from matdata.planning import _tag_hits

    untagged = pa.array([[], None, []], type=pa.list_(pa.null()))
    assert _tag_hits(untagged, ["car"]).tolist() == [False, False, False]
    tagged = pa.chunked_array([pa.array([["car"], [], ["dog", "car"]])])
    assert _tag_hits(tagged, ["car"]).tolist() == [True, False, True]
