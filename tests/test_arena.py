"""The tier arena: its block index across tiers always equals the tiers' contents, its memory
follows what the tiers hold (not their capacities), and tiers added while caches run leave
every cache exact."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sim.cache.arena import TierArena
from sim.cache.arena_layout import (
    CHAIN,
    ENTRIES,
    GROWTH,
    IN_USE,
    KEY,
    LINK_NEXT,
    LINK_PREV,
    LINK_ROWS,
    META_FIELDS,
    PLACE,
)
from sim.cache.block_index import slots_needed
from sim.cache.hooked import HookedMultiTierCache
from sim.cache.multitier import MultiTierCache, build_cache
from sim.cache.policies import lru
from sim.cache.tiers import new_tier
from sim.errors import TraceError
from tests.cache_helpers import NAMES, make_tiers, oracle_inputs
from tests.reference import REFERENCE

KEYS = 24
KERNEL_POLICIES = ["lru", "fifo", "lfu", "arc", "s3fifo", "sieve", "belady"]
op = st.one_of(
    st.tuples(st.just("touch"), st.integers(0, 3), st.lists(st.integers(0, KEYS - 1), min_size=1, max_size=6)),
    st.tuples(st.just("take"), st.integers(0, 3), st.lists(st.integers(0, KEYS - 1), min_size=1, max_size=3)),
    st.tuples(st.just("resize"), st.integers(0, 3), st.integers(0, 6)),
    st.tuples(st.just("add"), st.integers(0, 3), st.integers(1, 6)),  # a new cache over the shared tiers
)


# the directory's layouts: hashed throughout (an id space far larger than what the tiers hold), hashed until it
# would be as large as the id space, then heads direct and members hashed (a space of 24 or 32 ids: from the first
# growth of its 16 cells on), heads direct and members walked from the start (few tiers: cache-only replay)
DIRECTORIES = ["hashed", "switching", "few tiers"]


def _arena(directory: str, keys: int, next_use: np.ndarray) -> TierArena:
    """An arena over ``keys`` block ids whose directory is laid out as ``directory`` says (``DIRECTORIES``)."""
    if directory == "hashed":
        return TierArena(future=next_use, max_keys=1 << 30)
    return TierArena(future=next_use, max_keys=keys, few_tiers=directory == "few tiers")


def _expected_holders(arena: TierArena) -> dict[int, set[int]]:
    """Block id -> tiers holding it, from each tier's resident set (a scan of the slot pool)."""
    held: dict[int, set[int]] = {}
    for t in range(arena.num_tiers):
        for key in arena.resident_keys(t).tolist():
            held.setdefault(key, set()).add(t)
    return held


def _check_directory(arena: TierArena) -> None:
    """The directory files every filed slot once: hashed; or each chain head in its block id's cell and every other
    member hashed (or, with no hashed region, in no cell: walked). The hashed region's entries are counted and at
    load <= 0.7."""
    slots, table, aux = (arena._arrays[name] for name in ("slots", "table", "aux"))
    heads, cells = arena.direct_cells, arena.hashed_cells
    assert heads in (0, arena.max_keys) and cells & (cells - 1) == 0 and (cells or heads)
    direct, hashed = table[:heads], table[heads:]
    in_direct, in_hashed = direct[direct >= 0], np.sort(hashed[hashed >= 0])
    filed = np.flatnonzero(slots[:, KEY] >= 0)
    is_head = _check_links(arena, filed)
    if heads:
        assert np.sort(in_direct).tolist() == filed[is_head].tolist()
        assert slots[in_direct, KEY].tolist() == np.flatnonzero(direct >= 0).tolist()
        assert in_hashed.tolist() == (filed[~is_head].tolist() if cells else [])
    else:
        assert in_hashed.tolist() == filed.tolist()
    assert aux[ENTRIES] == len(in_hashed) and 10 * len(in_hashed) <= 7 * cells


