"""A generic-path tier's resident blocks, filed in the arena's block index as a compiled tier's are.

The generic path (``sim.cache.hooked``) keeps a tier's blocks in a Python set; the cluster finds where a prefix is
held through the arena's block index (``TierArena.holders_chain``: another node's DRAM/SSD to fetch from, a rack's
EIC across racks, precise-prefix's ranking). A tier whose blocks were only in the set was invisible there: a learned
policy on the DRAM of a two-node cluster fetched nothing from the other node (0 blocks against LRU's 1,656) and
served 0.1875 against LRU's 0.2753. Each block that enters the set takes an index slot in its tier (resident: list
0), and leaves it with the block; the tier's resident count (``RESIDENT``, which compiled policies keep and the
cluster's EIC occupancy reads) follows the set.
"""

from __future__ import annotations

import numpy as np

from sim.cache.arena import free_slot, new_slot, room
from sim.cache.arena_layout import ABSENT, NONE, RESIDENT, set_where
from sim.cache.block_index import lookup


class IndexedResidents(set):
    """A set of block ids whose adds and removes also file and unfile each block in ``arena``'s index for tier
    ``tier`` (only ``add``, ``remove`` and ``discard`` change it: the generic path's only changes)."""

    def __init__(self, arena, tier: int, keys=()):
        super().__init__()
        self.arena, self.tier = arena, tier
        self._tiers = np.array([tier], dtype=np.int64)
        for key in keys:
            self.add(key)

    def add(self, key: int) -> None:
        if key in self:
            return
        super().add(key)
        a = self.arena.state
        if not room(a, self._tiers, 1):
            self.arena.reserve(self._tiers, 1)
            a = self.arena.state
        a.aux[ABSENT] = NONE
        lookup(a, self.tier, key)  # (sets what filing a block no tier tracks yet relies on)
        set_where(a.slots, new_slot(a, self.tier, key), 0)
        a.meta[self.tier, RESIDENT] += 1

    def remove(self, key: int) -> None:
        super().remove(key)
        a = self.arena.state
        s = lookup(a, self.tier, key)
        if s >= 0:
            free_slot(a, self.tier, s)  # (out of the index, its place cleared)
            a.meta[self.tier, RESIDENT] -= 1

    def discard(self, key: int) -> None:
        if key in self:
            self.remove(key)
