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

from collections.abc import Sequence
from typing import Protocol


class Clock(Protocol):
    now: float


class BlockPool:
    """``total`` physical blocks; ``used`` of them hold running requests' KV, ``reserved`` more are promised to a
    decode window's later steps (taken from the free ones, not yet in use: ``claim`` when their step starts)."""

    def __init__(self, total: int, clock: Clock, shared: bool = True):
        self.total = total
        self.used = 0
        self.reserved = 0
        self.shared = shared
        self.refs: dict[int, int] = {}  # prompt block id -> requests holding it (shared pools only)
        self.clock = clock
        self.block_seconds = 0.0  # ∫ used dt up to ``since``
        self.since = 0.0
        self.peak = 0

    def _change(self, delta: int) -> None:
        if not delta:
            return
        now = self.clock.now
        self.block_seconds += self.used * (now - self.since)
        self.since = now
        self.used += delta
        if self.used > self.peak:
            self.peak = self.used

    def block_seconds_until(self, end: float) -> float:
        """∫ used dt from time 0 to ``end`` (at or after the last change)."""
        return self.block_seconds + self.used * (end - self.since)

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

    def reserve(self, blocks: int) -> None:
        """Promise ``blocks`` private blocks to later steps."""
        self.reserved += blocks

    def claim(self, blocks: int) -> None:
        """``blocks`` reserved blocks come into use (their step starts)."""
        self.reserved -= blocks
        self._change(blocks)

    def unreserve(self, blocks: int) -> None:
        """``blocks`` reserved blocks are not needed after all (their steps were cut off)."""
        self.reserved -= blocks
