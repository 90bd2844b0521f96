"""Learned eviction: evict the block whose *predicted* next use is farthest (Belady with a model).

Predictions come from ``learned.model`` (LightGBM on online features), computed for the
whole stream in one batch before the replay; each is a function of the past only, so
this equals predicting at access time, without a per-access call into LightGBM. A block
whose predicted reuse time has passed without a reuse is *overdue*: the model's bet
failed, and its next use is then estimated, as LRU does, as far ahead as it has been
idle; the victim is the block expected back last under these estimates. In the spirit of LRB (Song et al.,
"Learning Relaxed Belady for Content Distribution Network Caching", NSDI 2020), which
also approximates Belady's choice with a learned next-use estimate.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict

import numpy as np

from sim.policies.base import EvictionPolicy, register


@register
class Learned(EvictionPolicy):
    name = "learned"
    needs_predictions = True

    def __init__(self, capacity: int, predicted: np.ndarray):
        super().__init__(capacity)
        self.predicted = predicted
        self.expect: dict[int, float] = {}  # resident key -> predicted next-use position
        self.last: dict[int, int] = {}  # resident key -> last use position
        self.farthest: list[tuple[float, int]] = []  # max-heap (negated) of (expected, key), lazy
        self.soonest: list[tuple[float, int]] = []  # min-heap of (expected, key): finds overdue ones, lazy
        self.overdue: list[tuple[int, int]] = []  # min-heap of (last use, key) of overdue blocks, lazy
        self.now = 0

    def _set(self, key: int, now: int) -> None:
        self.now = now
        expected = float(self.predicted[now])
        self.expect[key] = expected
        self.last[key] = now
        heapq.heappush(self.farthest, (-expected, key))
        heapq.heappush(self.soonest, (expected, key))
        if len(self.farthest) > 4 * len(self.expect) + 1024:  # drop stale entries; amortised O(log n)
            self.farthest = [(-e, k) for k, e in self.expect.items()]
            self.soonest = [(e, k) for k, e in self.expect.items()]
            self.overdue = [(self.last[k], k) for k, e in self.expect.items() if e < now]
            for heap in (self.farthest, self.soonest, self.overdue):
                heapq.heapify(heap)

    def on_access(self, key: int, now: int) -> None:
        self._set(key, now)

    def on_insert(self, key: int, now: int) -> None:
        self._set(key, now)

    def on_remove(self, key: int) -> None:
        del self.expect[key]
        del self.last[key]

    def victim(self, incoming: int) -> int:
        """The block expected back last: the farthest prediction, or an overdue block (its prediction
        failed, so, as LRU assumes, its next use is estimated as far ahead as it has been idle)."""
        now, expect, last = self.now, self.expect, self.last
        soonest, overdue, farthest = self.soonest, self.overdue, self.farthest
        while soonest and soonest[0][0] < now:
            expected, key = heapq.heappop(soonest)
            if expect.get(key) == expected:
                heapq.heappush(overdue, (last[key], key))
        while overdue and last.get(overdue[0][1]) != overdue[0][0]:
            heapq.heappop(overdue)
        while farthest and (expect.get(farthest[0][1]) != -farthest[0][0] or -farthest[0][0] < now):
            heapq.heappop(farthest)  # stale, or overdue (kept in the overdue heap)
        if overdue and (not farthest or now + (now - overdue[0][0]) >= -farthest[0][0]):
            return overdue[0][1]
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