def _check_links(arena: TierArena, filed: np.ndarray) -> np.ndarray:
    """The holder chains' links. Hashed directories: a link row (a pool row filed nowhere, KEY -1, tier 0 and where
    -1) for exactly the filed slots whose block id has two slots or more, each its own, counted, its links agreeing
    both ways. Walked (few tiers): no link rows, ``CHAIN`` the next member. Either way the chain from each head is
    every filed slot of its block id, each once. Per filed slot, whether it heads its chain."""
    slots, aux, table = (arena._arrays[name] for name in ("slots", "aux", "table"))
    keys, rows = slots[filed, KEY], slots[filed, CHAIN]
    walked = arena.direct_cells and not arena.hashed_cells
    if walked:
        assert aux[LINK_ROWS] == 0 and set(rows[rows >= 0].tolist()) <= set(filed.tolist())
        is_head = table[keys] == filed
    else:
        values, counts = np.unique(keys, return_counts=True)
        shared = np.isin(keys, values[counts > 1])
        assert ((rows >= 0) == shared).all() and len(np.unique(rows[shared])) == shared.sum() == aux[LINK_ROWS]
        assert (slots[rows[shared], KEY] == -1).all() and (slots[rows[shared], PLACE] == 0).all()
        is_head = np.where(rows >= 0, slots[np.maximum(rows, 0), LINK_PREV], -1) < 0
    in_use_elsewhere = aux[IN_USE] - len(filed) - aux[LINK_ROWS]  # (LFU's bucket nodes: in use, filed nowhere)
    assert in_use_elsewhere >= 0
    # every chain walked once, each slot's head noted: the chains are the filed slots, each in exactly one chain, that of
    # its own block id, one chain a block id (one pass over the slots: a fleet-sized directory has 400,000 chains)
    chain, prev, next_ = (slots[:, column].tolist() for column in (CHAIN, LINK_PREV, LINK_NEXT))
    head_of = np.full(len(slots), -1, dtype=np.int64)
    reached = 0
    for head in filed[is_head].tolist():
        s, before = head, -1
        while s >= 0:
            row = chain[s]
            if not walked:
                assert (prev[row] if row >= 0 else -1) == before
            assert head_of[s] < 0  # (no slot in two chains, or twice in one)
            head_of[s] = head
            reached += 1
            before, s = s, (row if walked or row < 0 else next_[row])
    assert reached == len(filed) and (head_of[filed] >= 0).all()  # the chains hold the filed slots, no other
    assert (slots[head_of[filed], KEY] == keys).all()  # each in its block id's chain
    assert len(np.unique(keys[is_head])) == is_head.sum() == len(np.unique(keys))  # one chain a block id
    return is_head


def _check_index(arena: TierArena, chain: list[int]) -> None:
    _check_directory(arena)
    held = _expected_holders(arena)
    for key in range(KEYS):
        tiers = arena.holders(key).tolist()
        assert len(tiers) == len(set(tiers)) and set(tiers) == held.get(key, set()), key
    for t in range(arena.num_tiers):
        assert arena.resident_count(t) == len(arena.resident_keys(t)) <= arena.capacity(t)
    for wanted in (np.arange(arena.num_tiers) % 2 == 1, np.ones(arena.num_tiers, dtype=np.bool_)):
        # each key on its own (the cluster's probe of a hybrid's sliding copies), from the resident sets
        assert arena.held_each(np.arange(KEYS), wanted).tolist() == [
            any(wanted[t] for t in held.get(key, ())) for key in range(KEYS)]
    found, offsets, tiers = arena.holders_chain(chain)
    expected = next((i for i, key in enumerate(chain) if key not in held), len(chain))
    assert found == expected and len(offsets) == found + 1 and offsets[-1] == len(tiers)
    for i in range(found):
        assert set(tiers[offsets[i]:offsets[i + 1]].tolist()) == held[chain[i]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(KERNEL_POLICIES), min_size=2, max_size=4), st.integers(1, 2),
       st.lists(st.integers(1, 6), min_size=4, max_size=4), st.booleans(), st.lists(op, min_size=1, max_size=60),
       st.lists(st.integers(0, KEYS - 1), min_size=1, max_size=8), st.sampled_from(DIRECTORIES), st.booleans())
