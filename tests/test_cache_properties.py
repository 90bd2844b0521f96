"""Invariants of the cache engine, checked after every step (hypothesis), and tier semantics by hand."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.cache.policies import POLICIES
from tests.cache_helpers import make_cache, plain_hits

streams = st.lists(st.integers(0, 30), min_size=1, max_size=300)
capacity_lists = st.lists(st.integers(1, 12), min_size=1, max_size=4)
policy_names = st.sampled_from(sorted(POLICIES))


@settings(max_examples=150, deadline=None)
@given(policy_names, capacity_lists, streams, st.booleans())
def test_capacity_never_exceeded_and_placement_is_consistent(policy, capacities, stream, inclusive):
    cache = make_cache(policy, capacities, stream, inclusive)
    hits = 0
    for now, key in enumerate(stream):
        hits += cache.touch(key, now) >= 0
        for tier in cache.tiers:
            assert len(tier.resident) <= tier.capacity
        if not hasattr(cache.tiers[0].policy, "admit"):  # a policy with admission control may decline it
            assert key in cache.tiers[0].resident  # a used block is in the top tier afterwards
        if not inclusive:  # exclusive: a block lives in at most one tier
            assert sum(len(t.resident) for t in cache.tiers) == len(set().union(*(t.resident for t in cache.tiers)))
    stats = [t.stats for t in cache.tiers]
    assert hits + (len(stream) - hits) == len(stream)
    # every insertion is matched by the block still being there or having left
    for tier, s in zip(cache.tiers, stats):
        assert s.insertions == len(tier.resident) + s.promotions * (not inclusive) + s.demotions + s.evictions


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 15), streams)
def test_belady_is_optimal(capacity, stream):
    # Belady is optimal among policies that cache every missed block; Belady with bypass among all.
    best, _ = plain_hits("belady", [capacity], stream)
    best_bypass, _ = plain_hits("belady-bypass", [capacity], stream)
    assert best <= best_bypass
    for policy in sorted(POLICIES):
        hits = plain_hits(policy, [capacity], stream)[0]
        assert hits <= best_bypass
        if not hasattr(POLICIES[policy], "admit"):
            assert hits <= best


@settings(max_examples=100, deadline=None)
@given(streams)
def test_lru_hits_never_decrease_with_capacity(stream):
    hits = [plain_hits("lru", [c], stream)[0] for c in range(1, 20)]
    assert hits == sorted(hits)  # the inclusion property of stack algorithms


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8), streams)
def test_exclusive_lru_hierarchy_equals_one_lru_of_the_total_size(c1, c2, stream):
    # An exclusive LRU hierarchy with demotion on eviction holds exactly the c1+c2 most recent blocks.
    assert plain_hits("lru", [c1, c2], stream)[0] == plain_hits("lru", [c1 + c2], stream)[0]


def test_exclusive_promotion_and_demotion_by_hand():
    # HBM 1 block, DRAM 1 block, LRU. a: miss; b: miss, a demoted; a: DRAM hit, promoted, b demoted.
    cache = make_cache("lru", [1, 1])
    assert [cache.touch(k, t) for t, k in enumerate(["a", "b", "a", "c"])] == [-1, -1, 1, -1]
    hbm, dram = cache.tiers
    assert hbm.resident == {"c"} and dram.resident == {"a"}  # c demoted a; b fell out of DRAM
    # HBM demoted a, then b (to make room for the promoted a), then a again; DRAM dropped only b
    assert (dram.stats.promotions, hbm.stats.demotions, dram.stats.evictions) == (1, 3, 1)


def test_inclusive_writes_through_and_keeps_lower_copies():
    cache = make_cache("lru", [1, 3], inclusive=True)
    for t, k in enumerate(["a", "b"]):
        cache.touch(k, t)
    hbm, dram = cache.tiers
    assert hbm.resident == {"b"} and dram.resident == {"a", "b"}  # a dropped from HBM, copy kept below
    assert cache.touch("a", 2) == 1 and hbm.resident == {"a"} and dram.resident == {"a", "b"}
    assert hbm.stats.demotions == 0 and hbm.stats.evictions == 2


def _prefix_replay(policy, capacities, requests):

    blocks = np.array([b for r in requests for b in r], dtype=np.int64)
    offsets = np.cumsum([0] + [len(r) for r in requests])
    cache = make_cache(policy, capacities, blocks)
    hit_tier = np.full(len(blocks), -1, dtype=np.int8)
    return cache, hit_tier, blocks, offsets


chains = st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=6), min_size=1, max_size=40)


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(["lru", "lfu"]), st.lists(st.integers(1, 10), min_size=1, max_size=3), chains)
def test_prefix_semantics_hits_are_a_prefix_and_prefixes_stay_whole(policy, capacities, token_lists):
    # Build chained block ids: a block is identified by its whole token prefix.
    ids: dict[tuple, int] = {}
    requests = [[ids.setdefault(tuple(toks[: i + 1]), len(ids)) for i in range(len(toks))] for toks in token_lists]
    parent = {ids[p]: ids[p[:-1]] for p in ids if len(p) > 1}
    cache, hit_tier, blocks, offsets = _prefix_replay(policy, capacities, requests)
    for r in range(len(requests)):
        cache.replay(blocks, offsets, hit_tier, r, r + 1, prefix=True)
        hits = hit_tier[offsets[r]:offsets[r + 1]] >= 0
        assert not np.any(hits[1:] & ~hits[:-1])  # contiguous from the first block
        cached = set().union(*(t.resident for t in cache.tiers))
        for b in cached:  # leaves are evicted first: every cached block's parent is cached
            assert b not in parent or parent[b] in cached


def test_prefix_semantics_stop_at_first_miss():
    # FIFO, 3 blocks. r1 [p], r2 [p, c]: c is inserted after p, so p is older; r3 [x] evicts p, leaving c
    # cached without its parent. r4 [p, c]: plain lookup would count c; prefix semantics recompute it.
    requests = [[0], [0, 1], [2], [3], [0, 1]]
    cache, hit_tier, blocks, offsets = _prefix_replay("fifo", [3], requests)
    cache.replay(blocks, offsets, hit_tier, 0, len(requests), prefix=True)
    assert hit_tier.tolist() == [-1, 0, -1, -1, -1, -1, -1]


@settings(max_examples=80, deadline=None)
@given(policy_names, st.integers(1, 12), streams)
def test_single_tier_fast_path_equals_general_path(policy, capacity, stream):
    from tests.cache_helpers import evictions

    fast, cache = plain_hits(policy, [capacity], stream)  # unrolled single-tier loop
    _, general = evictions(policy, capacity, stream)  # MultiTierCache.touch per access
    assert fast == sum(general)


def _plugin_replay(capacities, requests, sessions, **plugins):
    from sim.cache.multitier import CachePlugins

    cache, hit_tier, blocks, offsets = _prefix_replay("lru", capacities, requests)
    cache.replay(blocks, offsets, hit_tier, 0, len(requests), prefix=True,
                 plugins=CachePlugins(**plugins), sessions=np.array(sessions))
    return cache, hit_tier


def test_selective_write_keeps_only_shallow_blocks():
    # depth limit 2: of [0,1,2,3] only blocks 0 and 1 are kept, so the repeat hits exactly 2
    cache, hit_tier = _plugin_replay([10], [[0, 1, 2, 3], [0, 1, 2, 3]], [-1, -1], selective_write_depth=2)
    assert hit_tier.tolist() == [-1] * 4 + [0, 0, -1, -1]
    assert cache.tiers[0].resident == {0, 1}


def test_session_prefetch_pulls_previous_turn_up_before_lookup():
    # HBM 2, DRAM 10. Session 7's turn [0, 1]; another request [5, 6] pushes 0 and 1 down to DRAM;
    # the next turn [0, 1] first prefetches them, so they hit in HBM instead of DRAM.
    requests, sessions = [[0, 1], [5, 6], [0, 1]], [7, -1, 7]
    without, hit_without = _plugin_replay([2, 10], requests, sessions)
    assert hit_without[4:6].tolist() == [1, 1]
    cache, hit_tier = _plugin_replay([2, 10], requests, sessions, previous_turn={})
    assert hit_tier[4:6].tolist() == [0, 0]
    assert cache.tiers[1].stats.prefetches == 2 and cache.tiers[1].stats.promotions == 0
