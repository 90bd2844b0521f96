"""The arrays every tier's eviction state lives in, and the compiled primitives policies build on:
the slot pool and lists here; the heap in ``sim.cache.arena_heap``; the column layout in
``sim.cache.arena_layout``.

All tiers of one run (each instance's HBM, the DRAM/SSD/EIC tiers, a whole cluster's) live in
one ``TierArena``, so a compiled operation on a cache reaches any of its tiers by index without
Python in between. Memory follows what the tiers hold, not their capacities:

- one pool of *slots* shared by every tier, one slot per block a tier's policy tracks
  (resident blocks, plus ghost entries for ARC and S3-FIFO, bucket nodes for LFU): a
  row of ``slots`` holding the block id, its tier and list id, list links, its holder-chain links (another row,
  taken only while other tiers hold its block too: ``sim.cache.block_index``) and, for the policies that use them,
  a counter, a priority and a heap position (20 to 32 bytes of int32 columns: the pool is as wide as its widest
  policy needs). Free slots form one free list; the pool grows in place by a thirty-second;
- the *block index* (``sim.cache.block_index``): a directory over the slots of every tier, in
  which a block id's slots in different tiers form a holder chain, so ``lookup(t, key)`` takes one
  or two probes and ``holders(key)`` O(holders), however many tiers there are; hashed while small,
  its chain heads direct-mapped once a hashed table would be as large as the block-id space (from the
  start, the members walked, for an arena of few tiers);
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

List convention: lists 0 and 1 hold resident blocks, 2 and 3 ghost entries (a slot's ``where_of``); a
list's head is its oldest entry. Policies without lists mark resident slots where 0.
A slot is resident iff it is in the directory with where <= 1; one with ``TAKEN_WHERE`` holds the policy history
of a block a running request took out of its tier (``operations.take``), in no list.
"""

from __future__ import annotations

import numpy as np

from sim.cache.arena_layout import (
    ABSENT,
    BASE_FIELDS,
    BOUND,
    BYTES_READ,
    CAP,
    COUNT,
    ENTRIES,
    FREE,
    GLOB_FIELDS,
    GROWTH,
    HEAD,
    HEADS,
    HEAP0,
    HEAP_END,
    HEAPCAP,
    HEAPED,
    HEAPN,
    IN_USE,
    KEY,
    KEY_LIMIT,
    KIND,
    MAX_SLOTS,
    META_FIELDS,
    NEXT,
    NONE,
    PCAP,
    PIN,
    PLACE,
    PREV,
    PRIO,
    RESIDENT,
    SHIFT,
    SIZE,
    SLOT_DTYPE,
    STAT0,
    STAT_FIELDS,
    TAIL,
    TIER_SHIFT,
    USERS,
    WANT,
    Arena,
    alloc_slot,
    kernel,
    pinned,
    place,
    release_slot,
    set_where,
    where_of,
)
from sim.cache.block_index import (
    file_slot,
    held_each,
    holders,
    holders_chain,
    members,
    overloaded,
    refile,
    slots_needed,
    unfile_slot,
)
from sim.errors import TraceError
from trace.request import check_block_id_space

_NO_MARKS = np.zeros(0, dtype=np.bool_)  # ``holders_chain``: no key is held outside the arena


def _clear_rows(rows: np.ndarray) -> None:
    """Set ``rows`` (of any width) to a free slot's values (NEXT, the free-list link, is set by the caller)."""
    rows[:] = -1
    rows[:, PLACE] = 0  # (tier 0, where -1)
    for column in (COUNT, PRIO):
        if column < rows.shape[1]:
            rows[:, column] = 0