# the switch to heads direct at the first growth (ARC's 12 slots and LRU's 6 for 6 blocks: 30 entries' room in
# 16 cells), then members hashed (inclusive: a block in two or three tiers), taken, resized away, a cache added
@example(["arc", "lru", "arc"], 2, [6, 6, 6, 6], True,
         [("touch", 0, [0, 1, 2, 3, 4, 5]), ("touch", 0, [6, 7, 8, 9, 10, 11]), ("add", 0, 6),
          ("touch", 1, [0, 1, 2, 3, 4, 5]), ("take", 1, [0, 1]), ("resize", 0, 2), ("touch", 0, [12, 13, 14, 1, 2]),
          ("touch", 1, [20, 21, 22, 23, 0])], [0, 1, 2, 3], "switching", False)
def test_the_block_index_equals_the_tiers_contents_after_every_operation(policies, shared, capacities, inclusive,
                                                                         ops, chain, directory, spanned):
    # Several caches with their own top tier over shared lower tiers (serving's layout), tiers of any
    # kernel policy (ghost entries, LFU buckets, heaps), caches added between operations, and (``spanned``) one
    # whose policy spans three tiers of its own (sim.cache.span; LRU's exclusive tiers are its span already): after
    # every touch, take and resize, holders(k) is exactly the set of tiers whose resident set holds k, and the
    # directory files every slot once. Every directory (``DIRECTORIES``), the switch to heads direct included.
    stream = np.arange(4 * KEYS) % KEYS  # a next-use index long enough for any position used below
    next_use, _ = oracle_inputs(stream)
    arena = _arena(directory, KEYS, next_use)
    lower = make_tiers(policies[1:1 + shared], capacities[1:1 + shared], stream, num_blocks=KEYS, arena=arena,
                       names=NAMES[1:])
    caches: list[MultiTierCache] = []

    def add_cache(capacity: int) -> None:
        top = make_tiers(policies[:1], [capacity], stream, num_blocks=KEYS, arena=arena)[0]
        caches.append(build_cache([top, *lower], 1, inclusive, track_positions=True, num_blocks=KEYS))

    add_cache(capacities[0])
    if spanned:
        own = make_tiers([policies[0]] * 3, capacities[1:], stream, num_blocks=KEYS, arena=arena)
        caches.append(build_cache(own, 1, False, track_positions=True, num_blocks=KEYS, span=True))
        assert caches[-1].span >= 0 or policies[0] == "lru"
    now = 0
    for kind, which, arg in ops:
        cache = caches[which % len(caches)]
        if kind == "touch":
            cache.touch_chain(arg, np.arange(now, now + len(arg)) % len(stream))
            now += len(arg)
        elif kind == "take":
            cache.take_chain(arg)
        elif kind == "resize":
            cache.resize_top(min(arg, arena.built_capacity(cache.tiers[0].index)))
        else:
            add_cache(arg)
        _check_index(arena, chain)
        every = np.arange(KEYS)  # a cache's find of many keys at once: its find of each (held ones at the top)
        assert cache.find_each(every).tolist() == [cache.find(k) for k in range(KEYS)]
        assert cache.find_each(every, {1, 2}).tolist() == [0 if k in (1, 2) else cache.find(k) for k in range(KEYS)]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["lru", "fifo", "belady"]), st.sampled_from(["lru", "lfu", "s3fifo", "sieve", "belady"]),
       st.lists(st.integers(1, 6), min_size=2, max_size=3),
       st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["touch", "touch", "take", "resize"]),
                          st.integers(0, 20)), min_size=1, max_size=120), st.integers(0, 40),
       st.sampled_from(DIRECTORIES))
