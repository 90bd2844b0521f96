"""A prefix replay holds a request's hits while its tail is inserted (``engine.replay``: pinned blocks): no policy
evicts a hit for its own request's tail, so a hit is never inserted again by its own touch (vLLM: a request's cached
blocks have ``ref_cnt`` > 0 and are out of the free queue that ``KVCacheManager.allocate_slots`` evicts from)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.cache.access import CacheStream
from sim.cache.arena import TierArena
from sim.cache.multitier import build_cache
from sim.cache.tiers import new_tier
from sim.config_workload import WorkloadConfig
from tests.cache_helpers import make_cache, make_tiers
from trace.loaders import load_trace


def _replay(policy, capacities, requests, block_bytes=1, span=False):
    blocks = np.array([b for r in requests for b in r], dtype=np.int64)
    offsets = np.cumsum([0] + [len(r) for r in requests])
    if block_bytes == 1 and not span:
        cache = make_cache(policy, capacities, blocks)
    else:
        cache = build_cache(make_tiers([policy] * len(capacities), capacities, blocks), block_bytes, span=span,
                            num_blocks=64)
    hit_tier = np.full(len(blocks), -1, dtype=np.int8)
    cache.replay(blocks, offsets, hit_tier, 0, len(requests), prefix=True)
    return cache, int((hit_tier >= 0).sum())


def test_the_hand_case_inserts_five_blocks_with_lru():
    # 3 blocks. r1 inserts 3, 2, 1 (deepest first): LRU order 3, 2, 1. r2 [4] evicts 3: 2, 1, 4. r3 finds 1, 2 (2
    # hits); its tail 3 evicts 4, the least recent block not held (2 and 1 are held), then 2 and 1 are touched.
    # 5 insertions (3 + 1 + 1); before the pins 3 evicted 2, whose touch evicted 1, whose touch evicted 4: 7.
    cache, hits = _replay("lru", [3], [[1, 2, 3], [4], [1, 2, 3]], block_bytes=100)
    s = cache.tiers[0].stats
    assert (hits, s.insertions, s.bytes_written, s.evictions) == (2, 5, 500, 2)
    assert cache.resident(0) == {1, 2, 3}


# The hand case, then r4 [5] and r5 [2], which show the order r3 left: (hits, insertions, residents).
HAND = [[1, 2, 3], [4], [1, 2, 3], [5], [2]]
EXPECTED = {
    # r3 as above: 3, 2, 1 (least recent first); r4 evicts 3; r5 hits 2
    "lru": (3, 6, {1, 2, 5}),
    # FIFO: r3's tail 3 evicts 4 (2 and 1 held), leaving 2, 1, 3 in insertion order (a hit does not move a block);
    # r4 evicts 2, so r5 misses 2 and evicts 1. (Before: r3 re-inserted 2 and 1 behind 3, r4 evicted 3, r5 hit.)
    "fifo": (2, 7, {2, 3, 5}),
    # LFU: counts 1 after r2 (2, 1, 4 by recency); r3's tail 3 evicts 4, then 2 and 1 reach count 2; r4 evicts 3
    # (count 1); r5 hits 2
    "lfu": (3, 6, {1, 2, 5}),
    # SIEVE (oldest first 2, 1, 4 after r2, the hand past 3): r3's tail 3: the hand passes 2 and 1 (held) and
    # evicts 4, then 2 and 1 are visited; r4: the hand clears 2 and 1 and evicts 3; r5 hits 2
    "sieve": (3, 6, {1, 2, 5}),
}


@pytest.mark.parametrize("policy", sorted(EXPECTED))
def test_a_hit_is_not_evicted_by_its_own_requests_tail(policy):
    cache, hits = _replay(policy, [3], HAND)
    assert (hits, cache.tiers[0].stats.insertions, cache.resident(0)) == EXPECTED[policy]


@pytest.mark.parametrize("policy", ["lru", "fifo", "lfu", "arc", "s3fifo", "sieve", "belady"])
def test_a_request_whose_hits_fill_the_tier_keeps_them_and_its_tail_goes_uncached(policy):
    # 2 blocks, both hits of r2: nothing may leave for its tail block 3, which is recomputed but not kept (vLLM could
    # not schedule r2 at all: its 3 blocks exceed the 2). The replay ends, counting 2 hits and 2 insertions.
    cache, hits = _replay(policy, [2], [[1, 2], [1, 2, 3]])
    s = cache.tiers[0].stats
    assert (hits, s.insertions, s.evictions, cache.resident(0)) == (2, 2, 0, {1, 2})


@pytest.mark.parametrize(("policy", "span"), [("lru", False), ("fifo", False), ("arc", True), ("s3fifo", True)])
def test_a_block_with_no_room_in_a_tier_of_held_hits_goes_down(policy, span):
    # HBM 2 + DRAM 2, exclusive: r2's hits 1, 2 fill HBM and are held, so its tail 3 ends in DRAM. Per-tier tiers:
    # HBM has no victim, 3 is written to DRAM. One policy spanning them: the union has room, 3 enters HBM and HBM's
    # overflow moves down, passing the held blocks: 3 is demoted. Nothing is evicted.
    cache, hits = _replay(policy, [2, 2], [[1, 2], [1, 2, 3]], span=span)
    hbm, dram = (t.stats for t in cache.tiers)
    assert cache.span >= 0 if span else cache.span < 0
    assert (hits, cache.resident(0), cache.resident(1)) == (2, {1, 2}, {3})
    assert (hbm.insertions, hbm.demotions, dram.insertions, dram.evictions) == ((3, 1) if span else (2, 0)) + (1, 0)


def test_a_lower_tier_hit_is_not_pushed_out_by_its_own_requests_tail():
    # LRU HBM 1 + DRAM 1. r1 [1, 2]: 2 then 1 enter HBM, 2 demoted to DRAM. r2 [3]: 3 enters HBM, 1 demoted to DRAM,
    # 2 evicted. r3 [1, 4]: 1 hit in DRAM (held); tail 4 enters HBM, demoting 3 to DRAM, whose victim would be 1:
    # held, so DRAM has no room and 3 leaves the cache. Then 1 is promoted: HBM {1}, DRAM {4}.
    cache, hits = _replay("lru", [1, 1], [[1, 2], [3], [1, 4]])
    hbm, dram = (t.stats for t in cache.tiers)
    assert (hits, cache.resident(0), cache.resident(1)) == (1, {1}, {4})
    assert (hbm.insertions, dram.insertions, dram.promotions) == (5, 3, 1)


def _pinned_lru_model(requests, capacity):
    """vLLM's free queue for one request at a time, by another route than the engine's: the hits are taken out of
    the queue (held, ``ref_cnt`` > 0), the tail is allocated deepest first, each block evicting the queue's head
    when cached plus held blocks fill the capacity (a cached block of the tail just moves to the newest end), then
    the hits return to the queue deepest first. (hits, insertions, the queue)."""
    queue: OrderedDict[int, None] = OrderedDict()  # cached blocks not held, the next evicted first
    hits = insertions = 0
    for request in requests:
        held = 0
        while held < len(request) and request[held] in queue:
            held += 1
        hits += held
        for key in request[:held]:
            del queue[key]
        for key in reversed(request[held:]):
            if key in queue:
                queue.move_to_end(key)
                continue
            if len(queue) + held >= capacity:
                if not queue:  # every block held: not kept
                    continue
                queue.popitem(last=False)
            queue[key] = None
            insertions += 1
        for key in reversed(request[:held]):
            queue[key] = None
    return hits, insertions, set(queue)


chains = st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=6), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 8), chains)
def test_prefix_replay_equals_a_pinned_lru_model(capacity, token_lists):
    ids: dict[tuple, int] = {}  # chained block ids: a block is named by its whole token prefix
    requests = [[ids.setdefault(tuple(toks[: i + 1]), len(ids)) for i in range(len(toks))] for toks in token_lists]
    cache, hits = _replay("lru", [capacity], requests)
    assert (hits, cache.tiers[0].stats.insertions, cache.resident(0)) == _pinned_lru_model(requests, capacity)


@pytest.fixture(scope="module")
def mooncake_head(shared_data):
    trace = load_trace(WorkloadConfig(trace=str(shared_data / "traces" / "mooncake_conversation.jsonl"), limit=2000),
                       512)
    return CacheStream(trace)


def _requests(stream: CacheStream) -> list[list[int]]:
    return [stream.blocks[lo:hi].tolist() for lo, hi in zip(stream.offsets[:-1], stream.offsets[1:], strict=True)]


def _one_tier_replay(stream: CacheStream, policy: str, capacity: int, prefix: bool) -> tuple[int, int]:
    """(hits, insertions) of ``stream`` replayed on one tier of ``capacity`` blocks."""
    arena = TierArena(max_keys=stream.num_ids, few_tiers=True)
    cache = build_cache([new_tier(arena, "hbm", policy, capacity, 1.0, 1.0, 0.0)], 1, num_blocks=stream.num_ids)
    hit_tier = np.full(len(stream.blocks), -1, dtype=np.int8)
    cache.replay(stream.blocks, stream.offsets, hit_tier, 0, len(stream.offsets) - 1, prefix=prefix)
    return int((hit_tier >= 0).sum()), cache.tiers[0].stats.insertions


# LRU hits of the first 2,000 Mooncake requests (512-token blocks) under prefix semantics, as before the pins: the
# pins change which blocks a tail evicts only where it would have evicted a hit, which LRU then re-inserted as most
# recent anyway; the insertions drop to the pinned model's.
MOONCAKE_LRU_HITS = {500: 2055, 2000: 2652, 4000: 5027}


@pytest.mark.parametrize("capacity", sorted(MOONCAKE_LRU_HITS))
def test_mooncake_lru_hits_are_unchanged_and_insertions_are_the_pinned_models(mooncake_head, capacity):
    hits, insertions, _ = _pinned_lru_model(_requests(mooncake_head), capacity)
    assert _one_tier_replay(mooncake_head, "lru", capacity, prefix=True) == (hits, insertions)
    assert hits == MOONCAKE_LRU_HITS[capacity]



def _pinned_replay_of(policy, requests: list[list[int]], capacity: int) -> tuple[int, int]:
    """A prefix replay written out over a reference policy's hooks, apart from the engine: each request's longest
    resident prefix is its hits, held (``pin``) until its own touch; its blocks are then touched deepest first, a
    resident one accessed, another inserted after the policy's victim (where the tier is full) is removed.
    (hits, insertions)"""
    resident: set[int] = set()
    hits = insertions = 0
    for now, blocks in enumerate(requests):
        held = 0
        while held < len(blocks) and blocks[held] in resident:
            policy.pin(blocks[held], True)
            held += 1
        hits += held
        for key in reversed(blocks):
            policy.pin(key, False)
            if key in resident:
                policy.on_access(key, now)
                continue
            if len(resident) >= capacity:
                out = policy.victim(key)
                policy.on_remove(out)
                resident.discard(out)
            policy.on_insert(key, now)
            resident.add(key)
            insertions += 1
    return hits, insertions


# ARC's prefix hits on the first 2,000 Mooncake requests equal its plain hits (libCacheSim's: test_cache_oracle) at
# 1,000 blocks, 2,501: ARC's own behaviour there (the written-out replay gives the same; LRU and S3-FIFO differ), and
# not at 8,000 (9,865 vs 9,863), where the pins save 2 insertions (44,696 -> 44,694)
@pytest.mark.parametrize("capacity, plain_equal", [(1000, True), (8000, False)])
def test_mooncake_arc_prefix_replay_equals_a_written_out_one(mooncake_head, capacity, plain_equal):
    from tests.reference.arc import ARC

    ours = _one_tier_replay(mooncake_head, "arc", capacity, prefix=True)
    assert ours == _pinned_replay_of(ARC(capacity), _requests(mooncake_head), capacity)
    assert (_one_tier_replay(mooncake_head, "arc", capacity, prefix=False)[0] == ours[0]) is plain_equal


# The stream 10 11 12 13 11 14 12 13 10: after the first four accesses the next uses are 10 -> 8, 13 -> 7, 12 -> 6,
# 11 -> 4 (``next_use_index``), so Belady's victim is 10, and with 10 pinned the farthest block not pinned is 13, then
# 12. (The compiled heap holds 10, 13, 12, 11 in that array order: 13 first among the rest.)
BELADY_STREAM = [10, 11, 12, 13, 11, 14, 12, 13, 10]


@pytest.mark.parametrize("policy", ["belady", "belady-bypass"])
def test_belady_passes_over_pinned_blocks_to_the_farthest_next_use_not_pinned(policy):
    from sim.cache.access import next_use_index
    from sim.cache.policies import make_policy

    hooks = make_policy(policy, 4, next_use_index(np.array(BELADY_STREAM)))
    for now, key in enumerate(BELADY_STREAM[:4]):
        hooks.on_insert(key, now)
    assert hooks.victim(14) == 10
    hooks.pin(10, True)
    assert hooks.victim(14) == 13  # (not 11, the nearest next use; not 12, the heap's last)
    hooks.pin(13, True)
    assert hooks.victim(14) == 12
    for key in (11, 12):
        hooks.pin(key, True)
    assert hooks.victim(14) == -1  # every block pinned
    hooks.pin(10, False)
    assert hooks.victim(14) == 10


@pytest.mark.parametrize("policy", ["lru", "fifo"])
def test_an_inclusive_tier_of_held_hits_takes_no_copy_and_the_tiers_below_take_theirs(policy):
    # HBM 1 + DRAM 2, inclusive (write-through). r1 [5]: 5 is written to both. r2 [5, 7]: 5 is a hit in HBM, held; its
    # tail 7 finds HBM's one block held, so HBM takes no copy, and DRAM takes its own beside 5 (a write-through's copy,
    # not a block moving down: 7 is written there once). Nothing is evicted.
    requests = [[5], [5, 7]]
    blocks = np.array([b for r in requests for b in r], dtype=np.int64)
    cache = make_cache(policy, [1, 2], blocks, inclusive=True)
    hit_tier = np.full(len(blocks), -1, dtype=np.int8)
    cache.replay(blocks, np.cumsum([0] + [len(r) for r in requests]), hit_tier, 0, len(requests), prefix=True)
    hbm, dram = (t.stats for t in cache.tiers)
    assert (hit_tier.tolist(), cache.resident(0), cache.resident(1)) == ([-1, 0, -1], {5}, {5, 7})
    assert (hbm.insertions, dram.insertions, hbm.evictions, dram.evictions) == (1, 2, 0, 0)


@pytest.mark.parametrize("policy", ["lru", "fifo", "lfu", "arc", "s3fifo", "sieve", "belady"])
def test_with_one_of_two_blocks_held_the_other_is_the_victim_however_often_it_was_used(policy):
    # 2 blocks. r1 [2, 2, 5] has no hit (2 misses first): 5 is inserted, then 2, whose second touch uses it again. r2
    # [5, 1]: 5 is a hit, held; its tail 1 needs room, and the one block not held is 2: it leaves, whatever its use
    # count (S3-FIFO: its frequency 1 is spent at main's tail, behind the held 5, and 2 is then the victim).
    cache, hits = _replay(policy, [2], [[2, 2, 5], [5, 1]])
    s = cache.tiers[0].stats
    assert (hits, s.insertions, s.evictions, cache.resident(0)) == (1, 3, 1, {1, 5})


def test_a_held_lower_tier_hit_met_again_before_its_own_touch_stays_held():
    """HBM 1, DRAM 1, LRU, exclusive. r1 [0, 1] leaves 0 in HBM and 1 in DRAM. r2 [0, 1, 2, 1] finds 0 and 1 (2 hits,
    both held) and touches deepest first: position 3 is block 1 again, before its own touch at 1: HBM holds only the
    held 0, so 1 goes back to DRAM (a fresh slot) and must stay held there; then 2 finds HBM and DRAM full of held
    blocks and is not kept; 1's own touch goes back again; 0 is refreshed. DRAM: 1 insertion (r1's demotion), no
    eviction. The pin was lost on the fresh slot: 2 evicted 1 from DRAM and 1's touch put it back (DRAM 3 insertions,
    2 evictions), where the generic path, holding it, did neither (hmut8, from the property test's shrunk case)."""
    cache, hits = _replay("lru", [1, 1], [[0, 1], [0, 1, 2, 1]])
    dram = cache.tiers[1].stats
    assert hits == 2 and (dram.insertions, dram.evictions) == (1, 0)  # (hits: the prefix 0, 1; position 3 is past it)
    assert cache.resident(0) == {0} and cache.resident(1) == {1}


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("policy", ["lru", "fifo", "lfu", "arc", "s3fifo", "sieve", "belady"])
def test_a_held_lower_tier_hit_moved_up_before_its_own_touch_stays_held_in_the_tier_above(policy, reference):
    """HBM 1 + DRAM 1, exclusive: one block a tier, so every policy's victim is that block unless it is held. r1 [0, 2]:
    2 enters HBM, then 0 demotes it: HBM {0}, DRAM {2}. r2 [2, 1, 0, 2]: 2 is a DRAM hit, held (1 misses). Touches:
    position 3 is 2 again, before its own touch at 0: it moves up, demoting 0 to DRAM, and stays held in HBM (one
    block, which r2 holds until it is done). Position 2, 0: a DRAM hit whose move up finds HBM's one block held: back
    to DRAM (promotion undone). Position 1, 1: HBM has no victim, DRAM's 0 is evicted for it. Position 0: 2's own
    touch, an HBM hit. HBM: insertions 2 + 1, demotions 1 + 1; DRAM: insertions 1 + 1 + 1, 1 eviction, 1 promotion,
    1 hit (1 block read). With the pin lost on the move up, 0's move demoted 2, 1 evicted it from DRAM and its own
    touch brought it back: HBM 6 insertions, DRAM 5 and 2 evictions (the compiled replay); the generic path kept 2's
    pin with DRAM, so it was not held in HBM but held again when demoted back: 6 and 4, no eviction (hmut8's shrunk
    case, ARC; [[1, 0], [0, 2, 1, 0]] is the same with the ids renamed)."""
    requests = [[0, 2], [2, 1, 0, 2]]
    blocks = np.array([b for r in requests for b in r], dtype=np.int64)
    cache = make_cache(policy, [1, 1], blocks, reference=reference)
    hit_tier = np.full(len(blocks), -1, dtype=np.int8)
    cache.replay(blocks, np.cumsum([0] + [len(r) for r in requests]), hit_tier, 0, len(requests), prefix=True)
    hbm, dram = (t.stats for t in cache.tiers)
    assert hit_tier.tolist() == [-1, -1, 1, -1, -1, -1]
    assert (hbm.insertions, hbm.demotions, hbm.evictions) == (3, 2, 0)
    assert (dram.insertions, dram.evictions, dram.promotions, dram.hits, dram.bytes_read) == (3, 1, 1, 1, 1)
    assert cache.resident(0) == {2} and cache.resident(1) == {1}


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("policy", ["lru", "fifo", "lfu", "arc", "s3fifo", "sieve", "belady"])
def test_a_hit_repeated_within_the_hits_is_held_until_its_first_positions_touch(policy, reference):
    """HBM 1 + DRAM 2, exclusive (HBM's one block is its victim unless held; DRAM never fills: no policy choice). r1
    [3], r2 [2]: HBM {2}, DRAM {3}. r3 [2, 3, 2]: three hits (HBM, DRAM, HBM), 2 one block, held until the touch of
    its first position, the last. Position 2: 2 refreshed, still held. Position 1: 3's move up finds HBM's one block
    held: back to DRAM (promotion undone). Position 0: 2 let go. HBM: 2 insertions, 1 demotion (r2's); DRAM: 1
    insertion, no promotion. Let go at position 2, 2 was demoted by 3's move up and moved back up by its own touch
    (demoting 3): HBM 4 insertions and 3 demotions, DRAM 3 insertions and 2 promotions, for the same blocks."""
    requests = [[3], [2], [2, 3, 2]]
    blocks = np.array([b for r in requests for b in r], dtype=np.int64)
    cache = make_cache(policy, [1, 2], blocks, reference=reference)
    hit_tier = np.full(len(blocks), -1, dtype=np.int8)
    cache.replay(blocks, np.cumsum([0] + [len(r) for r in requests]), hit_tier, 0, len(requests), prefix=True)
    hbm, dram = (t.stats for t in cache.tiers)
    assert hit_tier.tolist() == [-1, -1, 0, 1, 0]
    assert (hbm.insertions, hbm.demotions, dram.insertions, dram.promotions, dram.evictions) == (2, 1, 1, 0, 0)
    assert cache.resident(0) == {2} and cache.resident(1) == {3}


@pytest.mark.parametrize("reference", [False, True])
def test_an_inclusive_copy_of_a_held_hit_is_held_and_let_go_at_its_own_touch(reference):
    """HBM 2 + DRAM 3, inclusive (every block written to both), LRU. r1 [1], r2 [0]: HBM {1, 0}, DRAM {1, 0}. r3 [3]:
    HBM evicts 1: HBM {0, 3}, DRAM {1, 0, 3}. r4 [1, 5, 1]: 1 is a DRAM hit, held there. Position 2, 1 again: copied up
    (HBM evicts 0), and the pin goes to that copy, the one a lookup finds now. Position 1, 5: HBM evicts 3, DRAM its
    least recent, 0 (1 was refreshed by its copy up): HBM {1, 5}, DRAM {3, 1, 5}. Position 0: 1's own touch lets it
    go. r5 [6], r6 [7], r7 [8] then evict from DRAM 3, 1, 5: DRAM {6, 7, 8}, HBM {7, 8}. The pin left on DRAM's copy
    (its own touch let go of the copy above, found first) held 1 in DRAM for good: DRAM {1, 7, 8}, on both paths.
    HBM: insertions 8 (r1..r3 3, r4 2, r5..r7 3), evictions 6; DRAM: insertions 7, evictions 4, 1 promotion."""
    requests = [[1], [0], [3], [1, 5, 1], [6], [7], [8]]
    blocks = np.array([b for r in requests for b in r], dtype=np.int64)
    cache = make_cache("lru", [2, 3], blocks, inclusive=True, reference=reference)
    hit_tier = np.full(len(blocks), -1, dtype=np.int8)
    cache.replay(blocks, np.cumsum([0] + [len(r) for r in requests]), hit_tier, 0, len(requests), prefix=True)
    hbm, dram = (t.stats for t in cache.tiers)
    assert int((hit_tier >= 0).sum()) == 1 and hit_tier[3] == 1
    assert cache.resident(0) == {7, 8} and cache.resident(1) == {6, 7, 8}
    assert (hbm.insertions, hbm.evictions, dram.insertions, dram.evictions, dram.promotions) == (8, 6, 7, 4, 1)


# S3-FIFO, 20 blocks: small 2 (10%), main 18. r1 [0..19] inserts deepest first: 19, 18 fill small; 17..0 go to main (no
# eviction yet: small full). r2 [20]: main is not over its share, so small's head 19 is the victim (to the ghost); 20
# enters small. r3 [19]: a ghost hit; small's head 18 is the victim, 19 enters main: main 19 > 18, small {20}. The last
# request's 19 hits are all of main, held; its tail 21 finds main over its share with every block of it held, so the
# victim comes from small and 21 is kept. tests/reference/s3fifo.py on the generic path gives the same.
S3_MAIN_HELD = [list(range(20)), [20], [19]]
S3_MAIN_HELD_LAST = list(range(18)) + [19, 21]


@pytest.mark.parametrize(("between", "hits"), [
    # small's 20 (frequency 0) is the victim. (hits 19; insertions 20 + 1 + 1 + 1; evictions 19, 18, 20.)
    ([], 19),
    # two hits on 20 first: small moves it to main (frequency 2, over the threshold), leaving small with no victim;
    # main is searched again and 20, its one block not held, is the victim. (hits 2 + 19; the same insertions.)
    ([[20], [20]], 21),
])
def test_s3fifo_with_every_block_of_an_overfull_main_held_evicts_from_small(between, hits):
    requests = S3_MAIN_HELD + between + [S3_MAIN_HELD_LAST]
    for reference in (False, True):
        blocks = np.array([b for r in requests for b in r], dtype=np.int64)
        cache = make_cache("s3fifo", [20], blocks, reference=reference)
        hit_tier = np.full(len(blocks), -1, dtype=np.int8)
        cache.replay(blocks, np.cumsum([0] + [len(r) for r in requests]), hit_tier, 0, len(requests), prefix=True)
        s = cache.tiers[0].stats
        assert (int((hit_tier >= 0).sum()), s.insertions, s.evictions, cache.resident(0)) == (
            hits, 23, 3, set(range(18)) | {19, 21})
