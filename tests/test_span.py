"""One policy spanning an exclusive hierarchy (``sim.cache.span``): the policy decides what is cached, the tiers
where. Checked against its theorems: the union is the policy at the summed capacity, access by access; each tier
holds a band of the union's recency order; LRU is today's per-tier exclusive hierarchy, count for count. And by
hand, and against the reference policies on the generic path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.cache import multitier
from sim.cache.hooked import HookedMultiTierCache
from sim.cache.multitier import build_cache
from tests.cache_helpers import (
    apply_operation,
    make_cache,
    make_tiers,
    oracle_inputs,
    pinned_keys,
    tier_state,
    tier_stats,
)
from tests.reference import REFERENCE

KERNELS = ["lru", "fifo", "arc", "s3fifo", "sieve", "lfu", "belady"]
streams = st.lists(st.integers(0, 30), min_size=1, max_size=300)
hierarchies = st.lists(st.integers(1, 8), min_size=2, max_size=4)
operation = st.one_of(st.tuples(st.sampled_from(["touch", "touch", "touch", "take", "free"]), st.integers(0, 30)),
                      st.tuples(st.just("resize"), st.integers(0, 8)))
operations = st.lists(operation, min_size=1, max_size=200)


@pytest.fixture(autouse=True, scope="module")
def lru_spans_too():
    """Runs leave LRU per tier (``multitier.SAME_WITHOUT_SPAN``: its span is the same hierarchy); here every policy's
    span is built, so the tests below prove that sameness and hold LRU's span to the theorems like the others'."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(multitier, "SAME_WITHOUT_SPAN", frozenset())
        yield


def spanned(policy: str, capacities: list[int], stream, reference: bool = False):
    """A cache whose tiers one ``policy`` spans: compiled, or (``reference``) the pure-Python reference policy at the
    summed capacity on the generic path."""
    num_blocks = max(64, int(max(stream)) + 1)
    tiers = make_tiers([policy] * len(capacities), capacities, stream, num_blocks)
    if reference:
        next_use, _ = oracle_inputs(stream)
        cls = REFERENCE[policy]
        hook = cls(sum(capacities), next_use=next_use) if cls.needs_future else cls(sum(capacities))
        cache = HookedMultiTierCache(tiers, 1, span=True, span_hook=hook)
        assert cache.spanned is not None
        return cache
    cache = build_cache(tiers, 1, num_blocks=num_blocks, span=True)
    assert cache.span >= 0
    return cache


def _union(cache) -> set[int]:
    return set().union(*(cache.resident(i) for i in range(len(cache.tiers))))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(KERNELS), hierarchies, streams)
def test_the_union_is_the_policy_at_the_summed_capacity_access_by_access(policy, capacities, stream):
    # the theorem: the tiers only place what the policy keeps, so hit or miss and the cached set are those of one
    # tier of the summed capacity (the single-tier path, ``replay_single``'s hooks), after every access
    tiered = spanned(policy, capacities, stream)
    single = make_cache(policy, [sum(capacities)], stream)
    for now, key in enumerate(stream):
        assert (tiered.touch(key, now) >= 0) == (single.touch(key, now) >= 0), (now, key)
        assert _union(tiered) == single.resident(0), (now, key)
        for level, capacity in enumerate(capacities):
            assert len(tiered.resident(level)) <= capacity


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(KERNELS), hierarchies, streams)
def test_each_tier_holds_a_band_of_the_unions_recency_order(policy, capacities, stream):
    # placement by recency: ranking the cached blocks by last use (0: the latest), rank r lies in the tier whose
    # cumulative capacities bracket r: HBM the most recent, the next tier the next ones, ...
    cache = spanned(policy, capacities, stream)
    last: dict[int, int] = {}
    bounds = np.cumsum(capacities)
    for now, key in enumerate(stream):
        cache.touch(key, now)
        last[key] = now
        ranked = sorted(_union(cache), key=lambda k: -last[k])
        for rank, block in enumerate(ranked):
            assert block in cache.resident(int(np.searchsorted(bounds, rank, side="right"))), (now, rank, block)


def test_a_frequent_block_demoted_below_survives_as_in_one_lfu_of_the_sum():
    # by hand, LFU over HBM 1 + DRAM 1 and the stream A A A B C A (A = 1, B = 2, C = 3). One LFU of 2 blocks: B is
    # kept beside A (count 3), C evicts B (count 1, the least frequent), A hits: 3 hits. Per tier, B pushed A down to
    # DRAM, whose LFU knew nothing of A's count, and C pushed B down onto it: A left, 2 hits. Spanning: B's entry
    # demotes A (the least recent) to DRAM; C evicts B from HBM; A hits in DRAM and moves up, demoting C.
    stream = [1, 1, 1, 2, 3, 1]
    per_tier = make_cache("lfu", [1, 1], stream)
    assert [per_tier.touch(k, t) for t, k in enumerate(stream)] == [-1, 0, 0, -1, -1, -1]
    cache = spanned("lfu", [1, 1], stream)
    assert [cache.touch(k, t) for t, k in enumerate(stream)] == [-1, 0, 0, -1, -1, 1]
    assert tier_state(cache) == (frozenset({1}), frozenset({3}))
    hbm, dram = (t.stats for t in cache.tiers)
    assert (hbm.insertions, hbm.demotions, hbm.evictions) == (4, 2, 1)  # A, B, C, A in; A and C down; B out
    assert (dram.insertions, dram.promotions, dram.evictions) == (2, 1, 0)


