"""The arrays every tier's eviction state lives in, and the compiled primitives policies build on.

All tiers of one run (each instance's HBM, the DRAM/SSD/EIC tiers, a whole cluster's) live in
one ``TierArena``, so a compiled operation on a cache reaches any of its tiers by index without
Python in between. Memory follows what the tiers hold, not their capacities:

- one pool of *slots* shared by every tier, one slot per block a tier's policy tracks
  (resident blocks, plus ghost entries for ARC and S3-FIFO, bucket nodes for LFU): a
  row of ``slots`` holding the block id, its tier, the links of its block's holder chain,
  list links, list id, and, for the policies that use them, a counter, a priority and a heap
  position (48 to 72 bytes: the pool is as wide as its widest policy needs). Free slots form
  one free list; the pool grows by a tenth;
- one open-addressing hash directory (linear probing, backward-shift deletion, load <= 0.7)
  over the slots of every tier, which is also the *block index across tiers*. The slots of
  one block id in different tiers form a doubly linked holder chain (``CHAIN``);
  the chain's head is filed under the block id alone, every other member under the pair
  (block id, tier). So ``lookup(t, key)`` is one or two probes however many tiers hold the
  block (a popular prefix held by thousands of instances), and ``holders(key)`` walks the
  chain: O(holders), never O(tiers). Each directory slot has exactly one entry, so the
  directory is no larger than a per-tier one. Or, for an arena of few tiers over a known
  block-id space (``dense``: cache-only replay), a *direct-mapped* directory: one cell per
  block id holding its chain's head, the other members found by walking the chain (at most
  one per tier). A lookup is one load and filing or dropping a head one store (no hashing,
  probing or backward shifts), for 4 bytes per block id of the trace, half of what the
  trace's own access array takes per distinct block;
- up to four intrusive doubly linked lists per tier over its slots (heads, tails, sizes in
  ``meta``) and a binary heap per tier (Belady) in a region of ``aux`` that moves to a
  larger one (doubling) as the tier grows;
- a row of ``meta`` per tier (capacity, counts, list ends, the policy's own scalars, its
  counters); its rows grow by doubling, so adding a tier is amortised O(1).

Compiled code never allocates (``_nrt=False``): each compiled entry point first checks that
the arrays have room for what its operations may add (``room``: at most ``GROWTH`` slots per
tier per block use, bounded by what each tier's policy may hold at all, ``policy.slots(c)``
for c its capacity or the block-id space ``max_keys`` if smaller) and, if not, returns at
once, asking for that many uses (``WANT``); the Python wrapper grows the arrays
(``TierArena.reserve``) and calls again.

List convention: lists 0 and 1 hold resident blocks, 2 and 3 ghost entries (``WHERE``); a
list's head is its oldest entry. Policies without lists mark resident slots ``WHERE = 0``.
A slot is resident iff it is in the directory with ``WHERE`` <= 1.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from sim.jit import njit

# ---- meta columns (per tier)
KIND, CAP, PCAP, BOUND, HEAP0, HEAPCAP, HEAPED, RESIDENT, HEAPN, USERS = range(10)
HEAD, TAIL, SIZE = 10, 14, 18  # + list id (0..3)
X0 = 22  # first of the policy's own scalars
STAT0 = X0 + 8  # the tier's counters (``STAT_FIELDS`` of them, in ``TierStats``' order)
META_FIELDS = STAT0 + 8
# BOUND: slots the tier's policy may hold at most; HEAP0/HEAPCAP: its heap region in ``heap``
# (HEAPED: its policy keeps a heap)

# ---- slot columns
KEY, TIER, CHAIN, PREV, NEXT, WHERE, COUNT, PRIO, HPOS = range(9)  # NEXT also chains the free pool
SLOT_FIELDS = 9  # KEY, TIER and CHAIN first: a directory probe reads them together
BASE_FIELDS = WHERE + 1  # the columns every policy uses; COUNT, PRIO, HPOS only policies that declare them
# A policy module's ``SLOT_FIELDS`` says how many leading columns it uses; the pool is as wide as the widest
# policy of its tiers (an LRU fleet's slot is 48 bytes, not 72: the pool is most of a cluster's memory).
# CHAIN: the neighbours in the holder chain of the same block id (other tiers), packed as
# (previous + 1) | (next + 1) << 32 (slot numbers fit in 31 bits); no previous: the head;
# 0: the block's only slot

# ---- arena-wide scalars (the first ``GLOB_FIELDS`` entries of ``aux``)
FREE, IN_USE, ENTRIES, SHIFT, HEAP_END, WANT, ABSENT = range(7)
GLOB_FIELDS = 7
# FREE: first free slot (-1: none); IN_USE: slots taken; ENTRIES: directory entries;
# SHIFT: 64 - log2(directory size), 0: direct-mapped (a cell per block id); HEAP_END: used length of ``heap``; WANT: uses an entry
# point asked room for; ABSENT: a block id that no tier tracks, as the last lookup found
# (NONE: unknown), so filing it right after a miss takes no second search

# ---- stats columns, from ``STAT0`` in a tier's ``meta`` row (the order of TierStats' fields)
HITS, INSERTIONS, PROMOTIONS, DEMOTIONS, EVICTIONS, PREFETCHES, BYTES_READ, BYTES_WRITTEN = range(8)
STAT_FIELDS = 8

GROWTH = 3  # slots one block use may add to one tier (LFU: a block and its bucket, and a hit's new bucket)
NONE = -(1 << 62)  # "no key" in policy scalars (block ids are >= 0; -1 is a legal "incoming" key)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX = np.uint64(0xBF58476D1CE4E5B9)  # splitmix64's multiplier: spreads (block id, tier) pairs
MAX_SLOTS = (1 << 31) - 1  # the directory holds int32 slot numbers


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


@kernel
def _overloaded(entries, size):
    """A directory of ``size`` entries is too full for ``entries`` above a load of 0.7: linear probing
    stays short (about 2 probes a hit, 6 a miss) and a fleet-sized directory is half the bytes of 0.5."""
    return 10 * entries > 7 * size


class Arena(NamedTuple):
    """The arrays of a ``TierArena``, passed to compiled code as one argument.

    This class serves arenas whose tiers run different policies (the policy is looked up per
    tier at run time). An arena whose kernel tiers all run one policy uses that policy's own
    class of the same fields (``arena_type``), so compiled code is specialised to the policy
    with no per-access dispatch. ``meta`` and ``real`` have rows to spare beyond the tiers
    added (the arrays grow by doubling). Few arrays on purpose: compiled calls pass each
    array's fields, and every extra array slows every non-inlined call.
    """

    meta: np.ndarray  # int64 [tier rows, META_FIELDS]: a tier's settings, state and counters
    real: np.ndarray  # float64 [tier rows]: a policy's real-valued scalar (ARC's target p)
    slots: np.ndarray  # int64 [pool, SLOT_FIELDS]; KEY -1 and WHERE -1 when free
    table: np.ndarray  # int32 [directory, a power of two]: a slot, -1 when empty
    aux: np.ndarray  # int64: the arena-wide scalars, then the tiers' heap regions (entry i of tier t at HEAP0 + i)
    future: np.ndarray  # int64 [stream]: next use of the block accessed at each position (Belady)


def arena_type(name: str, module: str) -> type:
    """A class with ``Arena``'s fields, for one policy's arenas (defined as ``module.name``)."""
    cls = NamedTuple(name, list(Arena.__annotations__.items()))
    cls.__module__ = module
    return cls


def _clear_rows(rows: np.ndarray) -> None:
    """Set ``rows`` (of any width) to a free slot's values (NEXT, the free-list link, is set by the caller)."""
    rows[:] = -1
    for column in (CHAIN, COUNT, PRIO):
        if column < rows.shape[1]:
            rows[:, column] = 0


