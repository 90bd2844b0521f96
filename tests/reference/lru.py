"""LRU: evict the least recently used block.

The classic stack algorithm (Mattson, Gecsei, Slutz & Traiger, "Evaluation techniques for
storage hierarchies", IBM Systems Journal 9(2), 1970), whose inclusion property the MRC uses.
"""

from __future__ import annotations

from collections import OrderedDict

from sim.cache.policies.base import EvictionPolicy
from tests.reference.base import register


@register
class LRU(EvictionPolicy):
    name = "lru"
    refresh_on_hit = True  # FIFO reuses this class with False

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self._order: OrderedDict[int, None] = OrderedDict()  # least recent first

    def on_access(self, key: int, now: int) -> None:
        if self.refresh_on_hit:
            self._order.move_to_end(key)

    def on_insert(self, key: int, now: int) -> None:
        self._order[key] = None

    def on_remove(self, key: int) -> None:
        del self._order[key]

    def victim(self, incoming: int) -> int:
        """The least recent block not pinned (-1: none)."""
        return next((key for key in self._order if key not in self.pinned), -1)
