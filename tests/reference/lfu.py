"""LFU with recency tie-break: evict the least frequently used block, the least recent among equals.

O(1) frequency buckets (Shah, Mitra & Matani, "An O(1) algorithm for implementing the
LFU cache eviction scheme", 2010). A block's count starts at 1 when admitted and is
forgotten when it leaves the tier.
"""

from __future__ import annotations

from collections import OrderedDict

from sim.cache.policies.base import EvictionPolicy
from tests.reference.base import register


@register
class LFU(EvictionPolicy):
    name = "lfu"

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self._freq: dict[int, int] = {}
        self._buckets: dict[int, OrderedDict[int, None]] = {}  # count -> keys, least recent first
        self._min = 0

    def _bucket(self, count: int) -> OrderedDict[int, None]:
        bucket = self._buckets.get(count)
        if bucket is None:
            bucket = self._buckets[count] = OrderedDict()
        return bucket

    def on_access(self, key: int, now: int) -> None:
        count = self._freq[key]
        bucket = self._buckets[count]
        del bucket[key]
        if not bucket:
            del self._buckets[count]
            if self._min == count:
                self._min = count + 1
        self._freq[key] = count + 1
        self._bucket(count + 1)[key] = None

    def on_insert(self, key: int, now: int) -> None:
        self._freq[key] = 1
        self._bucket(1)[key] = None
        self._min = 1

    def history(self, key: int) -> int:
        """Its use count."""
        return self._freq[key]

    def carry(self, key: int, history: int) -> None:
        """Takes on the count it was taken with: last among the blocks of that count."""
        count = self._freq[key]
        if history == count:
            return
        bucket = self._buckets[count]
        del bucket[key]
        if not bucket:
            del self._buckets[count]
        self._freq[key] = history
        self._bucket(history)[key] = None
        self._min = min(self._buckets)

    def on_remove(self, key: int) -> None:
        count = self._freq.pop(key)
        bucket = self._buckets[count]
        del bucket[key]
        if not bucket:
            del self._buckets[count]
            if self._min == count and self._buckets:
                self._min = min(self._buckets)  # O(distinct counts), only when the min bucket empties

    def victim(self, incoming: int) -> int:
        """The least recent block of the lowest count not pinned (-1: none)."""
        for count in sorted(self._buckets):
            for key in self._buckets[count]:
                if key not in self.pinned:
                    return key
        return -1
