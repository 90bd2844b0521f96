"""SIEVE: Zhang et al., "SIEVE is Simpler than LRU: an Efficient Turn-Key Eviction Algorithm for Web Caches", NSDI 2024.

New blocks enter at the head of a FIFO; a hit only sets a visited bit. A hand walks
from the tail towards the head, clearing visited bits, and evicts the first unvisited
block; it then rests at that block's newer neighbour, wrapping to the tail.
"""

from __future__ import annotations

from sim.cache.policies.base import EvictionPolicy
from tests.reference.base import register


@register
class SIEVE(EvictionPolicy):
    name = "sieve"

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self.newer: dict[int, int | None] = {}  # towards the head
        self.older: dict[int, int | None] = {}  # towards the tail
        self.visited: dict[int, bool] = {}
        self.head: int | None = None  # newest
        self.tail: int | None = None  # oldest
        self.hand: int | None = None

    def on_access(self, key: int, now: int) -> None:
        self.visited[key] = True

    def on_insert(self, key: int, now: int) -> None:
        self.newer[key] = None
        self.older[key] = self.head
        if self.head is not None:
            self.newer[self.head] = key
        self.head = key
        if self.tail is None:
            self.tail = key
        self.visited[key] = False

    def history(self, key: int) -> int:
        """Its visited bit."""
        return int(self.visited[key])

    def carry(self, key: int, history: int) -> None:
        self.visited[key] = bool(history)

    def on_remove(self, key: int) -> None:
        newer, older = self.newer.pop(key), self.older.pop(key)
        del self.visited[key]
        if newer is not None:
            self.older[newer] = older
        else:
            self.head = older
        if older is not None:
            self.newer[older] = newer
        else:
            self.tail = newer
        if self.hand == key:
            self.hand = newer

    def victim(self, incoming: int) -> int:
        key = self.hand if self.hand is not None else self.tail
        visited, newer = self.visited, self.newer
        left = 2 * len(visited) + 1  # a pinned block is passed over as a visited one; -1: every block is pinned
        while visited[key] or key in self.pinned:
            visited[key] = False
            key = newer[key]
            if key is None:
                key = self.tail
            left -= 1
            if not left:
                return -1
        self.hand = key
        return key
