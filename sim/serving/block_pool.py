"""An instance's physical KV blocks, as vLLM v1's ``BlockPool``: used and free counts, and
reference counts of the prompt blocks running requests hold.

A prompt block is identified by its block id (a prefix-chained hash, interned to a dense
int), so requests sharing a prefix hold its blocks once: the first holder allocates the
physical block, the last one to let go frees it. Blocks past a prompt (the KV of
generated tokens) are private to their request and only counted. What a freed block
still holds (its cached prefix) is the KV-cache manager's concern, not the pool's.

When no block id can occur in two requests (a trace whose blocks never repeat), sharing is
impossible and the pool only counts (``shared=False``): same result, no per-block work.

Occupancy over time: every change of ``used`` adds the blocks in use × the simulated time
since the previous change (block-seconds), and the peak is kept, so the time-weighted mean
occupancy costs two multiplications per change.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Protocol


class Clock(Protocol):
    now: float


class BlockPool:
    """``total`` physical blocks; ``used`` of them hold running requests' KV, ``reserved`` more are promised to a
    decode window's later steps: taken from the free ones at the window's start, each comes into use (and counts
    in ``used``, the occupancy and the peak) at its own step's start time, as a single step would take it."""

    def __init__(self, total: int, clock: Clock, shared: bool = True):
        self.total = total
        self._used = 0
        self.reserved = 0
        self.shared = shared
        self.refs: dict[int, int] = {}  # prompt block id -> requests holding it (shared pools only)
        self.clock = clock
        self.block_seconds = 0.0  # ∫ used dt up to ``since``
        self.since = 0.0
        self.peak = 0
        self._claim_times: list[float] = []  # when reserved blocks come into use, ascending ...
        self._claim_counts: list[int] = []  # ... and how many at each
        self._next_claim = 0
        self._next_claim_at = math.inf

    @property
    def used(self) -> int:
        """Blocks in use now (reserved ones whose step started before now included)."""
        if self._next_claim_at < self.clock.now:
            self.claim_due(self.clock.now)
        return self._used

    def claim_due(self, now: float, inclusive: bool = False) -> None:
        """Reserved blocks whose step starts before ``now`` (or at it, ``inclusive``) come into use, each at its
        own time (the occupancy integral counts them from then)."""
        first, times = self._next_claim, self._claim_times
        last = (bisect_right if inclusive else bisect_left)(times, now, first)
        if last == first:
            return
        counts = self._claim_counts
        at = times[last - 1]
        blocks = 0
        late = 0.0  # Σ blocks × (at - their time): what the integral to ``at`` must not count
        for i in range(first, last):
            blocks += counts[i]
            late += counts[i] * (at - times[i])
        self.block_seconds += self._used * (at - self.since) + late
        self.since = at
        self._used += blocks
        self.reserved -= blocks
        if self._used > self.peak:
            self.peak = self._used
        self._next_claim = last
        self._next_claim_at = times[last] if last < len(times) else math.inf

    def _change(self, delta: int) -> None:
        if not delta:
            return
        now = self.clock.now
        if self._next_claim_at < now:
            self.claim_due(now)
        self.block_seconds += self._used * (now - self.since)
        self.since = now
        self._used += delta
        if self._used > self.peak:
            self.peak = self._used

    def block_seconds_until(self, end: float) -> float:
        """∫ used dt from time 0 to ``end`` (at or after the last change)."""
        self.claim_due(end, inclusive=True)
        return self.block_seconds + self._used * (end - self.since)

    @property
    def free(self) -> int:
        """Blocks neither in use nor reserved."""
        return self.total - self.used - self.reserved

    @property
    def unused(self) -> int:
        """Blocks not in use (free or reserved): what the prefix cache may hold, as with single steps."""
        return self.total - self.used

    def __contains__(self, key: int) -> bool:
        """Whether prompt block ``key`` is held by a running request."""
        return key in self.refs

    def count_fresh(self, keys: Sequence[int]) -> int:
        """How many of ``keys`` no running request holds (each would take a physical block)."""
        if not self.shared:
            return len(keys)
        refs = self.refs
        return sum(1 for key in keys if key not in refs)

    def hold(self, keys: Sequence[int], private: int = 0) -> Sequence[int]:
        """One more holder for each prompt block of ``keys``, and ``private`` more private blocks (generated
        tokens' KV); returns the prompt blocks newly allocated (in order)."""
        if not self.shared:
            self._change(len(keys) + private)
            return keys
        refs = self.refs
        fresh = []
        for key in keys:
            if key in refs:
                refs[key] += 1
            else:
                refs[key] = 1
                fresh.append(key)
        self._change(len(fresh) + private)
        return fresh

    def let_go(self, keys: Sequence[int], private: int = 0) -> Sequence[int]:
        """One holder fewer for each block of ``keys`` (in the order given), and ``private`` private blocks
        returned; returns the prompt blocks freed."""
        if not self.shared:
            self._change(-len(keys) - private)
            return keys
        refs = self.refs
        freed = []
        for key in keys:
            count = refs[key] - 1
            if count:
                refs[key] = count
            else:
                del refs[key]
                freed.append(key)
        self._change(-len(freed) - private)
        return freed

    def allocate(self, blocks: int) -> None:
        """Take ``blocks`` private blocks (generated tokens' KV)."""
        self._change(blocks)

    def release(self, blocks: int) -> None:
        """Return ``blocks`` private blocks."""
        self._change(-blocks)

    def reserve(self, times: list[float], counts: list[int]) -> None:
        """Promise private blocks to a decode window's later steps: ``counts[i]`` of them come into use at
        ``times[i]`` (ascending, after now; an instance's previous window's have all come due by then)."""
        if self._next_claim_at <= self.clock.now:
            self.claim_due(self.clock.now, inclusive=True)
        self._claim_times, self._claim_counts, self._next_claim = times, counts, 0
        self._next_claim_at = times[0] if times else math.inf
        self.reserved += sum(counts)

    def cancel_reserved(self, since: float) -> None:
        """The reserved blocks due at or after ``since`` are not needed: their steps were cut off."""
        cut = max(self._next_claim, bisect_left(self._claim_times, since))
        self.reserved -= sum(self._claim_counts[cut:])
        del self._claim_times[cut:], self._claim_counts[cut:]
        if cut <= self._next_claim:
            self._next_claim_at = math.inf
