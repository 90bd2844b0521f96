"""The discrete-event engine: one heap of (time, priority, sequence, callback) for every mode.

Simulated time only (never the wall clock); ties break by priority, then by the order
events were scheduled (a per-engine counter, as in SimPy), so runs are deterministic.
"""

from __future__ import annotations

import gc
import heapq
from typing import Any, Callable

# Events allowed at one simulated instant before the run is declared stalled: far above any
# real burst (every request of a large trace arriving at once costs a few events each), far
# below "forever". A stall is a bug in kvsim, so it raises instead of hanging.
MAX_EVENTS_AT_ONE_TIME = 5_000_000

# The cyclic garbage collector's first-generation threshold while events run (CPython's default: 700 allocations,
# https://docs.python.org/3/library/gc.html#gc.set_threshold). A run allocates a few container objects per event
# (event tuples, jobs, block lists), most freed by reference counting within a request's lifetime; at 700 they
# survive into older generations, whose collections traverse every live object of a fleet (10,240 instances'
# state): 2.8 s of CPU in collections of a 20 s bench_cluster --requests 30000 run, 0.5 s at this threshold. Results
# do not depend on when garbage is collected (no finalizers; the reports are byte-identical); the
# threshold is restored when the run returns.
GC_THRESHOLD_WHILE_RUNNING = 100_000


class StallError(RuntimeError):
    """Simulated time stopped advancing: an internal error, never a user's bad input."""


class Engine:
    """A clock and an agenda of callbacks."""

    def __init__(self, max_events_at_one_time: int = MAX_EVENTS_AT_ONE_TIME) -> None:
        self.max_events_at_one_time = max_events_at_one_time
        self.now = 0.0
        self._heap: list[tuple[float, int, int, Callable[..., Any], tuple]] = []
        self._seq = 0
        self.events_run = 0

    @property
    def pending(self) -> int:
        """Events scheduled and not yet run."""
        return len(self._heap)

    def at(self, time: float, callback: Callable[..., Any], *args: Any, priority: int = 0) -> None:
        """Run ``callback(*args)`` at simulated ``time`` (not before now)."""
        if time < self.now:
            raise ValueError(f"cannot schedule in the past: {time} < now {self.now}")
        heapq.heappush(self._heap, (time, priority, self._seq, callback, args))
        self._seq += 1

    def after(self, delay: float, callback: Callable[..., Any], *args: Any, priority: int = 0) -> None:
        """Run ``callback(*args)`` ``delay`` seconds from now."""
        if delay < 0:
            raise ValueError(f"cannot schedule in the past: delay {delay} s")
        heapq.heappush(self._heap, (self.now + delay, priority, self._seq, callback, args))
        self._seq += 1

    def reserve(self, count: int) -> int:
        """Reserve ``count`` consecutive sequence numbers (the first is returned) for events pushed later with
        ``at_seq``: each runs where it would have run had it been scheduled now. A chain of events each pushing the
        next (a decode window's block claims) keeps one of them in the heap at a time, in the same order: the next
        one's key is above the one that pushes it, so no event runs before it is pushed that would have run after."""
        seq = self._seq
        self._seq += count
        return seq

    def at_seq(self, time: float, seq: int, callback: Callable[..., Any], *args: Any, priority: int = 0) -> None:
        """Run ``callback(*args)`` at simulated ``time`` (not before now) with a sequence number from ``reserve``."""
        if time < self.now:
            raise ValueError(f"cannot schedule in the past: {time} < now {self.now}")
        heapq.heappush(self._heap, (time, priority, seq, callback, args))

    def run(self, until: float | None = None) -> None:
        """Process events in order until the agenda is empty (or simulated time passes ``until``)."""
        heap = self._heap
        pop = heapq.heappop
        limit = self.max_events_at_one_time
        same_time = 0
        events = 0  # (counted here, added to ``events_run`` at the end: the loop runs for every event)
        thresholds = gc.get_threshold()
        if thresholds[0]:  # (0: automatic collection is off; left so)
            gc.set_threshold(max(thresholds[0], GC_THRESHOLD_WHILE_RUNNING), *thresholds[1:])
        try:
            while heap:
                if until is not None and heap[0][0] > until:
                    self.now = until
                    return
                time, _, _, callback, args = pop(heap)
                if time == self.now:
                    same_time += 1
                    if same_time > limit:
                        raise StallError(f"simulated time stopped at {time!r} s: {same_time:,} events without "
                                         f"progress (last: {getattr(callback, '__qualname__', callback)})")
                else:
                    same_time = 0
                self.now = time
                events += 1
                callback(*args)
        finally:
            self.events_run += events
            gc.set_threshold(*thresholds)
