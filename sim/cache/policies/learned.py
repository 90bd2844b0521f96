"""Learned eviction: evict the block whose *predicted* next use is farthest (Belady with a model).

Predictions come from ``learned.model`` (LightGBM on online features), computed for the
whole stream in one batch before the replay; each is a function of the past only, so
this equals predicting at access time, without a per-access call into LightGBM. A block is expected
back no sooner than predicted and no sooner than it has already been idle (when a
prediction fails, LRU's estimate takes over); the victim is the block expected back
last, found in O(log n) as the larger of the farthest prediction and the least recently
used block's estimate. In the spirit of LRB (Song et al.,
"Learning Relaxed Belady for Content Distribution Network Caching", NSDI 2020), which
also approximates Belady's choice with a learned next-use estimate.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict

import numpy as np

from sim.cache.policies.base import EvictionPolicy, register


@register
class Learned(EvictionPolicy):
    name = "learned"
    needs_predictions = True

    def __init__(self, capacity: int, predicted: np.ndarray):
        super().__init__(capacity)
        self.predicted = predicted
        self.expect: dict[int, float] = {}  # resident key -> predicted next-use position
        self.idle: OrderedDict[int, int] = OrderedDict()  # key -> last use position, least recent first
        self.farthest: list[tuple[float, int]] = []  # max-heap (negated) of (expected, key), lazy
        self.now = 0

    def _set(self, key: int, now: int) -> None:
        self.now = now
        expected = float(self.predicted[now])
        self.expect[key] = expected
        idle = self.idle
        idle[key] = now
        idle.move_to_end(key)
        heapq.heappush(self.farthest, (-expected, key))
        if len(self.farthest) > 4 * len(self.expect) + 1024:  # drop stale entries; amortised O(log n)
            self.farthest = [(-e, k) for k, e in self.expect.items()]
            heapq.heapify(self.farthest)

    def on_access(self, key: int, now: int) -> None:
        self._set(key, now)

    def on_insert(self, key: int, now: int) -> None:
        self._set(key, now)

    def on_remove(self, key: int) -> None:
        del self.expect[key]
        del self.idle[key]

    def replay_plain(self, keys: list[int], resident: set, capacity: int, start: int) -> tuple[list[int], int]:
        """The single-tier plain replay with the hooks of this class inlined (``MultiTierCache``'s fast path)."""
        expect, idle, predicted = self.expect, self.idle, self.predicted
        farthest = self.farthest
        push, pop = heapq.heappush, heapq.heappop
        touch, add, remove = idle.move_to_end, resident.add, resident.remove
        hit_positions: list[int] = []
        hit = hit_positions.append
        evictions = 0
        expected_of = predicted[start:start + len(keys)].tolist()
        for offset, key in enumerate(keys):
            now = start + offset
            expected = expected_of[offset]
            if key in resident:
                hit(now)
            else:
                if len(resident) >= capacity:
                    while expect.get(farthest[0][1]) != -farthest[0][0]:
                        pop(farthest)
                    oldest, last = next(iter(idle.items()))
                    victim = oldest if 2 * (now - 1) - last >= -farthest[0][0] else farthest[0][1]
                    del expect[victim], idle[victim]
                    remove(victim)
                    evictions += 1
                add(key)
            expect[key] = expected
            idle[key] = now
            touch(key)
            push(farthest, (-expected, key))
            if len(farthest) > 4 * len(expect) + 1024:
                farthest[:] = [(-e, k) for k, e in expect.items()]
                heapq.heapify(farthest)
        self.now = start + len(keys) - 1
        return hit_positions, evictions

    def victim(self, incoming: int) -> int:
        """The block expected back last, each expected no sooner than predicted and no sooner than it
        has been idle (a failed prediction falls back to LRU's estimate): the larger of the farthest
        prediction and the least recently used block's now + idle time."""
        farthest, expect = self.farthest, self.expect
        while expect.get(farthest[0][1]) != -farthest[0][0]:
            heapq.heappop(farthest)
        oldest, last = next(iter(self.idle.items()))
        if 2 * self.now - last >= -farthest[0][0]:
            return oldest
        return farthest[0][1]


@register
class LearnedInsertion(EvictionPolicy):
    """LRU whose insertion position is learned: a block whose predicted reuse distance exceeds the
    cache's characteristic time (the running mean age, in accesses, of the blocks it evicts) would
    be evicted before that reuse anyway, so it enters (or is refreshed) at the cold end instead of
    the hot end, and cannot push out blocks that will be reused. The running mean's weight is
    1/capacity: it tracks the cache's own timescale."""

    name = "learned-insertion"
    needs_predictions = True

    def __init__(self, capacity: int, predicted: np.ndarray):
        super().__init__(capacity)
        self.predicted = predicted
        self.order: OrderedDict[int, int] = OrderedDict()  # key -> last use position; coldest first
        self.characteristic = float("inf")  # no eviction yet: everything looks reusable in time
        self.weight = 1.0 / max(1, capacity)
        self.now = 0

    def _place(self, key: int, now: int) -> None:
        self.now = now
        order = self.order
        order[key] = now
        order.move_to_end(key, last=self.predicted[now] - now <= self.characteristic)

    def on_access(self, key: int, now: int) -> None:
        self._place(key, now)

    def on_insert(self, key: int, now: int) -> None:
        self._place(key, now)

    def on_remove(self, key: int) -> None:
        last = self.order.pop(key)
        age = self.now - last
        if self.characteristic == float("inf"):
            self.characteristic = float(age)
        else:
            self.characteristic += self.weight * (age - self.characteristic)

    def victim(self, incoming: int) -> int:
        return next(iter(self.order))