@example("lru", "lfu", [6, 6, 6], [(i % 3, "take" if i % 7 == 6 else "touch", i % 20) for i in range(60)], 10,
         "switching")  # (the switch at the first growth, LFU joining after it)
def test_caches_stay_exact_while_tiers_are_added(policy, joiner, capacities, ops, join_at, directory):
    # Two caches over shared tiers from the start, a third joins after ``join_at`` operations (its
    # tier, of policy ``joiner``, is added to the arena while the others hold blocks; the arrays grow
    # under them, and widen when the joiner's policy uses slot columns the others do not). Every
    # step equals the reference policies on the generic path, for every cache, with every directory.
    keys = [arg for *_, arg in ops]
    next_use, _ = oracle_inputs(keys)
    sides = {}
    for kind in ("compiled", "reference"):
        arena = _arena(directory, 32, next_use)
        shared = make_tiers([policy] * (len(capacities) - 1), capacities[1:], keys, num_blocks=32, arena=arena,
                            names=NAMES[1:])
        hooks = {}

        def cache_of(top_policy=policy, arena=arena, shared=shared, hooks=hooks, kind=kind):
            top = make_tiers([top_policy], capacities[:1], keys, num_blocks=32, arena=arena)[0]
            if kind == "compiled":
                return build_cache([top, *shared], 1, track_positions=True, num_blocks=32)
            for t, name in [(top, top_policy), *((t, policy) for t in shared)]:
                cls = REFERENCE[name]
                hooks.setdefault(t.index, cls(t.capacity, next_use=next_use) if cls.needs_future else cls(t.capacity))
            return HookedMultiTierCache([top, *shared], 1, track_positions=True,
                                        hooks=[hooks[t.index] for t in [top, *shared]])

        sides[kind] = (cache_of, [cache_of(), cache_of()])
    for now, (which, kind, arg) in enumerate(ops):
        if now == join_at:
            for make, caches in sides.values():
                caches.append(make(joiner))
        results = []
        for _, caches in sides.values():
            cache = caches[which % len(caches)]
            if kind == "touch":
                results.append(cache.touch(arg, now))
            elif kind == "take":
                results.append(cache.take(arg))
            else:
                cache.resize_top(min(arg, capacities[0]))
        assert len(set(results)) <= 1, (now, which, kind, arg)
        compiled, reference = sides["compiled"][1], sides["reference"][1]
        for c, r in zip(compiled, reference, strict=True):
            assert [c.resident(i) for i in range(len(c.tiers))] == [r.resident(i) for i in range(len(r.tiers))]
    for c, r in zip(sides["compiled"][1], sides["reference"][1], strict=True):
        assert [t.stats for t in c.tiers] == [t.stats for t in r.tiers]


