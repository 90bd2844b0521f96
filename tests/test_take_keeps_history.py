"""The take rule (``sim.cache.policies.base``): a block a running request takes out of the top tier keeps what the
tier's policy knew of it, and re-enters, when freed, as a block seen again (its history plus this use), as vLLM's
``KVCacheBlock`` keeps its metadata while in use. Hand-computed cases through the cache API (``take_chain``, then
``touch_chain(freed=True)``), on the compiled engine and on the generic path over the reference policies."""

from __future__ import annotations

import numpy as np
import pytest

from sim.cache.arena_layout import TAKEN
from tests.cache_helpers import make_cache

A = 0  # the block a request uses; other keys are other blocks


def _use_twice(cache, t: int) -> int:
    """``A`` cached, then taken by a request and freed, twice (two requests in turn use it); the next position."""
    cache.touch(A, t)
    for _ in range(2):
        t += 1
        assert cache.take_chain([A])[0] == 0  # a top-tier hit: out of the cache while in use
        assert A not in cache.resident(0)
        cache.touch_chain([A], np.array([t]), freed=True)
    return t + 1


@pytest.mark.parametrize("reference", [False, True], ids=["compiled", "reference"])
def test_s3fifo_a_block_used_twice_survives_a_scan_of_one_hit_blocks(reference):
    # Capacity 10: small queue 1, main 9 (``s3fifo.init``). A enters small (freq 0); each use, kept across take and
    # free, adds one: freq 2. Nine one-hit blocks fill main (before the first eviction a miss finding small full goes
    # to main). The tenth needs a victim: small's head A has freq 2 >= the move-to-main threshold, so it moves to
    # main (freq 0) and main's head (block 1) is evicted; from then on each one-hit block enters small and the next
    # one evicts it (main never overflows), so A stays through any scan. Without the rule A re-entered small with
    # freq 0 at each free and was small's victim at the tenth block.
    cache = make_cache("s3fifo", [10], reference=reference)
    t = _use_twice(cache, 0)
    for b in range(1, 31):
        cache.touch(b, t)
        t += 1
    assert A in cache.resident(0)
    assert 1 not in cache.resident(0)


@pytest.mark.parametrize("reference", [False, True], ids=["compiled", "reference"])
def test_lfu_counts_accumulate_over_uses(reference):
    # Capacity 2. A: inserted (1), two uses kept across take and free: count 3. B: used twice: count 2. C misses and
    # evicts the lowest count, B. Without the rule A's count restarted at 1 at each free, and A went.
    cache = make_cache("lfu", [2], reference=reference)
    t = _use_twice(cache, 0)
    cache.touch(1, t)
    cache.touch(1, t + 1)
    cache.touch(2, t + 2)
    assert cache.resident(0) == {A, 2}


@pytest.mark.parametrize("reference", [False, True], ids=["compiled", "reference"])
def test_arc_a_block_used_again_is_in_t2(reference):
    # Capacity 2. A, seen again by its uses, re-enters in T2; B enters T1. C misses: |T1| = 1 > p = 0, so REPLACE
    # evicts T1's LRU, B (Megiddo & Modha, Fig. 4). Without the rule A re-entered T1 behind B: T1 held the whole
    # cache (case IV.A) and its LRU, A, went.
    cache = make_cache("arc", [2], reference=reference)
    t = _use_twice(cache, 0)
    cache.touch(1, t)
    cache.touch(2, t + 1)
    assert cache.resident(0) == {A, 2}


@pytest.mark.parametrize("reference", [False, True], ids=["compiled", "reference"])
def test_sieve_a_block_used_again_is_visited(reference):
    # Capacity 2. A re-enters visited (its use), then B, unvisited. C misses: the hand starts at the oldest, A,
    # clears its bit and passes on to B, the victim. Without the rule A re-entered unvisited and went.
    cache = make_cache("sieve", [2], reference=reference)
    t = _use_twice(cache, 0)
    cache.touch(1, t)
    cache.touch(2, t + 1)
    assert cache.resident(0) == {A, 2}


@pytest.mark.parametrize("policy", ["lru", "fifo"])
def test_lru_and_fifo_keep_nothing_a_freed_block_is_newest(policy):
    # Their order is their state: A, freed after B entered, is newer than B; C evicts B.
    cache = make_cache(policy, [2])
    cache.touch(A, 0)
    cache.take_chain([A])
    cache.touch(1, 1)
    cache.touch_chain([A], np.array([2]), freed=True)
    cache.touch(2, 3)
    assert cache.resident(0) == {A, 2}
    assert cache.tiers[0].arena.state.meta[cache.tiers[0].index, TAKEN] == 0


def test_the_kept_history_is_let_go_when_the_block_is_freed():
    # The history lives in a slot of the tier while the block is in use (one per block taken), and only then.
    cache = make_cache("lfu", [4])
    arena, top = cache.tiers[0].arena, cache.tiers[0].index
    for k in range(3):
        cache.touch(k, k)
    cache.take_chain([0, 1, 2])
    assert arena.state.meta[top, TAKEN] == 3 and arena.resident_count(top) == 0
    assert len(arena.holders(0)) == 0  # a kept history is not a cached copy
    cache.touch_chain([2, 1, 0], np.array([5, 6, 7]), freed=True)
    assert arena.state.meta[top, TAKEN] == 0 and cache.resident(0) == {0, 1, 2}


def test_a_block_taken_from_a_lower_tier_keeps_nothing():
    # vLLM loads it into a new block: nothing of the lower tier's history is kept for it. Tiers: HBM 1 over DRAM 2;
    # A enters HBM, block 1 demotes it to DRAM, a request takes it from there and frees it into HBM.
    cache = make_cache("lfu", [1, 2], stream=[0, 1, 2])
    cache.touch(A, 0)
    cache.touch(1, 1)
    assert cache.take_chain([A])[0] == 1
    cache.touch_chain([A], np.array([2]), freed=True)
    assert cache.tiers[0].arena.state.meta[cache.tiers[0].index, TAKEN] == 0
    assert cache.resident(0) == {A}
