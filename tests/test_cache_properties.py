"""The compiled cache engine: invariants checked after every step (hypothesis), step-by-step equality
with the pure-Python reference policies on the generic path, and tier semantics by hand. Prefix semantics and
``lookup_prefix`` on their own: ``tests/test_cache_prefix.py``."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sim.cache import engine
from sim.cache.access import NEVER, next_use_index
from sim.cache.arena import TierArena
from sim.cache.hooked import HookedMultiTierCache
from sim.cache.multitier import CachePlugins, build_cache
from sim.cache.policies import POLICIES
from tests.cache_helpers import (
    NAMES,
    apply_operation,
    make_cache,
    make_tiers,
    oracle_inputs,
    pinned_keys,
    plain_hits,
    tier_state,
    tier_stats,
)
from tests.reference import REFERENCE

CLASSIC = sorted(REFERENCE)
streams = st.lists(st.integers(0, 30), min_size=1, max_size=300)
capacity_lists = st.lists(st.integers(1, 12), min_size=1, max_size=4)
policy_names = st.sampled_from(sorted(POLICIES))
# serving-like operations: mostly uses, some takes (a running request holds the block), some top-tier resizes
operation = st.one_of(st.tuples(st.sampled_from(["touch", "touch", "touch", "take"]), st.integers(0, 30)),
                      st.tuples(st.just("resize"), st.integers(0, 12)))
operations = st.lists(operation, min_size=1, max_size=200)


@settings(max_examples=150, deadline=None)
@given(policy_names, capacity_lists, streams, st.booleans())
def test_capacity_never_exceeded_and_placement_is_consistent(policy, capacities, stream, inclusive):
    cache = make_cache(policy, capacities, stream, inclusive)
    for now, key in enumerate(stream):
        cache.touch(key, now)
        tiers = [cache.resident(i) for i in range(len(capacities))]
        for resident, capacity in zip(tiers, capacities, strict=True):
            assert len(resident) <= capacity
        if policy != "belady-bypass":  # a policy with admission control may decline it
            assert key in tiers[0]  # a used block is in the top tier afterwards
        if not inclusive:  # exclusive: a block lives in at most one tier
            assert sum(len(r) for r in tiers) == len(set().union(*tiers))
    # every insertion is matched by the block still being there or having left
    for i, tier in enumerate(cache.tiers):
        s = tier.stats
        assert s.insertions == len(cache.resident(i)) + s.promotions * (not inclusive) + s.demotions + s.evictions


@settings(max_examples=250, deadline=None)
@given(st.sampled_from(CLASSIC), capacity_lists, operations, st.booleans())
def test_compiled_engine_equals_the_reference_step_by_step(policy, capacities, ops, inclusive):
    # Same operations through the compiled kernels and through the reference policies on the generic
    # path: the same tier answers, the same residents of every tier after every step (so the same
    # evictions, in the same order), the same counters at the end.
    keys = [arg if op != "resize" else 0 for op, arg in ops]
    compiled = make_cache(policy, capacities, keys, inclusive)
    reference = make_cache(policy, capacities, keys, inclusive, reference=True)
    for now, (op, arg) in enumerate(ops):
        assert apply_operation(compiled, op, arg, now) == apply_operation(reference, op, arg, now), (now, op, arg)
        assert tier_state(compiled) == tier_state(reference), (now, op, arg)
    assert tier_stats(compiled) == tier_stats(reference)


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(["lru", "fifo", "belady"]), st.lists(st.integers(1, 8), min_size=2, max_size=3),
       st.lists(st.tuples(st.integers(0, 1), operation), min_size=1, max_size=200))
def test_tiers_shared_by_two_caches_equal_the_reference(policy, capacities, ops):
    # Two instances' caches over one set of lower tiers (serving): a block demoted into a shared tier
    # that already holds the other instance's copy. (The other reference policies corrupt their own
    # state when admitting a block they hold; the kernels keep its place.)
    keys = [arg if op != "resize" else 0 for _, (op, arg) in ops]
    next_use, _ = oracle_inputs(keys)
    caches = {}
    for kind in ("compiled", "reference"):
        arena = TierArena(future=next_use, max_keys=64)
        shared = make_tiers([policy] * (len(capacities) - 1), capacities[1:], keys, arena=arena, names=NAMES[1:])
        tops = [make_tiers([policy], capacities[:1], keys, arena=arena)[0] for _ in range(2)]
        if kind == "compiled":
            caches[kind] = [build_cache([top, *shared], 1, track_positions=True, num_blocks=64) for top in tops]
        else:
            cls = REFERENCE[policy]
            hooks = {t.index: cls(t.capacity, next_use=next_use) if cls.needs_future else cls(t.capacity)
                     for t in [*tops, *shared]}
            caches[kind] = [HookedMultiTierCache([top, *shared], 1, track_positions=True,
                                                 hooks=[hooks[t.index] for t in [top, *shared]]) for top in tops]
    for now, (which, (op, arg)) in enumerate(ops):
        compiled, reference = caches["compiled"][which], caches["reference"][which]
        assert apply_operation(compiled, op, arg, now) == apply_operation(reference, op, arg, now), (now, which, op, arg)
        for c, r in zip(caches["compiled"], caches["reference"], strict=True):
            assert tier_state(c) == tier_state(r), (now, which, op, arg)
    assert tier_stats(caches["compiled"][0]) == tier_stats(caches["reference"][0])
    # a copy enters a shared tier once: every insertion is still there or has left (a readmission is none)
    for level, tier in enumerate(caches["compiled"][0].tiers[1:], start=1):
        s = tier.stats
        assert s.insertions == len(caches["compiled"][0].resident(level)) + s.promotions + s.demotions + s.evictions
        assert s.bytes_written == s.insertions  # block bytes = 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(CLASSIC), min_size=2, max_size=3), st.lists(st.integers(1, 8), min_size=3, max_size=3),
       streams, st.booleans())
def test_tiers_with_different_policies_equal_the_reference(policies, capacities, stream, inclusive):
    capacities = capacities[:len(policies)]
    compiled = make_cache(policies, capacities, stream, inclusive)
    reference = make_cache(policies, capacities, stream, inclusive, reference=True)
    for now, key in enumerate(stream):
        assert compiled.touch(key, now) == reference.touch(key, now)
        assert tier_state(compiled) == tier_state(reference)
    assert tier_stats(compiled) == tier_stats(reference)


def test_a_learned_tier_above_a_compiled_one_runs_the_generic_path():
    # learned HBM over LRU DRAM: the LRU kernel is driven through its Python hooks; it must act as
    # the reference LRU does under the same learned tier.
    rng = np.random.default_rng(5)
    stream = (rng.zipf(1.3, 600) % 40).tolist()
    compiled = make_cache(["learned", "lru"], [5, 8], stream)
    assert isinstance(compiled, HookedMultiTierCache)
    reference = make_cache(["learned", "lru"], [5, 8], stream)
    reference.policies[1] = REFERENCE["lru"](8)
    for now, key in enumerate(stream):
        assert compiled.touch(key, now) == reference.touch(key, now)
        assert tier_state(compiled) == tier_state(reference)


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


@settings(max_examples=80, deadline=None)
@given(policy_names, st.integers(1, 12), streams)
def test_whole_stream_replay_equals_one_touch_at_a_time(policy, capacity, stream):
    replayed, cache = plain_hits(policy, [capacity], stream)
    stepped = make_cache(policy, [capacity], stream)
    levels = stepped.touch_chain(stream, np.arange(len(stream)))
    assert replayed == int((levels >= 0).sum())
    assert tier_state(cache) == tier_state(stepped)
    replay_stats, touch_stats = tier_stats(cache)[0], tier_stats(stepped)[0]
    assert replay_stats.pop("hits") == replayed and touch_stats.pop("hits") == 0  # a replay counts its hits
    assert replay_stats == touch_stats


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(sorted(name for name, cls in POLICIES.items() if cls.kind)), st.integers(0, 12),
       st.lists(st.lists(st.integers(0, 30), max_size=12), min_size=1, max_size=30), st.one_of(st.none(), st.integers(1, 4)))
def test_a_one_tier_replay_equals_the_multi_tier_use_block_by_block(policy, capacity, requests, depth):
    # A cache of one tier replays through its own lean loop (``engine.replay_single``); each access must do
    # exactly what the multi-tier use does to it: the same hit, the same contents, the same counters, with
    # selective write (a request's first ``depth`` blocks admitted, the rest looked up only) and capacity 0.
    stream = np.array([k for r in requests for k in r], dtype=np.int64)
    assume(len(stream) > 0)
    offsets = np.cumsum([0] + [len(r) for r in requests])
    replayed = make_cache(policy, [capacity], stream)
    hit_tier = np.full(len(stream), -2, dtype=np.int8)
    replayed.replay(stream, offsets, hit_tier, 0, len(requests), prefix=False,
                    plugins=CachePlugins(selective_write_depth=depth))
    stepped = make_cache(policy, [capacity], stream)
    levels = np.empty(len(stream), dtype=np.int8)
    for r in range(len(requests)):
        for j in range(offsets[r], offsets[r + 1]):
            admit = depth is None or j - offsets[r] < depth
            while not engine.touch_chain(stepped.arena.state, stepped.view, stream[j:j + 1], np.array([j]), admit,
                                         engine.USE, levels[j:j + 1]):
                stepped._reserve()
    assert hit_tier.tolist() == levels.tolist()
    assert tier_state(replayed) == tier_state(stepped)
    replay_stats, touch_stats = tier_stats(replayed)[0], tier_stats(stepped)[0]
    assert replay_stats.pop("hits") == int((levels >= 0).sum()) and touch_stats.pop("hits") == 0
    assert replay_stats == touch_stats


def test_exclusive_promotion_and_demotion_by_hand():
    # HBM 1 block, DRAM 1 block, LRU. a: miss; b: miss, a demoted; a: DRAM hit, promoted, b demoted.
    a, b, c = 1, 2, 3
    cache = make_cache("lru", [1, 1])
    assert [cache.touch(k, t) for t, k in enumerate([a, b, a, c])] == [-1, -1, 1, -1]
    assert cache.resident(0) == {c} and cache.resident(1) == {a}  # c demoted a; b fell out of DRAM
    hbm, dram = cache.tiers
    # HBM demoted a, then b (to make room for the promoted a), then a again; DRAM dropped only b
    assert (dram.stats.promotions, hbm.stats.demotions, dram.stats.evictions) == (1, 3, 1)


def test_inclusive_writes_through_and_keeps_lower_copies():
    a, b = 1, 2
    cache = make_cache("lru", [1, 3], inclusive=True)
    for t, k in enumerate([a, b]):
        cache.touch(k, t)
    assert cache.resident(0) == {b} and cache.resident(1) == {a, b}  # a dropped from HBM, copy kept below
    assert cache.touch(a, 2) == 1 and cache.resident(0) == {a} and cache.resident(1) == {a, b}
    hbm = cache.tiers[0]
    assert hbm.stats.demotions == 0 and hbm.stats.evictions == 2


def test_inclusive_belady_lower_tier_keeps_the_block_needed_next():
    # By hand, HBM 1 block over DRAM 2, inclusive: A A B C B. A's second use hits HBM and A is never used
    # again; when C's write-through fills DRAM (A, B resident), MIN evicts A (never used again) and keeps B,
    # so B's last use hits DRAM: 2 hits, as LRU gets. A DRAM copy whose next use stayed at the HBM hit (t=1,
    # in the past) looked needed soonest: B was evicted instead and Belady got 1 hit, fewer than LRU.
    a, b, c = 1, 2, 3
    stream = [a, a, b, c, b]
    for reference in (False, True):
        cache = make_cache("belady", [1, 2], np.array(stream), inclusive=True, reference=reference)
        assert [cache.touch(k, t) for t, k in enumerate(stream)] == [-1, 0, -1, -1, 1]
        assert cache.resident(1) == {b, c}
    assert plain_hits("belady", [1, 2], stream, inclusive=True)[0] == 2 == plain_hits("lru", [1, 2], stream,
                                                                                      inclusive=True)[0]


@settings(max_examples=120, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=2, max_size=3), st.lists(st.integers(0, 8), min_size=1, max_size=80))
def test_inclusive_belady_tiers_evict_the_farthest_true_next_use(capacities, stream):
    # MIN's definition, checked in every tier after every access: a block a tier drops is needed no sooner
    # (by the stream's own future) than any block it keeps, whichever tier's hit last used them.
    cache = make_cache("belady", capacities, np.array(stream), inclusive=True)

    def next_use(key: int, now: int) -> int:
        return next((i for i in range(now + 1, len(stream)) if stream[i] == key), len(stream))

    for now, key in enumerate(stream):
        before = [cache.resident(i) for i in range(len(capacities))]
        cache.touch(key, now)
        for level, held in enumerate(before):
            kept = cache.resident(level)
            for dropped in held - kept:
                assert all(next_use(dropped, now) >= next_use(k, now) for k in kept - {key}), (now, level, dropped)


def test_a_shrinking_top_tier_demotes_its_least_recent_blocks():
    cache = make_cache("lru", [4, 4])
    for t, k in enumerate([1, 2, 3, 4]):
        cache.touch(k, t)
    cache.resize_top(1)
    assert cache.resident(0) == {4} and cache.resident(1) == {1, 2, 3}
    assert cache.take(2) == 1 and cache.resident(1) == {1, 3}  # taken for a running request: out of the cache
    assert cache.tiers[1].stats.promotions == 1


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(CLASSIC), st.lists(st.integers(1, 6), min_size=1, max_size=4),
       st.lists(st.lists(st.integers(0, 20), min_size=1, max_size=8), min_size=1, max_size=30),
       st.booleans(), st.booleans(), st.one_of(st.none(), st.integers(1, 4)))
def test_prefix_replay_equals_the_reference_and_reads_each_served_hit_once(policy, capacities, requests, inclusive,
                                                                         prefetch, depth):
    # Prefix semantics through the compiled replay and through the reference policies on the generic (hooked)
    # path: the same hits, residents and counters, bytes read included. And each lower tier reads exactly the
    # hits it serves plus its prefetches (block bytes 1), though the touches, deepest first, may demote a hit
    # block before its own touch and reach lower-tier blocks past the first miss (recomputed, so not read).
    # Any lists of ids, not only chains: a cached block whose parent is not (a past-first-miss block) is common; and
    # a request may repeat an id (one block, met again: a held hit met again before its own touch keeps its pin on
    # the copy it moves or is copied to; test_prefix_pins' hand cases). No block is left held after the replay.
    blocks = np.array([b for r in requests for b in r], dtype=np.int64)
    offsets = np.cumsum([0] + [len(r) for r in requests])
    sessions = np.array([i % 3 for i in range(len(requests))], dtype=np.int64)  # turns of three sessions, in turn
    plugins = CachePlugins(selective_write_depth=depth, session_prefetch=prefetch)
    hit_tiers, caches = [], []
    for reference in (False, True):
        cache = make_cache(policy, capacities, blocks, inclusive, reference=reference)
        hit_tier = np.full(len(blocks), -1, dtype=np.int8)
        cache.replay(blocks, offsets, hit_tier, 0, len(requests), prefix=True, plugins=plugins, sessions=sessions)
        hit_tiers.append(hit_tier.tolist())
        caches.append(cache)
    assert pinned_keys(caches[0]) == [] and not any(caches[1]._held) and not caches[1]._span_held
    assert hit_tiers[0] == hit_tiers[1]
    assert tier_state(caches[0]) == tier_state(caches[1])
    assert tier_stats(caches[0]) == tier_stats(caches[1])
    served = np.bincount(np.array(hit_tiers[0])[np.array(hit_tiers[0]) >= 0], minlength=len(capacities))
    for level, tier in enumerate(caches[0].tiers):
        s = tier.stats
        assert s.hits == served[level]
        assert s.bytes_read == (0 if level == 0 else s.hits + s.prefetches), (level, s)


def test_next_use_index_by_hand():
    #         a  b  a  c  b  a          (positions 0..5)
    assert next_use_index(np.array([7, 3, 7, 9, 3, 7])).tolist() == [2, 4, 5, NEVER, NEVER, NEVER]
    assert next_use_index(np.array([], dtype=np.int64)).tolist() == []


@given(st.lists(st.one_of(st.integers(0, 20), st.integers(-2**62, 2**62)), max_size=200))
@settings(max_examples=60, deadline=None)
def test_next_use_index_is_the_next_position_of_the_same_key(stream):
    """Dense ids, and sparse or negative ones (taken by rank), against a forward scan."""
    expected = [next((u for u in range(t + 1, len(stream)) if stream[u] == key), NEVER) for t, key in enumerate(stream)]
    assert next_use_index(np.array(stream, dtype=np.int64)).tolist() == expected


def _plain_replay(cache, stream) -> np.ndarray:
    stream = np.asarray(stream, dtype=np.int64)
    hit_tier = np.full(len(stream), -1, dtype=np.int8)
    cache.replay(stream, np.arange(len(stream) + 1), hit_tier, 0, len(stream), prefix=False)
    return hit_tier


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8), streams, st.booleans())
def test_an_exclusive_lru_hierarchy_on_the_generic_path_hits_as_one_lru_of_both_sizes(top, lower, stream, plugin):
    # LRU's stack property: an exclusive HBM over DRAM, both LRU, demoting HBM's LRU block to DRAM's MRU end and
    # promoting a DRAM hit to HBM, holds the top + lower most recent blocks, HBM the top most recent: the hierarchy's
    # hits are a single LRU of top + lower's, its HBM hits a single LRU of top's (plain replay, per-tier loop)
    cache = make_cache("lru", [top, lower], stream, reference=True)
    assert isinstance(cache, HookedMultiTierCache)
    stream = np.asarray(stream, dtype=np.int64)
    hit_tier = np.full(len(stream), -1, dtype=np.int8)
    plugins = CachePlugins(selective_write_depth=10**9) if plugin else None  # (a depth no request reaches)
    cache.replay(stream, np.arange(len(stream) + 1), hit_tier, 0, len(stream), prefix=False, plugins=plugins)
    assert int((hit_tier >= 0).sum()) == plain_hits("lru", [top + lower], stream)[0]
    assert int((hit_tier == 0).sum()) == plain_hits("lru", [top], stream)[0]


def test_a_lower_tier_hit_the_top_declines_stays_in_its_tier_unwritten():
    # belady-bypass HBM over belady-bypass DRAM, one block each, stream 0 1 0 1: 1 is needed after 0, so the full HBM
    # declines it and it goes to DRAM (written once); at t=3 it hits there, and HBM (holding 0, whose next use is as
    # far: never) declines it again: it stays in DRAM, read once, neither promoted nor written a second time
    cache = make_cache("belady-bypass", [1, 1], [0, 1, 0, 1])
    assert isinstance(cache, HookedMultiTierCache)
    assert _plain_replay(cache, [0, 1, 0, 1]).tolist() == [-1, -1, 0, 1]
    assert tier_state(cache) == (frozenset({0}), frozenset({1}))
    dram = cache.tiers[1].stats
    assert (dram.hits, dram.insertions, dram.promotions, dram.bytes_written, dram.bytes_read) == (1, 1, 0, 1, 1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=2, max_size=3), streams, st.booleans())
def test_a_block_counts_as_promoted_only_when_it_moves_up(capacities, stream, inclusive):
    # belady-bypass tiers decline blocks: a lower-tier hit that no tier above takes stays where it was, so its tier's
    # promotions and writes do not change; one that moves up counts one promotion. And the hierarchy holds at most
    # the capacities' sum, admitting only the block in use: it is a cache of that size, which belady-bypass of that
    # size (the optimum with bypass) hits at least as often.
    cache = make_cache("belady-bypass", capacities, stream, inclusive)
    for now, key in enumerate(stream):
        level, before = cache.find(key), tier_stats(cache)
        assert cache.touch(key, now) == level
        after = tier_stats(cache)
        if level > 0:
            moved = cache.find(key) < level  # (inclusive: a copy above it now)
            assert after[level]["promotions"] - before[level]["promotions"] == int(moved)
            if not moved:
                assert after[level]["bytes_written"] == before[level]["bytes_written"]
    for tier in tier_stats(cache):
        assert tier["bytes_written"] == tier["insertions"]  # (one-byte blocks)
    hits = int((_plain_replay(make_cache("belady-bypass", capacities, stream, inclusive), stream) >= 0).sum())
    assert hits <= plain_hits("belady-bypass", [sum(capacities)], stream)[0]


def test_a_lower_tier_hit_with_no_room_above_stays_unwritten_in_the_compiled_engine():
    # LRU HBM of one block over LRU DRAM: 0 enters HBM; HBM shrinks to 0 blocks (every one in use by running
    # requests), demoting 0 to DRAM (written once); 0 is used again: a DRAM hit, read once, with nowhere to go up: it
    # stays, neither promoted nor written again
    cache = make_cache("lru", [1, 1], [0, 0])
    assert not isinstance(cache, HookedMultiTierCache)
    assert cache.touch(0, 0) == -1
    cache.resize_top(0)
    assert cache.touch(0, 1) == 1
    assert tier_state(cache) == (frozenset(), frozenset({0}))
    dram = cache.tiers[1].stats
    assert (dram.hits, dram.insertions, dram.promotions, dram.bytes_written, dram.bytes_read) == (0, 1, 0, 1, 1)


def test_lower_level_finds_the_copy_below_the_top_on_both_engines():
    # HBM of one block over DRAM, LRU: inclusive, 0 is written through, so DRAM holds a copy below HBM's; exclusive,
    # 0 is in HBM only until 1 demotes it. One tier: nothing below.
    for reference in (False, True):
        inclusive = make_cache("lru", [1, 2], inclusive=True, reference=reference)
        inclusive.touch(0, 0)
        assert (inclusive.find(0), inclusive.lower_level(0), inclusive.lower_level(1)) == (0, 1, -1)
        exclusive = make_cache("lru", [1, 2], reference=reference)
        exclusive.touch(0, 0)
        assert exclusive.lower_level(0) == -1
        exclusive.touch(1, 1)
        assert (exclusive.find(0), exclusive.lower_level(0), exclusive.lower_level(1)) == (1, 1, -1)
        assert make_cache("lru", [1], reference=reference).lower_level(0) == -1