def test_ten_thousand_large_tiers_holding_ten_blocks_each_take_memory_for_their_blocks():
    # 10,000 tiers of 30,000 blocks each (a fleet's HBM tiers), each holding the same 10 blocks
    # (a prefix every instance caches). Preallocating every tier's slots and directory, as the arena
    # did before, would take 10,000 x (30,001 x 64 + 65,536 x 4) bytes = 21.8 GB. Memory for what is
    # held: per tier a meta row and an ARC scalar; per block held a 20-byte LRU slot and, its block having other
    # holders, a link row of the pool (the directory hashes members here); directory cells at load <= 0.7. The pool
    # grows by a 32nd, other arrays at most double past what they need, and each call reserves room for its own uses
    # (GROWTH slots per block use, each with two link rows where members are hashed: ``slots_needed``).
    tiers, blocks, capacity = 10_000, 10, 30_000
    arena = TierArena(max_keys=1 << 30)
    keys = np.arange(blocks, dtype=np.int64)
    positions = np.zeros(blocks, dtype=np.int64)
    for _ in range(tiers):
        cache = MultiTierCache([new_tier(arena, "hbm", "lru", capacity, 1.0, 1.0, 0.0)], 1)
        assert (cache.touch_chain(keys, positions) == -1).all()
    held, reserve = tiers * blocks, slots_needed(GROWTH * blocks, 1)
    arrays = arena._arrays
    assert arrays["meta"].nbytes + arrays["real"].nbytes <= 2 * tiers * (META_FIELDS * 8 + 8)  # meta and real rows
    assert len(arrays["slots"]) <= (2 * held + reserve) * 33 // 32 + 16  # a slot and a link row per block held
    assert arrays["slots"].nbytes == len(arrays["slots"]) * lru.SLOT_FIELDS * 4  # (LRU's int32 columns only)
    assert arrays["table"].nbytes <= 4 * (held + reserve) * 4  # int32 directory cells: a power of two >= 2x entries
    bound = (2 * tiers * (META_FIELDS * 8 + 8) + ((2 * held + reserve) * 33 // 32 + 16) * lru.SLOT_FIELDS * 4
             + 4 * (held + reserve) * 4 + 1024)  # (+ the arena-wide scalars)
    assert arena.nbytes <= bound < 50 * 2**20
    # the index across tiers: every tier holds every block, and a chain's holders come in one call
    assert sorted(arena.holders(3).tolist()) == list(range(tiers))
    found, offsets, holders = arena.holders_chain([0, 1, blocks + 1])
    assert found == 2 and np.diff(offsets).tolist() == [tiers, tiers]
    assert sorted(holders[offsets[1]:].tolist()) == list(range(tiers))
    assert arena.resident_count(tiers - 1) == blocks


@pytest.mark.parametrize("few_tiers", [True, False])
def test_a_direct_mapped_arena_refuses_block_ids_beyond_its_space(few_tiers):
    # Compiled code indexes the direct-mapped heads by block id without bounds checks: an id past the space the
    # arena was made for must be refused before any compiled call (not written past them). So must it where the
    # directory is hashed for now: it switches to heads direct as it grows.
    arena = TierArena(max_keys=8, few_tiers=few_tiers)
    cache = build_cache([new_tier(arena, "hbm", "lru", 4, 1.0, 1.0, 0.0)], 1)
    hit_tier = np.full(2, -1, dtype=np.int8)
    with pytest.raises(ValueError, match="block-id space"):
        cache.replay(np.array([3, 8]), np.array([0, 2]), hit_tier, 0, 1, prefix=False)
    cache.replay(np.array([3, 7]), np.array([0, 2]), hit_tier, 0, 1, prefix=False)
    assert hit_tier.tolist() == [-1, -1] and arena.resident_keys(0).tolist() == [3, 7]
    with pytest.raises(ValueError, match="block-id space"):
        cache.replay(np.array([-1, 7]), np.array([0, 2]), hit_tier, 0, 1, prefix=False)


@pytest.mark.parametrize("path", ["compiled", "generic"])
def test_a_block_demoted_from_a_shared_tier_keeps_its_own_next_use(path):
    """Belady in every tier: instances A and B (HBM of 1 block each) over a shared DRAM (1 block) and SSD (2).
    Stream (position: block, instance): 0: 3 A, 1: 5 A (3 to DRAM), 2: 4 B, 3: 2 B (4 to DRAM, pushing 3 to the
    SSD), 4: 1 B (2 to DRAM, pushing 4 to the SSD: {3, 4}), 5: 5 B (B's miss: 1 to DRAM, pushing 2 to the SSD,
    which evicts the block used farthest ahead), 6: 3 A. Block 3 is used again at 6, block 4 never: the SSD must
    evict 4 and A hits 3 there (tier 2). B, which pushed 3 down, never used 3; it took 3's next use from its own
    record (none: the position of 4's, never again), so the tie evicted 3 and A missed."""
    stream, who = [3, 5, 4, 2, 1, 5, 3], [0, 0, 1, 1, 1, 1, 0]
    next_use, _ = oracle_inputs(stream)
    arena = TierArena(future=next_use, max_keys=16)
    shared = make_tiers(["belady", "belady"], [1, 2], stream, arena=arena, names=NAMES[1:3])
    tops = [make_tiers(["belady"], [1], stream, arena=arena)[0] for _ in range(2)]
    if path == "compiled":
        caches = [build_cache([top, *shared], 1, track_positions=True, num_blocks=16) for top in tops]
    else:  # the reference policies on the generic path
        hooks = {t.index: REFERENCE["belady"](t.capacity, next_use=next_use) for t in [*tops, *shared]}
        caches = [HookedMultiTierCache([top, *shared], 1, track_positions=True, hooks=[hooks[t.index] for t in
                                                                                     [top, *shared]]) for top in tops]
    tiers = [caches[w].touch(key, now) for now, (key, w) in enumerate(zip(stream[:6], who, strict=False))]
    assert tiers == [-1] * 6 and caches[0].resident(2) == {2, 3}  # 4 evicted, 3 kept
    assert caches[0].touch(3, 6) == 2


def test_int32_slots_keep_block_ids_up_to_their_limit_and_refuse_larger_spaces():
    """Slots are int32 (half a fleet's arena): the largest block id an arena accepts, KEY_LIMIT - 1 = 2**31 - 2,
    is held and found exactly (a hashed directory; a direct-mapped one over a small space with its own largest id),
    in two tiers of an inclusive cache at once, so its holder chain links two slots; a block-id space or a Belady
    stream past the limit is refused up front rather than wrapped to negative ids or positions."""
    from sim.cache.arena_layout import KEY_LIMIT

    assert KEY_LIMIT == 2**31 - 1
    for arena, big in ((TierArena(max_keys=KEY_LIMIT), KEY_LIMIT - 1),
                       (TierArena(max_keys=1 << 10, few_tiers=True), (1 << 10) - 1)):  # (2**31 cells would be 8 GiB)
        cache = build_cache([new_tier(arena, "hbm", "lru", 1, 1.0, 1.0, 0.0),
                             new_tier(arena, "dram", "lru", 2, 1.0, 1.0, 0.0)], 1, inclusive=True)
        # big enters both tiers; 5 takes HBM (big stays in DRAM); big hits in DRAM and takes HBM back
        assert [cache.touch(k, i) for i, k in enumerate([big, 5, big])] == [-1, -1, 1]
        assert arena.resident_keys(0).tolist() == [big] and arena.resident_keys(1).tolist() == [5, big]
        assert sorted(arena.holders(big).tolist()) == [0, 1] and arena.holders(5).tolist() == [1]
        found, offsets, tiers = arena.holders_chain([big, 5, 7])
        assert found == 2 and sorted(tiers[:offsets[1]].tolist()) == [0, 1]
    with pytest.raises(TraceError, match="needs 2,147,483,648 block ids .* below 2,147,483,647"):
        TierArena(max_keys=KEY_LIMIT + 1)
    with pytest.raises(TraceError, match="at most 2,147,483,647 accesses"):
        TierArena(future=np.broadcast_to(np.int64(0), (KEY_LIMIT + 1,)))


@pytest.mark.parametrize("max_keys", [1 << 30, 1 << 21])
def test_growing_the_directory_never_holds_the_old_one_beside_the_new(max_keys):
    """A fleet's directory is a GiB: it is refilled from the slot pool after the old one is let go, so growing it
    from C cells to C' takes C' x 4 bytes at most, not old + new, and every block is still found where it is. Over
    2**30 ids a hashed table of 2**20 cells doubles; over 2**21 ids, doubling it would make it as large as the id
    space: it switches to 2**21 head cells (one per id) and a hashed region for the 200,000 members past the heads
    (2**19 cells at load <= 0.7)."""
    import tracemalloc

    tracemalloc.start()  # (before the old directory is allocated: its release counts)
    try:
        arena = TierArena(max_keys=max_keys)
        cache = build_cache([new_tier(arena, "hbm", "lru", 1 << 20, 1.0, 1.0, 0.0),
                             new_tier(arena, "dram", "lru", 1 << 20, 1.0, 1.0, 0.0)], 1, inclusive=True)
        keys = np.arange(0, 3 * 200_000, 3, dtype=np.int64)  # 200,000 blocks in both tiers: 400,000 entries
        for lo in range(0, len(keys), 1000):  # (a call reserves room for all it may add: 6 entries a block)
            cache.touch_chain(keys[lo:lo + 1000], np.arange(lo, lo + 1000))
        cells = len(arena._arrays["table"])
        assert cells == arena.hashed_cells == 2**20 and arena.direct_cells == 0  # (400,000 entries at load <= 0.7)
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        arena._grow_directory(0)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grown = len(arena._arrays["table"])
    if max_keys == 1 << 30:
        assert grown == arena.hashed_cells == 2 * cells and arena.direct_cells == 0
    else:
        assert arena.direct_cells == max_keys and arena.hashed_cells == 2**19 and grown == max_keys + 2**19
    assert abs(after - before - 4 * (grown - cells)) < 4096  # C' cells in, C out (and an empty array's header)
    assert peak - before < 4 * grown - 4 * cells // 2  # old + new would be 4 x C' above ``before``
    _check_directory(arena)
    assert (cache.lookup_prefix(keys) == 0).all() and sorted(arena.holders(3).tolist()) == [0, 1]
    assert arena.holders(1).tolist() == [] and arena.resident_count(1) == len(keys)
    cache.touch_chain(keys + 1, np.arange(len(keys)))  # 200,000 more blocks in both tiers: the members' region grows
    _check_directory(arena)
    assert (cache.lookup_prefix(keys + 1) == 0).all() and arena.resident_count(0) == 2 * len(keys)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, (1 << 27) - 1), st.integers(-1, 4), st.integers(-1, 4))
