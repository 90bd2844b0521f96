"""A decode window's reserved blocks leaving the prefix cache as their steps start, an event only where it matters.

A window reserves the blocks its later steps fill (``BlockPool.reserve``); each comes into use as its step starts, and
the HBM cache's capacity (the pool's blocks not in use) falls by it then. Most such starts push nothing out of HBM: a
fleet's caches are rarely full (none of 157 k starts at 20 k ``bench_cluster`` requests did), and then all the start
does is lower a capacity nobody reads before the next allocation or free sets it again (each sets it to the pool's
unused blocks before the cache takes anything in: ``KVCacheManager.allocate``/``free``). So an event runs only at the
first start that would push a block out, judged from the blocks HBM holds now; an allocation or a free (which may
raise HBM's blocks or lower the pool's unused ones) judges again. A start judged too early just sets the capacity,
as every start did before, so the run is the same with an event at every start (tests/test_window_claims.py).

The events keep the sequence numbers reserved when the window started (``Engine.reserve``): one runs where the same
start's event ran when every start had one (or where a cut-short earlier window's start at the same instant ran,
which came first: ``_earlier``). An allocation or a free runs at priority 0 or less, before any start at its instant
(``CLAIM_PRIORITY``), so the starts still to come when it judges again are those from its instant on.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING

from sim.serving.block_pool import BlockPool
from sim.serving.engine import Engine

if TYPE_CHECKING:
    from sim.serving.kv_cache_manager import KVCacheManager

# A window's reserved blocks come into use after the other events of their step's first instant (a single step is
# planned by an event scheduled at that instant, after those already there): work arriving then still cuts the
# window before that step, and its blocks are never taken.
CLAIM_PRIORITY = 1


class WindowClaims:
    """The starts of the active decode window's steps that take reserved blocks, and the one event among them due."""

    def __init__(self, engine: Engine, pool: BlockPool, kv: KVCacheManager):
        self.engine = engine
        self.pool = pool
        self.kv = kv
        self._times: list[float] = []  # the window's steps taking blocks: their start times (distinct, in order)
        self._seq = 0  # the sequence number of the first one's event (``Engine.reserve``)
        self._next = 0  # the first start not yet passed
        self._armed = -1  # the start whose event is in the engine's heap (-1: none)
        self._version = 0  # bumped when an event is armed or the window changes: an older event does nothing
        # earlier windows' starts still to come (cut short: their blocks are never taken), by time: their events'
        # sequence numbers. When every start had an event, those ran on; at a time of a later window's start, the
        # earlier (lower-numbered) one took that start's blocks out, and one instance's order among others' at one
        # instant decides what a shared lower tier keeps. At any other time they set the capacity it had.
        self._earlier: dict[float, int] = {}

    def start(self) -> None:
        """A window with reserved blocks started (``BlockPool.reserve``): its steps' starts follow."""
        now, old = self.engine.now, self._times
        if self._earlier:
            self._earlier = {t: seq for t, seq in self._earlier.items() if t >= now}
        if self._next < len(old):
            for k in range(bisect_left(old, now, self._next), len(old)):
                self._earlier.setdefault(old[k], self._seq + k)  # (an older window's, lower, stays)
        self._times = times = self.pool.claim_times()
        self._seq = self.engine.reserve(len(times))
        self._next, self._armed = 0, -1
        self._version += 1
        self._arm()

    def recheck(self) -> None:
        """An allocation or a free changed the pool or the HBM cache: a start may now push blocks out earlier."""
        if self._next >= len(self._times):
            return
        self._next = bisect_left(self._times, self.engine.now, self._next)
        self._arm()

    def _arm(self) -> None:
        """Put in the heap the first start still to come that would push a block out of HBM now (none if one is in
        it already no later than that start)."""
        times, k = self._times, self._next
        if k >= len(times):
            return
        cache, unused_through = self.kv.cache, self.pool.unused_through
        if cache.fits(unused_through(times[-1])):
            return  # (the last start leaves the fewest unused blocks)
        while cache.fits(unused_through(times[k])):
            k += 1
        if 0 <= self._armed <= k:
            return
        self._armed = k
        self._version += 1
        seq = self._seq + k
        if self._earlier:
            seq = min(seq, self._earlier.get(times[k], seq))
        self.engine.at_seq(times[k], seq, self._claim, k, self._version, priority=CLAIM_PRIORITY)

    def _claim(self, k: int, version: int) -> None:
        """Start ``k``: its blocks come into use and leave the cache (unless the window was cut short before it)."""
        if version != self._version:
            return  # superseded: an earlier start was armed since, or another window started
        self._next, self._armed = k + 1, -1
        t = self._times[k]
        # one block at a time, as single steps' allocations take them (one a sequence crossing a block boundary, each
        # resizing the HBM cache): where one policy spans the tiers a resize by several blocks is not several of
        # one (the union's victims leave before the tiers settle: SIEVE over HBM and DRAM wrote a DRAM block fewer)
        for unused in range(self.pool.unused_before(t) - 1, self.pool.unused_through(t) - 1, -1):
            self.kv.sync_free(unused)
        self._arm()
