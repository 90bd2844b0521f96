"""ARC: Megiddo & Modha, "ARC: A Self-Tuning, Low Overhead Replacement Cache", FAST 2003.

T1/T2 hold resident blocks seen once / more than once; B1/B2 are ghost lists of
recently evicted keys whose hits adapt the target size ``p`` of T1. Follows the
paper's Fig. 4; the adaptation for an incoming key runs once, before its victim is
chosen (REPLACE depends on it) or at its insertion when no eviction is needed.
"""

from __future__ import annotations

from collections import OrderedDict

from sim.cache.policies.base import EvictionPolicy
from tests.reference.base import register


@register
class ARC(EvictionPolicy):
    name = "arc"

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self.t1: OrderedDict[int, None] = OrderedDict()  # LRU first
        self.t2: OrderedDict[int, None] = OrderedDict()
        self.b1: OrderedDict[int, None] = OrderedDict()
        self.b2: OrderedDict[int, None] = OrderedDict()
        self.p = 0.0
        self._prepared: int | None = None
        self._victim: int | None = None
        self._victim_to_ghost = False

    def _prepare(self, key: int) -> None:
        """Adapt p on a ghost hit, or trim the ghost directory on a complete miss (paper cases II-IV)."""
        if self._prepared == key:
            return
        self._prepared = key
        c = self.capacity
        if key in self.b1:
            self.p = min(self.p + max(len(self.b2) / len(self.b1), 1.0), c)
        elif key in self.b2:
            self.p = max(self.p - max(len(self.b1) / len(self.b2), 1.0), 0.0)
        else:
            l1 = len(self.t1) + len(self.b1)
            if l1 >= c:
                if len(self.t1) < c and self.b1:
                    self.b1.popitem(last=False)
            elif l1 + len(self.t2) + len(self.b2) >= 2 * c and self.b2:
                self.b2.popitem(last=False)

    def on_access(self, key: int, now: int) -> None:
        if key in self.t1:
            del self.t1[key]
            self.t2[key] = None
        else:
            self.t2.move_to_end(key)

    def on_insert(self, key: int, now: int) -> None:
        self._prepare(key)
        if key in self.b1:
            del self.b1[key]
            self.t2[key] = None
        elif key in self.b2:
            del self.b2[key]
            self.t2[key] = None
        else:
            self.t1[key] = None
        self._prepared = self._victim = None

    def history(self, key: int) -> int:
        """0: in T1 (seen once), 1: in T2."""
        return int(key in self.t2)

    def carry(self, key: int, history: int) -> None:
        """Seen more than once before it was taken: most recent in T2."""
        if history == 1:
            self.t1.pop(key, None)
            self.t2.pop(key, None)
            self.t2[key] = None

    def on_remove(self, key: int) -> None:
        ghost = self._victim_to_ghost and key == self._victim
        if key in self.t1:
            del self.t1[key]
            if ghost:
                self.b1[key] = None
        else:
            del self.t2[key]
            if ghost:
                self.b2[key] = None
        self._victim = None

    def victim(self, incoming: int) -> int:
        self._prepare(incoming)
        in_ghost = incoming in self.b1 or incoming in self.b2
        t1 = len(self.t1)
        def first(lst):  # its least recent block not pinned (-1: none)
            return next((key for key in lst if key not in self.pinned), -1)

        if not in_ghost and t1 + len(self.b1) >= self.capacity and t1 >= self.capacity:
            key, to_ghost = first(self.t1), False  # case IV.A: T1 is the whole cache; no ghost
        elif t1 and (t1 > self.p or (incoming in self.b2 and t1 == self.p)) or not self.t2:
            key, to_ghost = first(self.t1), True  # REPLACE: LRU of T1 -> B1 (all pinned: T2's)
            key = key if key >= 0 else first(self.t2)
        else:
            key, to_ghost = first(self.t2), True  # REPLACE: LRU of T2 -> B2 (all pinned: T1's)
            key = key if key >= 0 else first(self.t1)
        self._victim, self._victim_to_ghost = key, to_ghost
        return key
