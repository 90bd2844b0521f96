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

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from operator import countOf
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from sim.serving.decode_windows import DecodeWindow


class Clock(Protocol):
    now: float


class InUseWatcher(Protocol):
    """Told of the prompt blocks a pool starts holding and frees (``sim.cluster.in_use.InUse``)."""

    def taken(self, keys: Sequence[int], tier: int) -> None: ...

    def freed(self, keys: Sequence[int], tier: int) -> None: ...


class PoolTotals:
    """``used`` summed over the pools that count into it (``BlockPool.count_into``), kept as their counts change: a
    fleet's timeline sample reads one sum, not 10,240 pools (summing their counts cost ~1 ms a sample, most of a
    burst's run on a 160-rack fleet), and asks only the pools whose decode window is open for the blocks its
    started steps took."""

    __slots__ = ("counted", "windows")

    def __init__(self) -> None:
        self.counted = 0  # Σ of the pools' counts, their open windows' reserved blocks aside
        self.windows: set[BlockPool] = set()  # the pools with a window open (an integer sum: any order)

    def used(self, now: float) -> int:
        """Σ ``used`` of the pools at ``now``: each open window's ``_claimed(now)``, inlined (a fleet's sample asks
        ~1,200 of them: two Python calls fewer each)."""
        total = self.counted
        for pool in self.windows:
            steps, taken = pool._claims_valid
            if steps != pool._window.steps:  # (``_taken``: an interruption cut the window's steps)
                taken = pool._taken()
            total += bisect_left(pool._claim_times, now, 0, taken)
        return total


