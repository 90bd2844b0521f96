"""Belady's MIN (Belady, "A study of replacement algorithms for a virtual-storage computer", 1966).

Exact and clairvoyant: evicts the resident block whose next use is farthest in the
future; blocks never used again go first. Needs ``next_use[t]``: the stream index of
the next access to the block accessed at index t (a sentinel past the end if none),
built by one backward pass (``sim.cache.access.next_use_index``). Like libCacheSim's
Belady it always admits on a miss. A lazy max-heap keeps every hook O(log n).
"""

from __future__ import annotations

import heapq

import numpy as np

from sim.cache.policies.base import EvictionPolicy
from tests.reference.base import register


@register
class Belady(EvictionPolicy):
    name = "belady"
    needs_future = True

    def __init__(self, capacity: int, next_use: np.ndarray):
        super().__init__(capacity)
        self.next_use = next_use
        self.next_of: dict[int, int] = {}
        self.heap: list[tuple[int, int]] = []  # (-next use, key); stale entries skipped lazily

    def _set(self, key: int, now: int) -> None:
        nxt = int(self.next_use[now])
        self.next_of[key] = nxt
        heapq.heappush(self.heap, (-nxt, key))
        if len(self.heap) > 4 * len(self.next_of) + 1024:  # drop stale entries; amortised O(log n)
            self.heap = [(-n, k) for k, n in self.next_of.items()]
            heapq.heapify(self.heap)

    def on_access(self, key: int, now: int) -> None:
        self._set(key, now)

    def on_insert(self, key: int, now: int) -> None:
        self._set(key, now)

    def on_remove(self, key: int) -> None:
        del self.next_of[key]

    def victim(self, incoming: int) -> int:
        heap, next_of = self.heap, self.next_of
        while True:
            neg, key = heap[0]
            if next_of.get(key) == -neg:
                return key
            heapq.heappop(heap)