def test_a_slots_packed_tier_and_place_read_back_what_was_written(tier, where, moved):
    """A slot's tier, its pin and its place in the policy (-1 free, lists 0..3, TAKEN_WHERE 4) share one int32
    column: each reads back as written for every tier an arena may hold (2**27), and moving or pinning the slot
    keeps the others."""
    from sim.cache.arena_layout import PLACE, TAKEN_WHERE, pinned, place, set_pin, set_where, tier_of, where_of

    assert TAKEN_WHERE == 4
    slots = np.zeros((2, 9), dtype=np.int32)
    slots[1, PLACE] = place(tier, where)
    assert (tier_of(slots, 1), where_of(slots, 1), pinned(slots, 1)) == (tier, where, False)
    set_pin(slots, 1, True)
    set_where(slots, 1, moved)
    assert (tier_of(slots, 1), where_of(slots, 1), pinned(slots, 1)) == (tier, moved, True)
    set_pin(slots, 1, False)
    assert (tier_of(slots, 1), where_of(slots, 1), pinned(slots, 1)) == (tier, moved, False)
    assert slots[0, PLACE] == 0 and where_of(slots, 0) == -1  # a cleared row: free


def test_an_arena_refuses_more_tiers_than_a_slot_can_name():
    """Past 2**27 tiers a slot's packed column (tier, pin, place) could not say its tier: refused when such a tier is
    added (an arena that already holds the last nameable tier, not 2**27 real ones)."""
    arena = TierArena()
    arena.num_tiers = 1 << 27
    with pytest.raises(ValueError, match="at most 134,217,728 tiers"):
        arena.add_tier(1, 4, 4)