@settings(max_examples=120, deadline=None)
@given(hierarchies, operations)
def test_lru_spanning_its_tiers_is_the_per_tier_lru_hierarchy_count_for_count(capacities, ops):
    # LRU of the sum is the exclusive LRU hierarchy (Wong & Wilkes' DEMOTE): the same answers and the same blocks in
    # each tier after every step, through serving's takes, frees and top-tier resizes (why runs keep LRU per tier:
    # multitier.SAME_WITHOUT_SPAN); the same counters too, but where the top tier shrinks under a full union: the span
    # evicts LRU's victim from the top tier where the per-tier chain demotes it for the bottom tier to evict
    keys = [arg if op != "resize" else 0 for op, arg in ops]
    per_tier = make_cache("lru", capacities, keys)
    cache = spanned("lru", capacities, keys)
    for now, (op, arg) in enumerate(ops):
        assert apply_operation(cache, op, arg, now) == apply_operation(per_tier, op, arg, now), (now, op, arg)
        assert tier_state(cache) == tier_state(per_tier), (now, op, arg)
    if not any(op == "resize" for op, _ in ops):
        assert tier_stats(cache) == tier_stats(per_tier)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(REFERENCE)), hierarchies, operations)
def test_the_compiled_span_equals_the_reference_step_by_step(policy, capacities, ops):
    # the compiled span against the pure-Python reference policy spanning the same tiers on the generic path
    keys = [arg if op != "resize" else 0 for op, arg in ops]
    compiled = spanned(policy, capacities, keys)
    reference = spanned(policy, capacities, keys, reference=True)
    for now, (op, arg) in enumerate(ops):
        assert apply_operation(compiled, op, arg, now) == apply_operation(reference, op, arg, now), (now, op, arg)
        assert tier_state(compiled) == tier_state(reference), (now, op, arg)
    assert tier_stats(compiled) == tier_stats(reference)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(REFERENCE)), st.lists(st.integers(1, 4), min_size=2, max_size=3),
       st.lists(st.lists(st.integers(0, 12), min_size=1, max_size=6), min_size=1, max_size=20))
def test_a_spanned_prefix_replay_equals_the_reference_and_lets_go_of_every_pin(policy, capacities, requests):
    # prefix semantics (hits held until their touch, pinned in the span policy and in their tier) through the compiled
    # span and the reference policy spanning the tiers on the generic path; requests may repeat an id, so a held hit
    # can be met again and moved up before its own touch: it stays held where it lands (the compiled span's fresh tier
    # slot lost its pin, the generic one's stayed with the tier it left: [[2], [0], [0, 2, 1, 2]] over LRU 1+1+1
    # differed). Every pin is let go by the end.
    blocks = np.array([b for r in requests for b in r], dtype=np.int64)
    offsets = np.cumsum([0] + [len(r) for r in requests])
    caches, hit_tiers = [spanned(policy, capacities, blocks), spanned(policy, capacities, blocks, reference=True)], []
    for cache in caches:
        hit_tier = np.full(len(blocks), -1, dtype=np.int8)
        cache.replay(blocks, offsets, hit_tier, 0, len(requests), prefix=True)
        hit_tiers.append(hit_tier.tolist())
    assert pinned_keys(caches[0]) == [] and not any(caches[1]._held) and not caches[1]._span_held
    assert hit_tiers[0] == hit_tiers[1]
    assert tier_state(caches[0]) == tier_state(caches[1])
    assert tier_stats(caches[0]) == tier_stats(caches[1])


def test_a_shrinking_top_tier_evicts_the_policys_victim_and_demotes_the_least_recent():
    # FIFO over HBM 2 + DRAM 1: 1 2 3 fill it (1 pushed down to DRAM); a hit on 1 moves it up (2 down). HBM shrinking
    # to 1 (a request took a block) makes the union 2: FIFO's victim, 1 (the first in), leaves from HBM, and HBM fits.
    # (Per tier, HBM's own FIFO would demote 3, the first in there, and DRAM evict 2: HBM {1}, DRAM {3}.)
    stream = [1, 2, 3, 1]
    cache = spanned("fifo", [2, 1], stream)
    assert [cache.touch(k, t) for t, k in enumerate(stream)] == [-1, -1, -1, 1]
    assert tier_state(cache) == (frozenset({3, 1}), frozenset({2}))
    cache.resize_top(1)
    assert tier_state(cache) == (frozenset({3}), frozenset({2}))
    assert cache.tiers[0].stats.evictions == 1 and cache.tiers[1].stats.evictions == 0
    cache.resize_top(0)  # HBM all in use: the union is DRAM's one block, FIFO's next victim (2) leaves; 3 moves down
    assert tier_state(cache) == (frozenset(), frozenset({3}))
