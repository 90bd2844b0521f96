"""Prefix semantics of the cache (``cache.access_semantics=prefix``): a prefix replay's hits are a prefix of each
request and cached prefixes stay whole, ``lookup_prefix`` (held blocks, in chunks), and the plugins that act on
prefixes (selective write, session prefetch). The compiled prefix replay against the reference policies is in
``tests/test_cache_properties.py``."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.cache.multitier import CachePlugins
from tests.cache_helpers import make_cache


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
        cached = set().union(*(cache.resident(i) for i in range(len(capacities))))
        for b in cached:  # leaves are evicted first: every cached block's parent is cached
            assert b not in parent or parent[b] in cached


def test_prefix_semantics_stop_at_first_miss():
    # FIFO, 3 blocks. r1 [p], r2 [p, c]: c is inserted after p, so p is older; r3 [x] evicts p, leaving c
    # cached without its parent. r4 [p, c]: plain lookup would count c; prefix semantics recompute it.
    requests = [[0], [0, 1], [2], [3], [0, 1]]
    cache, hit_tier, blocks, offsets = _prefix_replay("fifo", [3], requests)
    cache.replay(blocks, offsets, hit_tier, 0, len(requests), prefix=True)
    assert hit_tier.tolist() == [-1, 0, -1, -1, -1, -1, -1]


def test_lookup_prefix_counts_held_blocks_as_top_tier_hits():
    cache = make_cache("lru", [2, 4])
    for t, k in enumerate([1, 2, 3]):  # 1 demoted to DRAM
        cache.touch(k, t)
    assert cache.lookup_prefix([2, 1, 9, 3]).tolist() == [0, 1]
    assert cache.lookup_prefix([9, 2, 1], held={9}).tolist() == [0, 0, 1]
    assert cache.lookup_prefix([2, 1, 3], held={1}).tolist() == [0, 0, 0]  # in use: its DRAM copy does not count


class _CountingHeld(set):
    """Held blocks that count how many keys were asked about."""

    asked = 0

    def __contains__(self, key) -> bool:
        self.asked += 1
        return super().__contains__(key)


def test_lookup_prefix_asks_about_held_blocks_only_near_the_prefix():
    """A chain of 1,000 blocks whose third is neither held nor cached: the prefix is the first two, and whether a
    block is held is asked about the keys of the first chunk (``HELD_CHUNK``, 32), not all 1,000 (it was every key)."""
    cache = make_cache("lru", [4, 4], num_blocks=1_098)  # (the block-id space its keys are drawn from)
    cache.touch(1, 0)
    held = _CountingHeld({0})
    assert cache.lookup_prefix([0, 1, *range(100, 1098)], held=held).tolist() == [0, 0]
    assert held.asked < 100


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 400), st.lists(st.integers(0, 400), max_size=20), st.integers(0, 400))
def test_lookup_prefix_in_chunks_is_the_key_by_key_prefix(length, held_at, miss_at):
    """Prefixes of every length, across the chunk edges (32, 96, 224, ...): the tiers a key-by-key walk gives
    (held: the top tier; else ``find``; stop at the first block in neither). Blocks 0..399 are cached (in both
    tiers), blocks held only are put in at ``held_at``, and one block in neither at ``miss_at``."""
    cache = make_cache("lru", [100, 400], num_blocks=2_001)  # (the block-id space its keys are drawn from)
    for key in range(400):
        cache.touch(key, key)
    held = {5, 150, 390}  # held and cached: the top tier
    chain = list(range(length))
    for at in sorted(set(held_at), reverse=True):
        chain.insert(min(at, len(chain)), 1000 + at)
        held.add(1000 + at)
    chain.insert(min(miss_at, len(chain)), 2000)
    want = []
    for key in chain:
        level = 0 if key in held else cache.find(key)
        if level < 0:
            break
        want.append(level)
    assert len(want) == min(miss_at, len(chain) - 1) and {0, 1} >= set(want)
    assert cache.lookup_prefix(chain, held=held).tolist() == want


def _plugin_replay(capacities, requests, sessions, **plugins):
    cache, hit_tier, blocks, offsets = _prefix_replay("lru", capacities, requests)
    cache.replay(blocks, offsets, hit_tier, 0, len(requests), prefix=True,
                 plugins=CachePlugins(**plugins), sessions=np.array(sessions))
    return cache, hit_tier


def test_selective_write_keeps_only_shallow_blocks():
    # depth limit 2: of [0,1,2,3] only blocks 0 and 1 are kept, so the repeat hits exactly 2
    cache, hit_tier = _plugin_replay([10], [[0, 1, 2, 3], [0, 1, 2, 3]], [-1, -1], selective_write_depth=2)
    assert hit_tier.tolist() == [-1] * 4 + [0, 0, -1, -1]
    assert cache.resident(0) == {0, 1}


def test_session_prefetch_pulls_previous_turn_up_before_lookup():
    # HBM 2, DRAM 10. Session 7's turn [0, 1]; another request [5, 6] pushes 0 and 1 down to DRAM;
    # the next turn [0, 1] first prefetches them, so they hit in HBM instead of DRAM.
    requests, sessions = [[0, 1], [5, 6], [0, 1]], [7, -1, 7]
    without, hit_without = _plugin_replay([2, 10], requests, sessions)
    assert hit_without[4:6].tolist() == [1, 1]
    cache, hit_tier = _plugin_replay([2, 10], requests, sessions, session_prefetch=True)
    assert hit_tier[4:6].tolist() == [0, 0]
    assert cache.tiers[1].stats.prefetches == 2 and cache.tiers[1].stats.promotions == 0
