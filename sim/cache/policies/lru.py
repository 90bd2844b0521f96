"""LRU: evict the least recently used block.

The classic stack algorithm (Mattson, Gecsei, Slutz & Traiger, "Evaluation techniques for
storage hierarchies", IBM Systems Journal 9(2), 1970), whose inclusion property the MRC uses.
"""

from __future__ import annotations

from collections import OrderedDict

from sim.cache.policies.base import EvictionPolicy, register


@register
class LRU(EvictionPolicy):
    name = "lru"
    refresh_on_hit = True  # FIFO reuses this class with False

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self._order: OrderedDict[int, None] = OrderedDict()  # least recent first

    def on_access(self, key: int, now: int) -> None:
        self._order.move_to_end(key)

    def on_insert(self, key: int, now: int) -> None:
        self._order[key] = None

    def on_remove(self, key: int) -> None:
        del self._order[key]

    def victim(self, incoming: int) -> int:
        return next(iter(self._order))

    def replay_plain(self, keys: list[int], resident: set, capacity: int, start: int) -> tuple[list[int], int]:
        """The single-tier plain replay with the hooks above inlined (``MultiTierCache._replay_single_tier``).

        ``keys`` are looked up at positions ``start``…; the victim (the oldest key) leaves
        ``resident`` and the order together. Returns the hit positions and the evictions.
        """
        order = self._order
        touch = order.move_to_end if self.refresh_on_hit else None
        pop_oldest = order.popitem
        add, remove = resident.add, resident.remove
        hit_positions: list[int] = []
        hit = hit_positions.append
        evictions = 0
        for now, key in enumerate(keys, start):
            if key in resident:
                if touch is not None:
                    touch(key)
                hit(now)
            else:
                if len(resident) >= capacity:
                    remove(pop_oldest(False)[0])
                    evictions += 1
                order[key] = None
                add(key)
        return hit_positions, evictions