class BlockPool:
    """``total`` physical blocks; ``used`` of them hold running requests' KV. A decode window reserves, at its
    start, the private blocks its later steps need (``reserve``); each comes into use at its own step's start
    time, as a single step would take it, and counts in ``used``, the occupancy integral and the peak from then
    (evaluated when read, so a window costs no event per step)."""

    def __init__(self, total: int, clock: Clock, shared: bool = True):
        self.total = total
        self._used = 0  # in use, the active window's reserved blocks aside
        self.shared = shared
        self.refs: dict[int, int] = {}  # prompt block id -> requests holding it (shared pools only)
        self.changes = 0  # bumped whenever a block enters or leaves ``refs`` (``count_fresh``'s answers may change)
        self.clock = clock
        self.block_seconds = 0.0  # ∫ used dt up to ``since`` (the active window's reserved blocks aside)
        self.since = 0.0
        self.peak = 0
        self._window: DecodeWindow | None = None  # the window holding reserved blocks
        self._claim_steps: list[int] = []  # the window's steps taking a reserved block, in order, one per block
        self._claim_times: list[float] = []  # their start times
        self._claims_valid = (0, 0)  # (the window's steps, the blocks they take): ``_taken``
        self._distinct_times: list[float] | None = None  # ``claim_times``
        self._watcher: InUseWatcher | None = None  # told of prompt blocks taken and freed (``watch``)
        self._watch_tier = -1
        self._totals = PoolTotals()  # the sum it counts into (its own until ``count_into``)

    def count_into(self, totals: PoolTotals) -> None:
        """Count this pool's blocks in use into ``totals`` from now on (once: a run's timeline)."""
        totals.counted += self._used
        if self._window is not None:
            totals.windows.add(self)
        self._totals = totals

    def watch(self, watcher: InUseWatcher, tier: int) -> None:
        """Tell ``watcher`` of every prompt block this pool starts holding (``taken``) and frees (``freed``), as
        held by HBM tier ``tier`` (the cluster's prefix index: ``sim.cluster.in_use``). A pool that only counts
        (``shared`` False: no block id occurs in two requests) has nothing to tell."""
        if self.shared:
            self._watcher, self._watch_tier = watcher, tier

    # ------------------------------------------------------------ a window's reserved blocks

    def reserve(self, window: DecodeWindow, growth: list[tuple[int, int]], block_size: int) -> None:
        """Reserve blocks for ``window``'s later steps: for each ``(first, count)`` of ``growth``, one block from
        step ``first`` (2 or later) on and every ``block_size`` steps after, ``count`` of them. Steps an
        interruption cuts off (``window.steps``) take none.

        The blocks' steps are listed once, in order, with their start times (start + ends[step - 2], as the window's
        events are scheduled): the blocks taken by ``t`` are those of the listed steps that started before it (step
        ends increase), one bisection, however often it is asked (a fleet's timeline sample asks thousands of pools)."""
        self._window = window
        self._totals.windows.add(self)
        start, ends = window.start, window.ends
        if len(growth) == 1:  # (the usual case: one job grows, often by one block)
            first, count = growth[0]
            if count == 1:
                steps, times = [first], [start + ends[first - 2]]
            else:
                steps = list(range(first, first + count * block_size, block_size))
                times = [start + ends[step - 2] for step in steps]
            self._distinct_times = times  # (its steps are distinct)
        else:
            steps = sorted([step for first, count in growth
                            for step in range(first, first + count * block_size, block_size)])
            times = [start + ends[step - 2] for step in steps]
            self._distinct_times = None
        self._claim_steps, self._claim_times = steps, times
        self._claims_valid = (window.steps, len(steps) if steps[-1] <= window.steps
                              else bisect_right(steps, window.steps))

    @property
    def claim_steps(self) -> list[int]:
        """The active window's steps (from 1) whose start takes a reserved block, in order, once per block."""
        return self._claim_steps if self._window is not None else []

    def claim_times(self) -> list[float]:
        """The start times of the active window's steps that take a reserved block, once per step, in order."""
        if self._window is None:
            return []
        if self._distinct_times is None:
            start, ends = self._window.start, self._window.ends
            self._distinct_times = [start + ends[step - 2] for step in dict.fromkeys(self._claim_steps)]
        return self._distinct_times

    def _taken(self) -> int:
        """Reserved blocks the window's ``steps`` take (its steps an interruption cut off take none)."""
        steps, taken = self._claims_valid
        if steps != self._window.steps:
            steps = self._window.steps
            taken = bisect_right(self._claim_steps, steps)
            self._claims_valid = (steps, taken)
        return taken

    def _claimed(self, t: float, inclusive: bool = False) -> int:
        """Reserved blocks taken by the window's steps started before ``t`` (or at it, ``inclusive``)."""
        if self._window is None:
            return 0
        return (bisect_right if inclusive else bisect_left)(self._claim_times, t, 0, self._taken())

    @property
    def reserved(self) -> int:
        """Blocks reserved for steps that have not started (none for steps an interruption cut off)."""
        if self._window is None:
            return 0
        return self._taken() - self._claimed(self.clock.now)

    @property
    def used(self) -> int:
        """Blocks in use now."""
        return self._used + self._claimed(self.clock.now) if self._window is not None else self._used

    def unused_through(self, t: float) -> int:
        """Blocks not in use once the steps starting at ``t`` have taken theirs."""
        return self.total - self._used - self._claimed(t, inclusive=True)

    def unused_before(self, t: float) -> int:
        """Blocks not in use just before the steps starting at ``t`` take theirs."""
        return self.total - self._used - self._claimed(t)

    def finish_window(self) -> None:
        """The window ended: the blocks its steps took are in use from their steps' start times on (the occupancy
        integral counts them from then); the rest were never taken."""
        w = self._window
        if w is None:
            return
        now = self.clock.now
        blocks = self._taken()  # (none of the steps an interruption cut off)
        ends = w.ends  # each block in use from its step's start, start + ends[step - 2] (``claim_times``)
        offsets = sum([ends[step - 2] for step in self._claim_steps[:blocks]])
        self._window = None
        self._claim_steps, self._claim_times = [], []
        self.block_seconds += self._used * (now - self.since) + blocks * (now - w.start) - offsets
        self.since = now
        self._used += blocks
        totals = self._totals
        totals.counted += blocks
        totals.windows.discard(self)
        if self._used > self.peak:
            self.peak = self._used

    # ------------------------------------------------------------ changes

    def _change(self, delta: int) -> None:
        if not delta:
            return
        now = self.clock.now
        if self._window is not None and delta < 0:
            # the window's blocks only grow until it ends (``finish_window`` takes the peak then): a peak before a
            # fall is taken now
            self.peak = max(self.peak, self.used)
        self.block_seconds += self._used * (now - self.since)
        self.since = now
        self._used += delta
        self._totals.counted += delta
        if self._used > self.peak:
            self.peak = self._used

    def block_seconds_until(self, end: float) -> float:
        """∫ used dt from time 0 to ``end`` (at or after the last change)."""
        return self.block_seconds + self._used * (end - self.since)

    @property
    def free(self) -> int:
        """Blocks neither in use nor reserved."""
        if self._window is None:
            return self.total - self._used
        return self.total - self._used - self._taken()

    @property
    def unused(self) -> int:
        """Blocks not in use (free or reserved): what the prefix cache may hold, as with single steps."""
        return self.total - self.used

    def __contains__(self, key: int) -> bool:
        """Whether prompt block ``key`` is held by a running request."""
        return key in self.refs

    def count_fresh(self, keys: Sequence[int]) -> int:
        """How many of ``keys`` no running request holds (each would take a physical block)."""
        if not self.shared or not self.refs:  # (no block held: every key is fresh; a lightly loaded fleet's every
            return len(keys)  # admission, ~10 us for 140 blocks asked one by one)
        if isinstance(keys, np.ndarray):
            keys = keys.tolist()
        return len(keys) - countOf(map(self.refs.__contains__, keys), True)  # (a C loop: prompts of 1,000s of blocks)

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
        if fresh:
            self.changes += 1
            if self._watcher is not None:
                self._watcher.taken(fresh, self._watch_tier)
        self._change(len(fresh) + private)
        return fresh

    def let_go(self, keys: Sequence[int], private: int = 0) -> Sequence[int]:
        """One holder fewer for each block of ``keys`` (in the order given; the caller holds each of them, once per
        occurrence), and ``private`` private blocks returned; returns the prompt blocks freed."""
        if not self.shared:
            self._change(-len(keys) - private)
            return keys
        refs = self.refs
        if len(refs) == len(keys) and countOf(refs.values(), 1) == len(refs):
            # the sole holder of every block held (a lightly loaded fleet's every request): each block of ``keys`` is
            # held by the caller, so ``keys`` (n holds) are the n blocks of ``refs`` (n holds in all), each freed
            # in order, as the loop below frees them (~1.6 us for 140 blocks, not ~7 us)
            freed = list(keys)
            refs.clear()
        else:
            freed = []
            for key in keys:
                count = refs[key] - 1
                if count:
                    refs[key] = count
                else:
                    del refs[key]
                    freed.append(key)
        if not refs:  # a dict never shrinks as keys leave: an idle pool kept the table of its busiest moment
            refs.clear()  # (10,240 instances' empty tables: 260 MiB at 100 k requests); clear() frees it
        if freed:
            self.changes += 1
            if self._watcher is not None:
                self._watcher.freed(freed, self._watch_tier)
        self._change(-len(freed) - private)
        return freed

    def allocate(self, blocks: int) -> None:
        """Take ``blocks`` private blocks (generated tokens' KV)."""
        self._change(blocks)

    def release(self, blocks: int) -> None:
        """Return ``blocks`` private blocks."""
        self._change(-blocks)

