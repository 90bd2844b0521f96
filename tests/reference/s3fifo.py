"""S3-FIFO: Yang et al., "FIFO queues are all you need for cache eviction", SOSP 2023.

A small FIFO S (10% of capacity) filters one-hit wonders; blocks reused while in S
move to the main FIFO M, which reinserts blocks with a non-zero 2-bit frequency
(decrementing it); a ghost FIFO G (keys only, 90% of capacity) remembers keys evicted
from S so that their return goes straight to M.

Variant: libCacheSim's current ``S3FIFO`` (its S3FIFO.c, 2024; the paper's version is
its ``S3FIFOv0``), so results compare exactly with the oracle: a block moves S→M after
2 hits (move-to-main threshold 2), M is evicted from only when it is over its share
or S is empty, and until the first eviction a miss that finds S full goes to M.
"""

from __future__ import annotations

from collections import OrderedDict

from sim.cache.policies.base import EvictionPolicy
from tests.reference.base import register

SMALL_RATIO = 0.10
GHOST_RATIO = 0.90
MOVE_TO_MAIN_THRESHOLD = 2
MAX_FREQ = 3


@register
class S3FIFO(EvictionPolicy):
    name = "s3fifo"

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self.small_capacity = max(1, int(capacity * SMALL_RATIO))
        self.main_capacity = capacity - self.small_capacity
        self.ghost_capacity = int(capacity * GHOST_RATIO)
        self.small: OrderedDict[int, None] = OrderedDict()  # oldest first
        self.main: OrderedDict[int, None] = OrderedDict()
        self.ghost: OrderedDict[int, None] = OrderedDict()
        self.freq: dict[int, int] = {}
        self.has_evicted = False
        self._victim: int | None = None
        self._ghost_hit: int | None = None  # incoming key already taken out of the ghost

    def on_access(self, key: int, now: int) -> None:
        f = self.freq[key]
        if f < MAX_FREQ:
            self.freq[key] = f + 1
        self._victim = None

    def on_insert(self, key: int, now: int) -> None:
        self.freq[key] = 0
        if key == self._ghost_hit or self.ghost.pop(key, 0) is None:
            self.main[key] = None
        elif not self.has_evicted and len(self.small) >= self.small_capacity:
            self.main[key] = None
        else:
            self.small[key] = None
        self._victim = self._ghost_hit = None

    def on_remove(self, key: int) -> None:
        evicted = key == self._victim
        del self.freq[key]
        if key in self.small:
            del self.small[key]
            if evicted and self.ghost_capacity > 0:
                self.ghost[key] = None
                if len(self.ghost) > self.ghost_capacity:
                    self.ghost.popitem(last=False)
        else:
            del self.main[key]
        self._victim = None

    def history(self, key: int) -> int:
        """Queue (0 small, 1 main) * 4 + frequency: what a taken block keeps."""
        return (key in self.main) * (MAX_FREQ + 1) + self.freq[key]

    def carry(self, key: int, history: int) -> None:
        """Taken from main: into main (newest); from small: where insertion put it. Its frequency."""
        if history // (MAX_FREQ + 1) == 1 and key in self.small:
            del self.small[key]
            self.main[key] = None
        self.freq[key] = history % (MAX_FREQ + 1)

    def _main_victim(self) -> int | None:
        """From main's oldest: frequency 0 is the victim, else one lower and to the newest end; a pinned block of
        frequency 0 is passed over in place. None: none left."""
        main, freq = self.main, self.freq
        queue = list(main)
        for key in queue:  # (grows as blocks move to the newest end: each is seen again)
            if freq[key] > 0:
                freq[key] -= 1
                main.move_to_end(key)
                queue.append(key)
            elif key not in self.pinned:
                return key
        return None

    def _small_victim(self) -> int | None:
        """From small's oldest: used enough, to main; else the victim; a pinned one is passed over. None: none."""
        small, main, freq = self.small, self.main, self.freq
        for head in list(small):
            if freq[head] >= MOVE_TO_MAIN_THRESHOLD:
                del small[head]
                main[head] = None
                freq[head] = 0
            elif head not in self.pinned:
                return head
        return None

    def victim(self, incoming: int) -> int:
        if self._victim is None:
            # A returning key leaves the ghost before eviction can push it out (libCacheSim's find).
            if self.ghost.pop(incoming, 0) is None:
                self._ghost_hit = incoming
            self.has_evicted = True
            if len(self.main) > self.main_capacity or not self.small:
                key = self._main_victim()
                if key is None:  # every block of main pinned: small, whose moves may give main unpinned blocks
                    key = self._small_victim()
                    key = self._main_victim() if key is None else key
            else:
                key = self._small_victim()
                key = self._main_victim() if key is None else key
            if key is None:  # every block pinned
                return -1
            self._victim = key
        return self._victim