class TierArena:
    """Owns the arrays of a set of tiers. Tiers may be added at any time (amortised O(1)); the
    arrays grow as blocks arrive, at the points where compiled code asks for room."""

    def __init__(self, future: np.ndarray | None = None, max_keys: int | None = None, dense: bool = False):
        """``max_keys``: block ids are below it (it bounds what a tier may hold). ``dense``: a direct-mapped
        directory over those ids, for arenas of few tiers (a lookup walks its block's holder chain)."""
        if dense and max_keys is None:
            raise ValueError("a direct-mapped directory needs the block-id space (max_keys)")
        self.dense = dense
        self.future = np.ascontiguousarray(future, dtype=np.int64) if future is not None else np.zeros(0, np.int64)
        self.max_keys = max_keys
        self.num_tiers = 0
        self._kinds: set[int] = set()
        rows = 4
        meta = np.zeros((rows, META_FIELDS), dtype=np.int64)
        aux = np.zeros(GLOB_FIELDS, dtype=np.int64)
        aux[FREE], aux[SHIFT], aux[HEAP_END], aux[ABSENT] = -1, 0 if dense else 64 - 4, GLOB_FIELDS, NONE
        self._arrays = dict(meta=meta, real=np.zeros(rows), slots=np.zeros((0, BASE_FIELDS), dtype=np.int64),
                            table=np.full(max(1, max_keys) if dense else 16, -1, dtype=np.int32),
                            aux=aux, future=self.future)
        self._state: Arena | None = None

    # ----------------------------------------------------------------- tiers

    def add_tier(self, kind: int, capacity: int, slots: int) -> int:
        """Register a tier (policy ``kind``, ``capacity`` blocks, at most ``slots`` slots held); its index."""
        from sim.cache.policies.dispatch import KERNELS  # noqa: PLC0415  (the policies import this module)

        t = self.num_tiers
        if t == len(self._arrays["meta"]):
            for name in ("meta", "real"):
                old = self._arrays[name]
                new = np.zeros((2 * len(old), *old.shape[1:]), dtype=old.dtype)
                new[:t] = old
                self._arrays[name] = new
        row = self._arrays["meta"][t]
        row[KIND], row[CAP], row[PCAP], row[BOUND] = kind, capacity, capacity, max(1, slots)
        row[HEAD:HEAD + 4] = row[TAIL:TAIL + 4] = -1
        if kind:
            row[HEAPED] = int(getattr(KERNELS[kind], "USES_HEAP", False))
            KERNELS[kind].init(row)
            self._kinds.add(kind)
            self._widen(KERNELS[kind].SLOT_FIELDS)
        self.num_tiers = t + 1
        self._state = None
        return t

    @property
    def allocated(self) -> bool:
        """Always True: the arrays exist from the start and grow with the tiers' contents."""
        return True

    @property
    def state(self) -> Arena:
        if self._state is None:
            from sim.cache.policies.dispatch import KERNELS  # noqa: PLC0415

            cls = KERNELS[next(iter(self._kinds))].ARENA if len(self._kinds) == 1 else Arena
            self._state = cls(**self._arrays)
        return self._state

    def add_user(self, tier: int) -> None:
        """One more cache uses ``tier`` (a tier several caches share may receive a block it holds)."""
        self._arrays["meta"][tier, USERS] += 1

    def users(self, tier: int) -> int:
        """How many caches use ``tier``."""
        return int(self._arrays["meta"][tier, USERS])

    def built_capacity(self, tier: int) -> int:
        """The capacity ``tier`` was added with (its policy's capacity)."""
        return int(self._arrays["meta"][tier, PCAP])

    def kind(self, tier: int) -> int:
        return int(self._arrays["meta"][tier, KIND])

    def capacity(self, tier: int) -> int:
        return int(self._arrays["meta"][tier, CAP])

    def set_capacity(self, tier: int, capacity: int) -> None:
        """For a tier holding nothing yet (with blocks, ``MultiTierCache.resize_top`` moves the
        overflow); the policy keeps the capacity it was registered with (``PCAP``)."""
        self._arrays["meta"][tier, CAP] = capacity

    def stats_row(self, tier: int) -> np.ndarray:
        """``tier``'s counters (a view: fetch it again after adding tiers)."""
        return self._arrays["meta"][tier, STAT0:STAT0 + STAT_FIELDS]

    def resident_count(self, tier: int) -> int:
        """Blocks resident in ``tier`` (a compiled tier; the generic path keeps Python sets)."""
        return int(self._arrays["meta"][tier, RESIDENT])

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays the arena holds (the next-use index it was given excluded)."""
        return sum(a.nbytes for name, a in self._arrays.items() if name != "future")

    def resident_keys(self, tier: int) -> np.ndarray:
        """Sorted block ids resident in ``tier`` (tests, inspection: scans the pool)."""
        rows = self._arrays["slots"]
        return np.sort(rows[(rows[:, TIER] == tier) & (rows[:, WHERE] >= 0) & (rows[:, WHERE] <= 1), KEY])

    # ------------------------------------------------------------ block index

    def holders(self, key: int) -> np.ndarray:
        """Tiers in which block ``key`` is resident (not a ghost), in no particular order; compiled
        tiers only (a tier of the generic path is not indexed)."""
        out = np.empty(8, dtype=np.int64)
        while True:
            n = holders(self.state, key, out)
            if n <= len(out):
                return out[:n]
            out = np.empty(n, dtype=np.int64)

    def holders_chain(self, keys) -> tuple[int, np.ndarray, np.ndarray]:
        """Holders of a block chain up to the first block held nowhere (prefix routing):
        ``(found, offsets, tiers)`` with the holders of ``keys[i]`` (i < found) in
        ``tiers[offsets[i]:offsets[i + 1]]``. O(chain length x holders)."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        offsets = np.zeros(len(keys) + 1, dtype=np.int64)
        tiers = np.empty(max(16, 2 * len(keys)), dtype=np.int64)
        first = 0
        while True:
            found = holders_chain(self.state, keys, first, offsets, tiers)
            if found >= 0:
                return found, offsets[:found + 1], tiers[:offsets[found]]
            first = -1 - found  # out of room at that key: grow and go on from it
            grown = np.empty(2 * len(tiers), dtype=np.int64)
            grown[:offsets[first]] = tiers[:offsets[first]]
            tiers = grown

    # ---------------------------------------------------------------- growth

    @property
    def wanted(self) -> int:
        """The block uses the last entry point that found no room asked for."""
        return int(self._arrays["aux"][WANT])

    def reserve(self, tiers, uses: int) -> None:
        """Grow the arrays so that ``uses`` block uses on ``tiers`` fit (what ``room`` checks)."""
        meta, glob = self._arrays["meta"], self._arrays["aux"]
        tiers = np.asarray(tiers, dtype=np.int64)
        rows = meta[tiers]
        need = int(np.minimum(rows[:, BOUND], GROWTH * uses).sum())
        slots = self._arrays["slots"]
        if len(slots) - glob[IN_USE] < need:
            self._grow_slots(max(len(slots) + len(slots) // 10, int(glob[IN_USE]) + need, 16))
        if not self.dense and _overloaded.py_func(glob[ENTRIES] + need, len(self._arrays["table"])):
            size = 2 * len(self._arrays["table"])
            while _overloaded.py_func(glob[ENTRIES] + need, size):
                size *= 2
            self._grow_table(size)
        for t in tiers[rows[:, HEAPED] == 1].tolist():
            want = min(int(meta[t, BOUND]), int(meta[t, HEAPN]) + uses)
            if meta[t, HEAPCAP] < want:
                self._move_heap(t, max(want, 2 * int(meta[t, HEAPCAP])))
        self._state = None

    def _grow_slots(self, size: int) -> None:
        if size > MAX_SLOTS:
            raise MemoryError(f"a tier arena holds at most {MAX_SLOTS} slots")
        slots, glob = self._arrays["slots"], self._arrays["aux"]
        used = len(slots)
        # In place (realloc): the pool never exists twice, so the peak is the grown pool (at most a tenth
        # over what is used), not old + new. Nothing outside the arena keeps a view of it; the
        # compiled-state tuple is rebuilt after a reserve.
        self._state = None
        slots.resize((size, slots.shape[1]), refcheck=False)
        new = slots
        _clear_rows(new[used:])
        new[used:, NEXT] = np.arange(used + 1, size + 1)
        new[size - 1, NEXT] = glob[FREE]  # the old free list follows the new rows
        glob[FREE] = used

    def _widen(self, width: int) -> None:
        """Give every slot at least ``width`` columns (a tier whose policy uses more joined); the new
        columns hold a free slot's values, which no other policy reads."""
        slots = self._arrays["slots"]
        if width <= slots.shape[1]:
            return
        wide = np.empty((len(slots), width), dtype=np.int64)
        _clear_rows(wide)
        wide[:, :slots.shape[1]] = slots
        self._arrays["slots"] = wide
        self._state = None

    def _grow_table(self, size: int) -> None:
        table = np.full(size, -1, dtype=np.int32)
        _refile(self._arrays["slots"], self._arrays["table"], table, 64 - (size.bit_length() - 1))
        self._arrays["table"] = table
        self._arrays["aux"][SHIFT] = 64 - (size.bit_length() - 1)

    def _move_heap(self, t: int, capacity: int) -> None:
        """Give tier ``t``'s heap a region of ``capacity`` entries at the end of ``aux``."""
        meta, aux = self._arrays["meta"], self._arrays["aux"]
        end = int(aux[HEAP_END])
        if end + capacity > len(aux):
            grown = np.zeros(max(2 * len(aux), end + capacity), dtype=np.int64)
            grown[:end] = aux[:end]
            aux = self._arrays["aux"] = grown
        lo, n = int(meta[t, HEAP0]), int(meta[t, HEAPN])
        aux[end:end + n] = aux[lo:lo + n]
        meta[t, HEAP0], meta[t, HEAPCAP] = end, capacity
        aux[HEAP_END] = end + capacity


# ------------------------------------------------------------------ directory


@kernel
def _home_key(key: int, shift: int) -> int:
    """Directory home of a holder chain's head: its block id alone."""
    return np.int64((np.uint64(key) * GOLDEN) >> np.uint64(shift))


@kernel
def _home_pair(key: int, t: int, shift: int) -> int:
    """Directory home of a chain member past the head: its (block id, tier)."""
    x = np.uint64(key) * GOLDEN + np.uint64(t + 1)
    x = (x ^ (x >> np.uint64(31))) * MIX
    return np.int64(x >> np.uint64(shift))


LOW = (1 << 32) - 1


@kernel
def _prev(slots, s: int) -> int:
    """The previous slot in ``s``'s holder chain (-1: ``s`` is the head)."""
    return (slots[s, CHAIN] & LOW) - 1


@kernel
def _next(slots, s: int) -> int:
    """The next slot in ``s``'s holder chain (-1: none)."""
    return (slots[s, CHAIN] >> 32) - 1


@kernel
def _link(slots, s: int, prev: int, nxt: int) -> None:
    slots[s, CHAIN] = (prev + 1) | ((nxt + 1) << 32)


@kernel
def _home_of(slots, s: int, shift: int) -> int:
    if slots[s, CHAIN] & LOW == 0:
        return _home_key(slots[s, KEY], shift)
    return _home_pair(slots[s, KEY], slots[s, TIER], shift)


@kernel
def _cell_of_head(a, key: int) -> int:
    """The directory cell of ``key``'s chain head, or -1 (no tier tracks ``key``)."""
    if a.aux[SHIFT] == 0:
        return key if a.table[key] >= 0 else -1
    mask = len(a.table) - 1
    i = _home_key(key, a.aux[SHIFT])
    while True:
        s = a.table[i]
        if s < 0:
            return -1
        if a.slots[s, KEY] == key and a.slots[s, CHAIN] & LOW == 0:
            return i
        i = (i + 1) & mask


@kernel
def _cell_of(a, s: int) -> int:
    """The directory cell holding slot ``s``."""
    mask = len(a.table) - 1
    i = _home_of(a.slots, s, a.aux[SHIFT])
    while a.table[i] != s:
        i = (i + 1) & mask
    return i


@kernel
def _empty_cell(a, i: int) -> int:
    """The first empty directory cell from ``i`` on (linear probing)."""
    mask = len(a.table) - 1
    while a.table[i] >= 0:
        i = (i + 1) & mask
    return i


@kernel
def _vacate(a, i: int) -> None:
    """Empty directory cell ``i``; backward-shift deletion keeps every probe sequence unbroken."""
    mask = len(a.table) - 1
    shift = a.aux[SHIFT]
    j = i
    while True:
        j = (j + 1) & mask
        other = a.table[j]
        if other < 0:
            break
        home = _home_of(a.slots, other, shift)
        if (j > i and (home <= i or home > j)) or (j < i and (home <= i and home > j)):
            a.table[i] = other
            i = j
    a.table[i] = -1
    a.aux[ENTRIES] -= 1


@kernel
def head_slot(a, key: int) -> int:
    """The head of ``key``'s holder chain (a slot of some tier, resident or ghost), or -1."""
    i = _cell_of_head(a, key)
    return a.table[i] if i >= 0 else -1


@kernel
def lookup(a, t: int, key: int) -> int:
    """The slot of ``key`` in tier ``t`` (resident or ghost), or -1: one probe for the chain's
    head, a second for another member (direct-mapped: one load, then a walk along the chain)."""
    mask = len(a.table) - 1
    shift = a.aux[SHIFT]
    if shift == 0:
        s = a.table[key]
        if s < 0:
            a.aux[ABSENT] = key
            return -1
        while a.slots[s, TIER] != t:
            s = _next(a.slots, s)
            if s < 0:
                return -1
        return s
    i = _home_key(key, shift)
    while True:
        s = a.table[i]
        if s < 0:
            a.aux[ABSENT] = key  # no tier tracks key (until a slot is filed)
            return -1
        if a.slots[s, KEY] == key and a.slots[s, CHAIN] & LOW == 0:
            break
        i = (i + 1) & mask
    if a.slots[s, TIER] == t:
        return s
    if a.slots[s, CHAIN] == 0:
        return -1  # the head is the only member
    i = _home_pair(key, t, shift)
    while True:
        s = a.table[i]
        if s < 0:
            return -1
        if a.slots[s, KEY] == key and a.slots[s, TIER] == t:
            return s
        i = (i + 1) & mask


@kernel
def resident(a, t: int, key: int) -> int:
    """The slot of ``key`` if it is resident in tier ``t`` (not a ghost), else -1."""
    s = lookup(a, t, key)
    if s >= 0 and a.slots[s, WHERE] <= 1:
        return s
    return -1


@kernel
def room(a, tiers, uses: int) -> bool:
    """Whether ``uses`` block uses on ``tiers`` fit in the arrays as they are: free slots, directory
    cells and heap entries for what they may add. If not, ``WANT`` says how many uses to reserve."""
    need = 0
    heap_ok = True
    for t in tiers:
        need += min(a.meta[t, BOUND], GROWTH * uses)
        if a.meta[t, HEAPED] and a.meta[t, HEAPCAP] < min(a.meta[t, BOUND], a.meta[t, HEAPN] + uses):
            heap_ok = False
    if heap_ok and len(a.slots) - a.aux[IN_USE] >= need and (
            a.aux[SHIFT] == 0 or not _overloaded(a.aux[ENTRIES] + need, len(a.table))):
        return True
    a.aux[WANT] = uses
    return False


@kernel
def alloc_slot(a, t: int) -> int:
    """Take a slot from the free pool for tier ``t`` (not entered in the directory)."""
    s = a.aux[FREE]
    if s < 0:
        raise RuntimeError("tier arena slot pool exhausted (an entry point without a room check?)")
    a.aux[FREE] = a.slots[s, NEXT]
    a.aux[IN_USE] += 1
    a.slots[s, TIER] = t
    a.slots[s, PREV] = -1
    a.slots[s, NEXT] = -1
    return s


@kernel
def release_slot(a, t: int, s: int) -> None:
    """Return a slot that is not in the directory to the free pool."""
    a.slots[s, KEY] = -1
    a.slots[s, WHERE] = -1
    a.slots[s, NEXT] = a.aux[FREE]
    a.aux[FREE] = s
    a.aux[IN_USE] -= 1


@kernel
def keep_place(a, t: int, s: int, now: int) -> None:
    """``readmit`` of a policy whose order does not change when a resident block is admitted again."""


class _Directory(NamedTuple):
    """The arrays the directory functions use, for the rarely taken paths compiled apart
    (a call passing the whole arena costs more than the work)."""

    slots: np.ndarray
    table: np.ndarray
    aux: np.ndarray


@step
def _file_member(slots, table, aux, s: int, h: int, t: int) -> None:
    """File slot ``s`` of tier ``t`` as the member after chain head ``h`` (its block has holders)."""
    d = _Directory(slots, table, aux)
    n = _next(slots, h)
    _link(slots, s, h, n)
    _link(slots, h, -1, s)
    if n >= 0:
        _link(slots, n, s, _next(slots, n))
    if aux[SHIFT] != 0:  # direct-mapped: only a chain's head has a cell
        table[_empty_cell(d, _home_pair(slots[s, KEY], t, aux[SHIFT]))] = s


@step
def _unfile_member(slots, table, aux, s: int) -> None:
    """Drop slot ``s`` of a holder chain of two or more from the directory and the chain."""
    d = _Directory(slots, table, aux)
    p, n = _prev(slots, s), _next(slots, s)
    dense = aux[SHIFT] == 0
    if p >= 0:  # a member past the head
        if dense:
            aux[ENTRIES] -= 1
        else:
            _vacate(d, _cell_of(d, s))
        _link(slots, p, _prev(slots, p), n)
        if n >= 0:
            _link(slots, n, p, _next(slots, n))
    else:  # the head: its successor takes its cell
        if dense:
            aux[ENTRIES] -= 1
            table[slots[s, KEY]] = n
        else:
            _vacate(d, _cell_of(d, n))
            table[_cell_of(d, s)] = n
        _link(slots, n, -1, _next(slots, n))


@kernel
def new_slot(a, t: int, key: int) -> int:
    """Take a free slot for ``key`` in tier ``t`` (which does not track it yet) and file it: as its
    block's chain head, or as the member after the head."""
    s = alloc_slot(a, t)
    a.slots[s, KEY] = key
    i = -1 if a.aux[ABSENT] == key else _cell_of_head(a, key)
    a.aux[ABSENT] = NONE
    if i < 0:
        a.slots[s, CHAIN] = 0
        a.table[key if a.aux[SHIFT] == 0 else _empty_cell(a, _home_key(key, a.aux[SHIFT]))] = s
    else:
        _file_member(a.slots, a.table, a.aux, s, a.table[i], t)
    a.aux[ENTRIES] += 1
    return s


@kernel
def free_slot(a, t: int, s: int) -> None:
    """Return slot ``s`` (already unlinked from any list/heap) to the pool and drop it from the
    directory and its block's holder chain (the next member becomes the head)."""
    if a.slots[s, CHAIN] == 0:  # its block's only slot
        if a.aux[SHIFT] == 0:
            a.table[a.slots[s, KEY]] = -1
            a.aux[ENTRIES] -= 1
        else:
            _vacate(a, _cell_of(a, s))
    else:
        _unfile_member(a.slots, a.table, a.aux, s)
    release_slot(a, t, s)


@njit(cache=True, _nrt=False)
def _refile(slots, old, table, shift):
    """Enter every slot of directory ``old`` in the larger ``table`` (its hash ``shift``)."""
    mask = len(table) - 1
    for s in old:
        if s >= 0:
            i = _home_of(slots, s, shift)
            while table[i] >= 0:
                i = (i + 1) & mask
            table[i] = s


@njit(cache=True, _nrt=False)
def holders(a, key, out):
    """Tiers where ``key`` is resident, written to ``out`` (as many as fit); how many there are."""
    n = 0
    s = head_slot(a, key)
    while s >= 0:
        if a.slots[s, WHERE] <= 1:
            if n < len(out):
                out[n] = a.slots[s, TIER]
            n += 1
        s = _next(a.slots, s)
    return n


@njit(cache=True, _nrt=False)
def holders_chain(a, keys, first, offsets, tiers):
    """CSR holders of ``keys[first:]`` (``offsets[first]`` set) up to the first key held nowhere:
    how many keys have holders, or -1 - i when ``tiers`` has no room for key i's."""
    for i in range(first, len(keys)):
        n = offsets[i]
        s = head_slot(a, keys[i])
        while s >= 0:
            if a.slots[s, WHERE] <= 1:
                if n == len(tiers):
                    return -1 - i
                tiers[n] = a.slots[s, TIER]
                n += 1
            s = _next(a.slots, s)
        if n == offsets[i]:
            return i
        offsets[i + 1] = n
    return len(keys)


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
    base = a.meta[t, HEAP0]
    s = a.aux[base + i]
    while i > 0:
        parent = (i - 1) >> 1
        p = a.aux[base + parent]
        if not _before(a, s, p):
            break
        a.aux[base + i] = p
        a.slots[p, HPOS] = i
        i = parent
    a.aux[base + i] = s
    a.slots[s, HPOS] = i


@kernel
def _sift_down(a: Arena, t: int, i: int) -> None:
    base = a.meta[t, HEAP0]
    n = a.meta[t, HEAPN]
    s = a.aux[base + i]
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        c = a.aux[base + child]
        if child + 1 < n:
            c2 = a.aux[base + child + 1]
            if _before(a, c2, c):
                child += 1
                c = c2
        if not _before(a, c, s):
            break
        a.aux[base + i] = c
        a.slots[c, HPOS] = i
        i = child
    a.aux[base + i] = s
    a.slots[s, HPOS] = i


@kernel
def heap_push(a: Arena, t: int, s: int) -> None:
    n = a.meta[t, HEAPN]
    if n >= a.meta[t, HEAPCAP]:
        raise RuntimeError("tier heap region full (an entry point without a room check?)")
    a.aux[a.meta[t, HEAP0] + n] = s
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
    base = a.meta[t, HEAP0]
    i = a.slots[s, HPOS]
    n = a.meta[t, HEAPN] - 1
    a.meta[t, HEAPN] = n
    a.slots[s, HPOS] = -1
    if i == n:
        return
    last = a.aux[base + n]
    a.aux[base + i] = last
    a.slots[last, HPOS] = i
    heap_fix(a, t, last)


@kernel
def heap_top(a: Arena, t: int) -> int:
    return a.aux[a.meta[t, HEAP0]]
