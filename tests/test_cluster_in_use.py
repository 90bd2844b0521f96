"""The prefix index's record of blocks in use (``sim.cluster.in_use``): a chain goes on through a block only a running
request holds, listed under its instance's HBM tier, once however it is held there."""

from __future__ import annotations

import numpy as np

from sim.cache.arena import TierArena
from sim.cache.multitier import MultiTierCache
from sim.cache.tiers import new_tier
from sim.cluster.in_use import InUse
from sim.cluster.prefix_index import holders_chain


def _two_instances():
    """An arena of two one-tier caches (tiers 0 and 1: two instances' HBM), each of 8 blocks."""
    arena = TierArena(max_keys=1 << 20)
    caches = [MultiTierCache([new_tier(arena, "hbm", "lru", 8, 1.0, 1.0, 0.0)], 1) for _ in range(2)]
    return arena, caches


def test_a_chain_goes_on_through_blocks_in_use():
    # block 10 cached in tier 1; block 11 in use on tier 0 only (cached nowhere); block 12 cached in tier 1 and in use
    # on tier 0 and tier 1 (a second copy cached in tier 1's HBM: listed once); block 13 held nowhere. The arena alone
    # stops at block 11; with the record: [1], [0], [1, 0], found 3 (the resident holder first, then the record's in
    # the order taken, tier 1 once)
    arena, (_, hbm1) = _two_instances()
    hbm1.touch_chain(np.array([10, 12]), np.zeros(2, dtype=np.int64))
    in_use = InUse()
    in_use.taken([11, 12], 0)
    in_use.taken(np.array([12]), 1)
    wanted = np.ones(2, dtype=bool)
    chain = np.array([10, 11, 12, 13], dtype=np.int64)
    assert holders_chain(arena, wanted, chain)[0] == 1
    found, offsets, tiers = holders_chain(arena, wanted, chain, in_use)
    assert found == 3
    assert [tiers[offsets[i]:offsets[i + 1]].tolist() for i in range(found)] == [[1], [0], [1, 0]]
    # only tier 1 wanted: block 11 (in use on tier 0 alone) ends the chain
    found, offsets, tiers = holders_chain(arena, np.array([False, True]), chain, in_use)
    assert (found, tiers.tolist()) == (1, [1])
    # freed by both: the chain stops where the arena's does, and the record is empty
    in_use.freed(np.array([12, 11]), 0)
    in_use.freed([12], 1)
    assert len(in_use) == 0 and not in_use.held.any()
    assert in_use.marks(chain) is None
    assert holders_chain(arena, wanted, chain, in_use)[0] == 1


def test_block_ids_past_the_bitmap_are_not_in_use():
    in_use = InUse()
    in_use.taken([3], 0)
    marks = in_use.marks(np.array([3, 1_000_000], dtype=np.int64))
    assert marks.tolist() == [True, False]