class TierArena:
    """Owns the arrays of a set of tiers. Tiers may be added at any time (amortised O(1)); the
    arrays grow as blocks arrive, at the points where compiled code asks for room."""

    def __init__(self, future: np.ndarray | None = None, max_keys: int | None = None, few_tiers: bool = False):
        """``max_keys``: block ids are below it (it bounds what a tier may hold; without it, below ``KEY_LIMIT``);
        the directory switches to chain heads direct-mapped over those ids when a hashed one would be as large.
        ``few_tiers``: the arena will hold few tiers (cache-only replay): heads direct-mapped from the start, the
        other members of a chain found by walking it (``sim.cache.block_index``). ``future``: a Belady stream's
        next uses (its positions below ``KEY_LIMIT`` too)."""
        if few_tiers and max_keys is None:
            raise ValueError("a direct-mapped directory needs the block-id space (max_keys)")
        # (a property of the workload, found before any block is simulated: exit 2, as for other impossible sizes)
        if max_keys is not None:  # (the trace's own ids were checked when it was built: here its copies too)
            check_block_id_space(max_keys, "the workload (with its generated blocks and a hybrid model's copies)")
        if future is not None and len(future) > KEY_LIMIT:
            raise TraceError(f"the workload's stream has {len(future):,} block accesses; kvsim ranks next uses "
                             f"(belady) over streams of at most {KEY_LIMIT:,} accesses (int32 slots)")
        self.future = np.ascontiguousarray(future, dtype=np.int64) if future is not None else np.zeros(0, np.int64)
        self.max_keys = max_keys
        self.num_tiers = 0
        # the generic path's tiers file their blocks in the block index too (``sim.cache.indexed_residents``): where
        # the index is read across caches (the cluster's prefix index), not in a lone cache's replay
        self.index_generic = False
        self._kinds: set[int] = set()
        rows = 4
        meta = np.zeros((rows, META_FIELDS), dtype=np.int64)
        aux = np.zeros(GLOB_FIELDS, dtype=np.int64)
        heads, hashed = (max(1, max_keys), 0) if few_tiers else (0, 16)
        aux[FREE], aux[HEAP_END], aux[ABSENT] = -1, GLOB_FIELDS, NONE
        aux[HEADS], aux[SHIFT] = heads, 64 - 4 if hashed else 0  # (SHIFT 0: no hashed region, members walked)
        self._arrays = dict(meta=meta, real=np.zeros(rows), slots=np.zeros((0, BASE_FIELDS), dtype=SLOT_DTYPE),
                            table=np.full(heads + hashed, -1, dtype=np.int32), aux=aux, future=self.future)
        self._state: Arena | None = None
        self._last_pos: np.ndarray | None = None
        self._last_pos_map: dict[int, int] | None = None

    def last_positions(self, num_blocks: int) -> np.ndarray:
        """Each block's last use position (-1: none), one record for every compiled cache over this arena: a block
        demoted out of a shared tier takes its next use from its own last use, whichever cache made it (the
        stream's positions are the run's, not a cache's)."""
        if self._last_pos is None:
            self._last_pos = np.full(num_blocks, -1, dtype=np.int64)
        elif len(self._last_pos) != num_blocks:  # (a copy would no longer be shared)
            raise ValueError(f"the caches over one arena share its block-id space: {num_blocks} blocks asked, "
                             f"{len(self._last_pos)} recorded")
        return self._last_pos

    def last_position_map(self) -> dict[int, int]:
        """``last_positions`` for the generic (Python) caches over this arena."""
        if self._last_pos_map is None:
            self._last_pos_map = {}
        return self._last_pos_map

    # ----------------------------------------------------------------- tiers

    def add_tier(self, kind: int, capacity: int, slots: int) -> int:
        """Register a tier (policy ``kind``, ``capacity`` blocks, at most ``slots`` slots held); its index."""
        from sim.cache.policies.dispatch import KERNELS  # noqa: PLC0415  (the policies import this module)

        t = self.num_tiers
        if t >= 1 << (31 - TIER_SHIFT):  # (a slot's PLACE holds its tier in an int32's high bits)
            raise ValueError(f"a tier arena holds at most {1 << (31 - TIER_SHIFT):,} tiers")
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
        """Set ``tier``'s capacity where nothing overflows it (its blocks fit: ``MultiTierCache.resize_top``; an
        overflow is the compiled resize's to demote); the policy keeps the capacity it was registered with (``PCAP``)."""
        self._arrays["meta"][tier, CAP] = capacity

    def stats_row(self, tier: int) -> np.ndarray:
        """``tier``'s counters (a view: fetch it again after adding tiers)."""
        return self._arrays["meta"][tier, STAT0:STAT0 + STAT_FIELDS]

    def count_read(self, tier: int, nbytes: int) -> None:
        """``nbytes`` read out of ``tier`` by another location's fetch, which copies its blocks and leaves
        them there (no promotion: the cluster's remote prefix loads)."""
        self._arrays["meta"][tier, STAT0 + BYTES_READ] += nbytes

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
        where = rows[:, PLACE] & ~PIN  # (pinned or not)
        resident = (where >= place(tier, 0)) & (where <= place(tier, 1))
        return np.sort(rows[resident, KEY])

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

    def held_each(self, keys, wanted: np.ndarray) -> np.ndarray:
        """Per key, whether some tier ``t`` with ``wanted[t]`` holds it resident (each key on its own: a chain's
        ``holders_chain`` stops at the first key held nowhere). One compiled pass, O(keys x holders)."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        out = np.empty(len(keys), dtype=np.bool_)
        held_each(self.state, keys, np.ascontiguousarray(wanted, dtype=np.bool_), out)
        return out

    def holders_chain(self, keys, through: np.ndarray | None = None) -> tuple[int, np.ndarray, np.ndarray]:
        """Holders of a block chain up to the first block held nowhere (prefix routing):
        ``(found, offsets, tiers)`` with the holders of ``keys[i]`` (i < found) in
        ``tiers[offsets[i]:offsets[i + 1]]``. O(chain length x holders). ``through``: per key, True where the key is
        held outside the arena (a running request's block): the chain goes on past it (with no holders here)."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        through = _NO_MARKS if through is None else np.ascontiguousarray(through, dtype=np.bool_)
        offsets = np.zeros(len(keys) + 1, dtype=np.int64)
        tiers = np.empty(max(16, 2 * len(keys)), dtype=np.int64)
        first = 0
        while True:
            found = holders_chain(self.state, keys, first, offsets, tiers, through)
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
        slots, free = self._arrays["slots"], slots_needed(need, int(glob[SHIFT]))
        if len(slots) - glob[IN_USE] < free:
            self._grow_slots(max(len(slots) + len(slots) // 32, int(glob[IN_USE]) + free, 16))
        if glob[SHIFT] and overloaded.py_func(glob[ENTRIES] + need, self.hashed_cells):  # (SHIFT 0: none hashed)
            self._grow_directory(need)
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
        # In place (realloc): the pool never exists twice, so the peak is the grown pool (a thirty-second over what
        # is used: growing costs no copy, only clearing the new rows), not old + new. Nothing outside the arena keeps
        # a view of it; the compiled-state tuple is rebuilt after a reserve.
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
        wide = np.empty((len(slots), width), dtype=SLOT_DTYPE)
        _clear_rows(wide)
        wide[:, :slots.shape[1]] = slots
        self._arrays["slots"] = wide
        self._state = None

    @property
    def direct_cells(self) -> int:
        """The directory's direct-mapped cells (a chain head per block id; 0: all hashed)."""
        return int(self._arrays["aux"][HEADS])

    @property
    def hashed_cells(self) -> int:
        """The cells of the directory's hashed region (every slot's when ``direct_cells`` is 0, else the members'; 0:
        the members are walked)."""
        return len(self._arrays["table"]) - self.direct_cells

    def _grow_directory(self, need: int) -> None:
        """A hashed region with room for ``need`` more entries at load <= 0.7, twice as large at least; or, where a
        hashed table that large would have as many cells as the block-id space, the heads direct-mapped over it and
        a hashed region for the members past them (with that room)."""
        entries, heads = int(self._arrays["aux"][ENTRIES]), self.direct_cells
        size = 2 * self.hashed_cells
        while overloaded.py_func(entries + need, size):
            size *= 2
        if not heads and self.max_keys is not None and size >= self.max_keys:
            heads, entries, size = self.max_keys, members(self._arrays["slots"]), 16
            while overloaded.py_func(entries + need, size):
                size *= 2
        self._refile(heads, size)

    def _refile(self, heads: int, size: int) -> None:
        """A directory of ``heads`` direct cells and a hashed region of ``size``, filled from the pool (``refile``)
        after the old one is let go."""
        self._state = None  # (its tuple holds the old directory)
        self._arrays["table"] = np.zeros(0, dtype=np.int32)
        table = np.full(heads + size, -1, dtype=np.int32)
        shift = 64 - (size.bit_length() - 1)
        entries = refile(self._arrays["slots"], table, heads, shift)
        self._arrays["table"] = table
        aux = self._arrays["aux"]
        aux[HEADS], aux[SHIFT], aux[ENTRIES] = heads, shift, entries

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


# ------------------------------------------------------------------ slot pool


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
    if heap_ok and len(a.slots) - a.aux[IN_USE] >= slots_needed(need, a.aux[SHIFT]) and (
            a.aux[SHIFT] == 0 or not overloaded(a.aux[ENTRIES] + need, len(a.table) - a.aux[HEADS])):
        return True
    a.aux[WANT] = uses
    return False


@kernel
def keep_place(a, t: int, s: int, now: int) -> None:
    """``readmit`` of a policy whose order does not change when a resident block is admitted again."""


@kernel
def no_history(a, t: int, s: int) -> int:
    """``history`` of a policy that keeps no per-block state beyond its order (LRU, FIFO, Belady): none (-1)."""
    return -1


@kernel
def no_carry(a, t: int, s: int, history: int) -> None:
    """``carry`` of a policy that keeps no per-block state beyond its order: nothing to take on."""


@kernel
def new_slot(a, t: int, key: int) -> int:
    """Take a free slot for ``key`` in tier ``t`` (which does not track it yet) and file it in the block index."""
    s = alloc_slot(a, t)
    file_slot(a, t, s, key)
    return s


@kernel
def free_slot(a, t: int, s: int) -> None:
    """Return slot ``s`` (already unlinked from any list/heap) to the pool, out of the block index."""
    unfile_slot(a, s)
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
    set_where(a.slots, s, lst)


@kernel
def unlink(a: Arena, t: int, s: int) -> None:
    """Take slot ``s`` out of its list (``where`` keeps the list id)."""
    lst = where_of(a.slots, s)
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
def first_unpinned(a: Arena, s: int) -> int:
    """The first slot from ``s`` on along its list (towards the newest) that is not pinned (``pinned``), -1: none."""
    while s >= 0 and pinned(a.slots, s):
        s = a.slots[s, NEXT]
    return s


@kernel
def move_to_tail(a: Arena, t: int, lst: int, s: int) -> None:
    unlink(a, t, s)
    append(a, t, lst, s)
