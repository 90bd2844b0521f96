"""The arrays every tier's eviction state lives in, and the compiled primitives policies build on.

All tiers of one run (each instance's HBM and the shared DRAM/SSD/EIC) live in one
``TierArena``, so a compiled operation on a cache reaches any of its tiers by index without
Python in between. Per tier:

- a pool of *slots*, one per block the policy tracks (resident blocks, plus ghost entries for
  ARC and S3-FIFO, bucket nodes for LFU): a 64-byte row of ``slots`` holding the block id,
  list links, list id, a counter, a priority and a heap position (one cache line per slot);
- an open-addressing hash directory (linear probing, backward-shift deletion) from block id
  to slot, sized to at least twice the slot count;
- up to four intrusive doubly linked lists over its slots (heads, tails, sizes in ``meta``)
  and a binary heap of slots (Belady), kept in the slot rows' ``HEAP`` column;
- a row of ``meta`` (capacity, counts, list ends, the policy's own scalars) and of ``stats``.

Sizing: a tier needs ``policy.slots(c)`` slots (c, more for policies with ghost entries or
bucket nodes) where c is its capacity, or the number of distinct blocks the run can touch if
that is smaller (``max_keys``: the trace's block-id space, ``sim.cache.access.block_id_space``).
So a 100 TB SSD tier over a trace of 5 M distinct blocks allocates about 5 M slots, not
billions. Memory: about 80 bytes per slot. Arrays are allocated on first use, after the tiers
have been added (a tier added later reallocates them).

List convention: lists 0 and 1 hold resident blocks, 2 and 3 ghost entries (``WHERE``); a
list's head is its oldest entry. Policies without lists mark resident slots ``WHERE = 0``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

# ---- meta columns (per tier)
KIND, CAP, PCAP, SLOT0, NSLOTS, FREE, TABLE0, SHIFT, RESIDENT, HEAPN, USERS = range(11)
HEAD, TAIL, SIZE = 11, 15, 19  # + list id (0..3)
X0 = 23  # first of the policy's own scalars
META_FIELDS = X0 + 8

# ---- slot columns
KEY, PREV, NEXT, WHERE, COUNT, PRIO, HPOS, HEAP = range(8)  # NEXT also chains the free pool
SLOT_FIELDS = 8  # a row is 64 bytes; HEAP of row SLOT0 + i is the tier's heap entry i (not row i's own)

# ---- stats columns (the order of TierStats' fields)
HITS, INSERTIONS, PROMOTIONS, DEMOTIONS, EVICTIONS, PREFETCHES, BYTES_READ, BYTES_WRITTEN = range(8)
STAT_FIELDS = 8

NONE = -(1 << 62)  # "no key" in policy scalars (block ids are >= 0; -1 is a legal "incoming" key)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def kernel(fn):
    """A small compiled cache function, inlined into its callers. No reference counting
    (``_nrt=False``): kernels never allocate, and counting references to the arena's arrays on
    every call costs more than the work."""
    return njit(_nrt=False, inline="always")(fn)


def step(fn):
    """A compiled multi-tier operation: a ``kernel`` not inlined (it is called from several places)."""
    return njit(_nrt=False)(fn)


def entry(fn):
    """A compiled function called from Python: a ``kernel`` whose machine code is cached on disk."""
    return njit(cache=True, _nrt=False)(fn)


class Arena(NamedTuple):
    """The arrays of a ``TierArena``, passed to compiled code as one argument.

    This class serves arenas whose tiers run different policies (the policy is looked up per
    tier at run time). An arena whose kernel tiers all run one policy uses that policy's own
    class of the same fields (``arena_type``), so compiled code is specialised to the policy
    with no per-access dispatch.
    """

    meta: np.ndarray  # int64 [tiers, META_FIELDS]
    real: np.ndarray  # float64 [tiers]: a policy's real-valued scalar (ARC's target p)
    stats: np.ndarray  # int64 [tiers, STAT_FIELDS]
    slots: np.ndarray  # int64 [slots, SLOT_FIELDS]; KEY -1 and WHERE -1 when free
    table: np.ndarray  # int32 [directory]: slot of a block id, -1 when empty
    future: np.ndarray  # int64 [stream]: next use of the block accessed at each position (Belady)


def arena_type(name: str, module: str) -> type:
    """A class with ``Arena``'s fields, for one policy's arenas (defined as ``module.name``)."""
    cls = NamedTuple(name, list(Arena.__annotations__.items()))
    cls.__module__ = module
    return cls


class TierArena:
    """Owns the arrays of a set of tiers; tiers are added first, arrays allocated on first use."""

    def __init__(self, future: np.ndarray | None = None, max_keys: int | None = None):
        self.future = np.ascontiguousarray(future, dtype=np.int64) if future is not None else np.zeros(0, np.int64)
        self.max_keys = max_keys
        self._tiers: list[tuple[int, int, int, int, int]] = []  # (kind, capacity, policy capacity, slots, users)
        self._state: Arena | None = None

    def add_tier(self, kind: int, capacity: int, slots: int) -> int:
        """Register a tier (policy ``kind``, ``capacity`` blocks, ``slots`` it may need); its index."""
        self._tiers.append((kind, capacity, capacity, max(1, slots), 0))
        if self._state is not None:  # added after allocation: copy the old tiers' state over
            old, self._state = self._state, _allocate(self._tiers, self.future)
            n, slots_used, table_used = len(old.meta), len(old.slots), len(old.table)
            self._state.meta[:n] = old.meta
            self._state.real[:n] = old.real
            self._state.stats[:n] = old.stats
            self._state.slots[:slots_used] = old.slots
            self._state.table[:table_used] = old.table
        return len(self._tiers) - 1

    @property
    def allocated(self) -> bool:
        return self._state is not None

    @property
    def state(self) -> Arena:
        if self._state is None:
            self._state = _allocate(self._tiers, self.future)
        return self._state

    def add_user(self, tier: int) -> None:
        """One more cache uses ``tier`` (a tier several caches share may receive a block it holds)."""
        kind, capacity, pcap, slots, users = self._tiers[tier]
        self._tiers[tier] = (kind, capacity, pcap, slots, users + 1)
        if self._state is not None:
            self._state.meta[tier, USERS] = users + 1

    def built_capacity(self, tier: int) -> int:
        """The capacity ``tier`` was added with (its policy's capacity; slots are sized to it)."""
        return self._tiers[tier][2]

    def kind(self, tier: int) -> int:
        return self._tiers[tier][0]

    def capacity(self, tier: int) -> int:
        return int(self._state.meta[tier, CAP]) if self._state is not None else self._tiers[tier][1]

    def set_capacity(self, tier: int, capacity: int) -> None:
        """Before allocation only (afterwards compiled code changes ``meta``); the policy keeps
        the capacity it was registered with (``PCAP``)."""
        kind, _, pcap, slots, users = self._tiers[tier]
        self._tiers[tier] = (kind, capacity, pcap, slots, users)

    def stats_row(self, tier: int) -> np.ndarray:
        return self.state.stats[tier]

    def resident_keys(self, tier: int) -> np.ndarray:
        """Sorted block ids resident in ``tier`` (tests, inspection)."""
        if self._state is None:
            return np.zeros(0, np.int64)
        a = self._state
        lo = int(a.meta[tier, SLOT0])
        rows = a.slots[lo:lo + int(a.meta[tier, NSLOTS])]
        return np.sort(rows[(rows[:, WHERE] == 0) | (rows[:, WHERE] == 1), KEY])


def _allocate(tiers: list[tuple[int, int, int, int, int]], future: np.ndarray) -> Arena:
    from sim.cache.policies.dispatch import KERNELS  # noqa: PLC0415  (the policies import this module)

    n = len(tiers)
    meta = np.zeros((n, META_FIELDS), dtype=np.int64)
    total, table_size = 0, 0
    for t, (kind, capacity, pcap, slots, users) in enumerate(tiers):
        bits = max(4, int(2 * slots - 1).bit_length())  # a directory of 2^bits >= 2 x slots entries
        meta[t, KIND], meta[t, CAP], meta[t, PCAP], meta[t, USERS] = kind, capacity, pcap, users
        meta[t, SLOT0], meta[t, NSLOTS], meta[t, FREE] = total, slots, total
        meta[t, TABLE0], meta[t, SHIFT] = table_size, 64 - bits
        meta[t, HEAD:HEAD + 4] = meta[t, TAIL:TAIL + 4] = -1
        total += slots
        table_size += 1 << bits
    slots = np.zeros((total, SLOT_FIELDS), dtype=np.int64)
    slots[:, KEY] = slots[:, PREV] = slots[:, WHERE] = slots[:, HPOS] = slots[:, HEAP] = -1
    slots[:, NEXT] = np.arange(1, total + 1)
    for t in range(n):  # each tier's free pool ends within its region
        slots[meta[t, SLOT0] + meta[t, NSLOTS] - 1, NEXT] = -1
    kinds = {kind for kind, *_ in tiers if kind}
    cls = KERNELS[kinds.pop()].ARENA if len(kinds) == 1 else Arena
    for t, (kind, *_) in enumerate(tiers):
        if kind:
            KERNELS[kind].init(meta[t])
    return cls(meta=meta, real=np.zeros(n), stats=np.zeros((n, STAT_FIELDS), dtype=np.int64), slots=slots,
               table=np.full(table_size, -1, dtype=np.int32), future=future)


# ------------------------------------------------------------------ directory


@kernel
def _home(a: Arena, t: int, key: int) -> int:
    h = (np.uint64(key) * GOLDEN) >> np.uint64(a.meta[t, SHIFT])
    return a.meta[t, TABLE0] + np.int64(h)


@kernel
def lookup(a: Arena, t: int, key: int) -> int:
    """The slot of ``key`` in tier ``t`` (resident or ghost), or -1."""
    base = a.meta[t, TABLE0]
    mask = (np.int64(1) << (64 - a.meta[t, SHIFT])) - 1
    i = _home(a, t, key) - base
    while True:
        s = a.table[base + i]
        if s < 0:
            return -1
        if a.slots[s, KEY] == key:
            return s
        i = (i + 1) & mask


@kernel
def resident(a: Arena, t: int, key: int) -> int:
    """The slot of ``key`` if it is resident in tier ``t`` (not a ghost), else -1."""
    s = lookup(a, t, key)
    if s >= 0 and a.slots[s, WHERE] <= 1:
        return s
    return -1


@kernel
def alloc_slot(a: Arena, t: int) -> int:
    """Take a slot from tier ``t``'s free pool (not entered in the directory)."""
    s = a.meta[t, FREE]
    if s < 0:
        raise RuntimeError("tier slot pool exhausted (a block id outside the arena's block-id space?)")
    a.meta[t, FREE] = a.slots[s, NEXT]
    a.slots[s, PREV] = -1
    a.slots[s, NEXT] = -1
    return s


@kernel
def release_slot(a: Arena, t: int, s: int) -> None:
    """Return a slot that is not in the directory to the free pool."""
    a.slots[s, KEY] = -1
    a.slots[s, WHERE] = -1
    a.slots[s, NEXT] = a.meta[t, FREE]
    a.meta[t, FREE] = s


@kernel
def keep_place(a: Arena, t: int, s: int, now: int) -> None:
    """``readmit`` of a policy whose order does not change when a resident block is admitted again."""


@step
def new_slot(a: Arena, t: int, key: int) -> int:
    """Take a free slot for ``key`` (not in the directory) and enter it in the directory."""
    s = alloc_slot(a, t)
    a.slots[s, KEY] = key
    base = a.meta[t, TABLE0]
    mask = (np.int64(1) << (64 - a.meta[t, SHIFT])) - 1
    i = _home(a, t, key) - base
    while a.table[base + i] >= 0:
        i = (i + 1) & mask
    a.table[base + i] = s
    return s


@step
def free_slot(a: Arena, t: int, s: int) -> None:
    """Return slot ``s`` (already unlinked from any list/heap) to the pool and drop it from the directory."""
    base = a.meta[t, TABLE0]
    mask = (np.int64(1) << (64 - a.meta[t, SHIFT])) - 1
    i = _home(a, t, a.slots[s, KEY]) - base
    while a.table[base + i] != s:
        i = (i + 1) & mask
    j = i
    while True:  # backward-shift deletion keeps every probe chain unbroken
        j = (j + 1) & mask
        other = a.table[base + j]
        if other < 0:
            break
        home = _home(a, t, a.slots[other, KEY]) - base
        if (j > i and (home <= i or home > j)) or (j < i and (home <= i and home > j)):
            a.table[base + i] = other
            i = j
    a.table[base + i] = -1
    release_slot(a, t, s)


# ------------------------------------------------------------------ lists


@kernel
def append(a: Arena, t: int, lst: int, s: int) -> None:
    """Put slot ``s`` at the tail (newest end) of list ``lst``."""
    tail = a.meta[t, TAIL + lst]
    a.slots[s, PREV] = tail
    a.slots[s, NEXT] = -1
    if tail >= 0:
        a.slots[tail, NEXT] = s
    else:
        a.meta[t, HEAD + lst] = s
    a.meta[t, TAIL + lst] = s
    a.meta[t, SIZE + lst] += 1
    a.slots[s, WHERE] = lst


@kernel
def unlink(a: Arena, t: int, s: int) -> None:
    """Take slot ``s`` out of its list (``where`` keeps the list id)."""
    lst = a.slots[s, WHERE]
    p, n = a.slots[s, PREV], a.slots[s, NEXT]
    if p >= 0:
        a.slots[p, NEXT] = n
    else:
        a.meta[t, HEAD + lst] = n
    if n >= 0:
        a.slots[n, PREV] = p
    else:
        a.meta[t, TAIL + lst] = p
    a.meta[t, SIZE + lst] -= 1


@kernel
def move_to_tail(a: Arena, t: int, lst: int, s: int) -> None:
    unlink(a, t, s)
    append(a, t, lst, s)


# ------------------------------------------------------------------ heap
# A binary heap of a tier's slots, largest PRIO first, ties to the smallest block id.


@kernel
def _before(a: Arena, x: int, y: int) -> bool:
    px, py = a.slots[x, PRIO], a.slots[y, PRIO]
    return px > py or (px == py and a.slots[x, KEY] < a.slots[y, KEY])


@kernel
def _sift_up(a: Arena, t: int, i: int) -> None:
    base = a.meta[t, SLOT0]
    s = a.slots[base + i, HEAP]
    while i > 0:
        parent = (i - 1) >> 1
        p = a.slots[base + parent, HEAP]
        if not _before(a, s, p):
            break
        a.slots[base + i, HEAP] = p
        a.slots[p, HPOS] = i
        i = parent
    a.slots[base + i, HEAP] = s
    a.slots[s, HPOS] = i


@kernel
def _sift_down(a: Arena, t: int, i: int) -> None:
    base = a.meta[t, SLOT0]
    n = a.meta[t, HEAPN]
    s = a.slots[base + i, HEAP]
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        c = a.slots[base + child, HEAP]
        if child + 1 < n:
            c2 = a.slots[base + child + 1, HEAP]
            if _before(a, c2, c):
                child += 1
                c = c2
        if not _before(a, c, s):
            break
        a.slots[base + i, HEAP] = c
        a.slots[c, HPOS] = i
        i = child
    a.slots[base + i, HEAP] = s
    a.slots[s, HPOS] = i


@kernel
def heap_push(a: Arena, t: int, s: int) -> None:
    n = a.meta[t, HEAPN]
    a.slots[a.meta[t, SLOT0] + n, HEAP] = s
    a.slots[s, HPOS] = n
    a.meta[t, HEAPN] = n + 1
    _sift_up(a, t, n)


@kernel
def heap_fix(a: Arena, t: int, s: int) -> None:
    """Restore the heap after slot ``s``'s PRIO changed."""
    _sift_up(a, t, a.slots[s, HPOS])
    _sift_down(a, t, a.slots[s, HPOS])


@kernel
def heap_remove(a: Arena, t: int, s: int) -> None:
    base = a.meta[t, SLOT0]
    i = a.slots[s, HPOS]
    n = a.meta[t, HEAPN] - 1
    a.meta[t, HEAPN] = n
    a.slots[s, HPOS] = -1
    if i == n:
        return
    last = a.slots[base + n, HEAP]
    a.slots[base + i, HEAP] = last
    a.slots[last, HPOS] = i
    heap_fix(a, t, last)


@kernel
def heap_top(a: Arena, t: int) -> int:
    return a.slots[a.meta[t, SLOT0], HEAP]
