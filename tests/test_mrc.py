"""Miss-ratio curves: stack distances equal a brute-force LRU stack; the curve equals separate LRU runs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.cache.mrc import NO_REUSE, SHARDS_MODULUS, lru_mrc, stack_distances
from tests.cache_helpers import plain_hits
from trace.blocks import splitmix64


def _brute_force_distances(stream):
    stack, out = [], []
    for key in stream:
        if key in stack:
            out.append(len(stack) - stack.index(key))
            stack.remove(key)
        else:
            out.append(NO_REUSE)
        stack.append(key)
    return out


def test_hand_case():
    # a b c b a: b's distance is 2 (c between), a's is 3 (b, c between)
    assert stack_distances(np.array([0, 1, 2, 1, 0])).tolist() == [NO_REUSE] * 3 + [2, 3]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 25), max_size=200))
def test_distances_equal_brute_force(stream):
    assert stack_distances(np.array(stream, dtype=np.int64)).tolist() == _brute_force_distances(stream)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=300), st.lists(st.integers(1, 50), min_size=1, max_size=5))
def test_mrc_equals_separate_lru_runs(stream, capacities):
    caps = np.unique(capacities)
    curve = lru_mrc(np.array(stream), capacities=caps)
    for cap, ratio in zip(caps, curve.hit_ratios, strict=True):
        assert ratio == plain_hits("lru", [int(cap)], stream)[0] / len(stream)


def test_shards_approximates_the_exact_curve():
    rng = np.random.default_rng(3)
    stream = rng.zipf(1.1, 200_000) % 50_000
    caps = np.array([500, 2000, 8000, 20000])
    exact = lru_mrc(stream, capacities=caps)
    sampled = lru_mrc(stream, sample_rate=0.1, capacities=caps)
    assert sampled.sampled_accesses < 0.2 * len(stream)
    # SHARDS' published mean absolute error at R = 0.1 is well under 0.01 on real traces
    assert np.max(np.abs(sampled.hit_ratios - exact.hit_ratios)) < 0.02


def test_a_sampled_distance_hits_only_where_its_scaled_estimate_fits():
    """SHARDS (Waldspurger et al., FAST'15) estimates a sampled access's distance as d / R: it hits a cache of c blocks
    only if d / R <= c. Two keys the sample keeps (R = 0.75), used in turn 8 times: 6 reuses at sampled distance 2,
    each an estimated 2.67, so none fits 2 blocks and all fit 3. SHARDS-adj then adds the expected less the sampled
    count (8 x 0.75 - 8 = -2) to the hits over the expected 6 accesses: (0 - 2) / 6 clipped to 0 at 2 blocks, and
    (6 - 2) / 6 at 3."""
    rate = 0.75
    keys = np.arange(100, dtype=np.uint64)
    kept = keys[splitmix64(keys) % np.uint64(SHARDS_MODULUS) < np.uint64(int(rate * SHARDS_MODULUS))][:2]
    curve = lru_mrc(np.tile(kept, 4).astype(np.int64), sample_rate=rate, capacities=np.array([2, 3]))
    assert curve.sampled_accesses == 8
    assert curve.hit_ratios.tolist() == [0.0, pytest.approx(4 / 6, rel=1e-12)]


def test_bad_sample_rate():
    import pytest

    with pytest.raises(ValueError):
        lru_mrc(np.array([1, 2]), sample_rate=0.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 25), min_size=1, max_size=200))
def test_sparse_and_negative_ids_give_the_distances_of_dense_ones(stream):
    # ids far beyond the stream's length (or negative) are renumbered first: a relabelling of keys leaves every stack
    # distance as it was
    sparse = np.array(stream, dtype=np.int64) * 10**12 - 5 * 10**12
    assert stack_distances(sparse).tolist() == _brute_force_distances(stream)


def test_the_default_grid_ends_at_the_infinite_cache():
    # no capacities given: a geometric grid from 1 block to the distinct blocks, where LRU misses only first uses
    rng = np.random.default_rng(7)
    stream = (rng.zipf(1.3, 3000) % 400) * 10**9  # (sparse ids)
    distinct = len(np.unique(stream))
    curve = lru_mrc(stream)
    assert curve.capacities[0] == 1 and curve.capacities[-1] == distinct
    assert curve.hit_ratios[-1] == (len(stream) - distinct) / len(stream)
    dense = np.unique(stream, return_inverse=True)[1]
    for cap in curve.capacities[:: max(1, len(curve.capacities) // 8)]:
        assert curve.hit_ratio_at(int(cap)) == plain_hits("lru", [int(cap)], dense)[0] / len(stream)


# ----------------------------------------------------------------------------- prefix semantics (vLLM's lookups)


def _prefix_trace(prompts):
    from tests.test_serving import make_trace

    n = len(prompts)
    return make_trace(np.arange(n, dtype=float), [16 * len(p) for p in prompts], [1] * n, block_lists=prompts)


def _prefix_config(*sets):
    from sim.config import load_config

    return load_config(None, sets=["cache.access_semantics=prefix", *sets])


def test_the_prefix_curve_by_hand():
    """README Policy study: LRU over 3 blocks and prompts [1,2,3], [1,2,4], [1,5], [1,2,3] hits 5 times under prefix
    semantics (blocks touched deepest first, so a prefix outlives its continuation), where plain hits 4: the
    curve at 3 blocks is the replay's, not the plain stream's (it was 4 / 11)."""
    from sim.cache.replay import run_mrc

    run = run_mrc(_prefix_trace([[1, 2, 3], [1, 2, 4], [1, 5], [1, 2, 3]]), _prefix_config("cache.capacity_blocks=3"))
    assert run.metrics["access_semantics"] == "prefix"
    assert run.metrics["hit_ratio"] == 5 / 11


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 30), min_size=1, max_size=8, unique=True), min_size=1, max_size=40),
       st.lists(st.integers(1, 40), min_size=1, max_size=4))
def test_the_prefix_curve_equals_separate_prefix_lru_replays(prompts, capacities):
    """Under ``cache.access_semantics=prefix`` a request hits its longest cached prefix and then touches all its
    blocks, a stream that does not depend on the capacity, so LRU keeps the inclusion property and one pass gives
    every capacity; ``--mrc`` drew the plain stream's curve beside the prefix replay's points. Each capacity equals
    the cache-only replay at that capacity (the oracle: tests/test_cache_properties.py checks it against the
    reference cache)."""
    from sim.cache.replay import run_cache_only, run_mrc

    trace = _prefix_trace(prompts)
    for cap in np.unique(capacities):
        config = _prefix_config(f"cache.capacity_blocks={cap}")
        (point,) = run_cache_only(trace, config, ["lru"])
        assert run_mrc(trace, config).metrics["hit_ratio"] == point.metrics["hit_ratio"], cap


def test_a_sampled_prefix_curve_is_refused():
    """SHARDS keeps a sample of the blocks, and a prefix hit needs every block before it: no sampled curve."""
    import pytest

    from sim.cache.replay import run_mrc
    from sim.errors import ConfigError

    with pytest.raises(ConfigError, match="access_semantics"):
        run_mrc(_prefix_trace([[1, 2], [1, 2]]), _prefix_config("cache.mrc_sample_rate=0.5"))
