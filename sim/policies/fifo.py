"""FIFO: evict the block admitted earliest; hits do not change the order."""

from __future__ import annotations

from collections import OrderedDict

from sim.policies.base import EvictionPolicy, register


@register
class FIFO(EvictionPolicy):
    name = "fifo"

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self._order: OrderedDict[int, None] = OrderedDict()

    def on_access(self, key: int, now: int) -> None:
        pass

    def on_insert(self, key: int, now: int) -> None:
        self._order[key] = None

    def on_remove(self, key: int) -> None:
        del self._order[key]

    def victim(self, incoming: int) -> int:
        return next(iter(self._order))

    def replay_plain(self, keys: list[int], resident: set, capacity: int, start: int) -> tuple[list[int], int]:
        """The single-tier plain replay with the hooks above inlined (``MultiTierCache._replay_single_tier``).

        ``keys`` are looked up at positions ``start``…; the victim (the earliest admitted
        key) leaves ``resident`` and the order together. Returns the hit positions and the evictions.
        """
        order = self._order
        pop_oldest = order.popitem
        add, remove = resident.add, resident.remove
        hit_positions: list[int] = []
        hit = hit_positions.append
        evictions = 0
        for now, key in enumerate(keys, start):
            if key in resident:
                hit(now)
            else:
                if len(resident) >= capacity:
                    remove(pop_oldest(False)[0])
                    evictions += 1
                order[key] = None
                add(key)
        return hit_positions, evictions
