"""LRU: evict the least recently used block."""

from __future__ import annotations

from collections import OrderedDict

from sim.policies.base import EvictionPolicy, register


@register
class LRU(EvictionPolicy):
    name = "lru"

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
