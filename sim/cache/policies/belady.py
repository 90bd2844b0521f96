"""Belady's MIN (Belady, "A study of replacement algorithms for a virtual-storage computer", 1966).

Exact and clairvoyant: evicts the resident block whose next use is farthest in the
future; blocks never used again go first (ties: the smallest block id). Needs
``next_use[t]``: the stream index of the next access to the block accessed at index t
(``NEVER`` if none), built once (``sim.cache.access.next_use_index``) and held by the
arena (``future``). Like libCacheSim's Belady it always admits on a miss. A heap of the
resident blocks keeps every hook O(log n).

``belady-bypass`` may also decline a block (the ``admit`` hook): a full cache does not take
a block whose next use is no sooner than every resident block's, the optimum when caching
is optional (the ceiling for learned admission; with equal-sized blocks it is at most one
slot's worth above Belady). It is an analysis ceiling, not a production policy, so it runs
through the generic Python path (``sim.cache.hooked``) that honours ``admit``.
"""

from __future__ import annotations

import heapq

import numpy as np

from sim.cache.arena import free_slot, new_slot, no_carry, no_history
from sim.cache.arena_heap import heap_fix, heap_push, heap_remove, heap_top_unpinned
from sim.cache.arena_layout import HPOS, KEY_LIMIT, PRIO, arena_type, kernel, set_where
from sim.cache.policies.base import EvictionPolicy, KernelPolicy, register

KIND = 7
SLOT_FIELDS = HPOS + 1  # slot columns used: plus PRIO, HPOS: the next-use heap
BeladyArena = ARENA = arena_type("BeladyArena", __name__)
USES_HEAP = True  # the arena gives each Belady tier a heap region


def init(meta):
    """No scalars of its own."""


@kernel
def next_use(a, now):
    """The next use of the block accessed at ``now`` as its slot stores it: a position (below ``KEY_LIMIT``, the
    arena's bound on a stream), or ``KEY_LIMIT`` for ``NEVER`` (int32 slots; still later than every position)."""
    f = a.future[now]
    return f if f < KEY_LIMIT else KEY_LIMIT


@kernel
def access(a, t, s, now):
    a.slots[s, PRIO] = next_use(a, now)
    heap_fix(a, t, s)


@kernel
def insert(a, t, key, now):
    s = new_slot(a, t, key)
    set_where(a.slots, s, 0)
    a.slots[s, PRIO] = next_use(a, now)
    heap_push(a, t, s)
    return s


readmit = access  # admitted again while resident (a shared tier): its next use is the new one
history, carry = no_history, no_carry  # a block's rank is its next use, which the tier it enters reads itself


@kernel
def remove(a, t, s):
    heap_remove(a, t, s)
    free_slot(a, t, s)


@kernel
def victim(a, t, incoming):
    """The farthest next use that is not pinned. A pinned block (a hit of the request replayed, not yet touched)
    ranks by its use in that request, sooner than any other block's next use, so it is the top only when every
    block is pinned (-1: no victim), or where a session prefetch gave a block a stale rank."""
    return heap_top_unpinned(a, t)


@register
class Belady(KernelPolicy):
    name = "belady"
    kind = KIND
    needs_future = True


@register
class BeladyBypass(EvictionPolicy):
    """Belady's MIN that may decline admission: Python hooks over a lazy max-heap of next uses."""

    name = "belady-bypass"
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
        top = self._top()
        if top is None:
            raise ValueError("victim() of an empty tier")
        if top in self.pinned:  # the farthest next use of the blocks not pinned (a scan: rare, see the kernel's)
            free = [(-n, k) for k, n in self.next_of.items() if k not in self.pinned]
            return min(free)[1] if free else -1
        return top

    def admit(self, key: int, now: int) -> bool:
        """Take ``key`` into a full cache only if it is needed again before the farthest resident block that could
        leave (not pinned)."""
        if self._top() is None:
            return True
        top = self.victim(key)
        return top < 0 or int(self.next_use[now]) < self.next_of[top]

    def _top(self) -> int | None:
        heap, next_of = self.heap, self.next_of
        while heap:
            neg, key = heap[0]
            if next_of.get(key) == -neg:
                return key
            heapq.heappop(heap)
        return None
