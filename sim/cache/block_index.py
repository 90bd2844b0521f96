"""The block index across tiers: which slot of the tier arena's pool holds a block id in a tier,
and which tiers hold it (``sim.cache.arena`` owns the pool; this module files and finds its slots).

The slots of one block id in different tiers form a holder chain; ``holders(key)`` walks it: O(holders),
never O(tiers). A slot's ``CHAIN`` column holds its links in one of two forms, by layout (below). Where members are
hashed, the chain is doubly linked (an O(1) unlink, however many instances hold a popular prefix) and the links live
out of line, in a *link row*: another row of the pool (no slot: KEY -1), taken when a slot's chain grows past one and
given back when it shrinks to one (``CHAIN`` -1: the block's only slot): nearly every block of a fleet has one holder (96% of the slots at 1 M
prod-eval requests), and two links in every slot were a third of an LRU slot, the pool most of a fleet's memory.
Where members are walked (few tiers), ``CHAIN`` is the next member itself (singly linked: a member's previous is
found from the head, at most one per tier): replay's blocks are nearly all in several tiers, and a row's indirection
cost its multi-tier caches 5 to 20%. (A separate array of link rows, not the pool, cost every compiled call that
passes the arena an argument more: 4 to 7% of multi-tier replay.) The directory (``table``) files each slot once, in one of these layouts:

- *hashed* (``HEADS`` 0): one open-addressing hash table (linear probing, backward-shift deletion, load
  <= 0.7) over every slot, the chain's head filed under the block id alone, every other member under the
  pair (block id, tier). So ``lookup(t, key)`` is one or two probes however many tiers hold the block (a
  popular prefix held by thousands of instances), and the directory follows what the tiers hold, however
  large the block-id space (a small cache over a long trace).
- *heads direct* (``HEADS`` = the block-id space ``max_keys``): a cell per block id holding its chain's
  head (a lookup of the head is one load, filing or dropping it one store), then the members past the
  head hashed by (block id, tier) in a region of their own after those cells, as above. Nearly every block
  of a fleet has one holder: 4 bytes per block id, where a hashed table takes 4 / load (0.35 to 0.7) per slot.
  Or, for an arena of few tiers (cache-only replay), no hashed region (``SHIFT`` 0): the members are
  found by walking the chain from its head, at most one per tier. Replay's multi-tier caches churn: each
  miss files a slot in every tier of an inclusive cache (in two with a policy spanning the tiers) and evicts
  as many, and hashing those members ran them 3.5 to 4.5 times slower than walking (ARC spanning HBM/DRAM/SSD,
  inclusive LRU).

An arena that knows its block-id space starts hashed and small, and switches to heads direct (members
hashed) at the growth that would make the hashed table as large as the id space (``TierArena.reserve``):
the directory is never much larger than the smaller of the two.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sim.cache.arena_layout import (
    ABSENT,
    CHAIN,
    ENTRIES,
    GOLDEN,
    HEADS,
    KEY,
    LINK_NEXT,
    LINK_PREV,
    LINK_ROWS,
    MIX,
    NONE,
    SHIFT,
    alloc_slot,
    kernel,
    release_slot,
    step,
    tier_of,
    where_of,
)
from sim.jit import flush_when_sources_change, njit


@kernel
def overloaded(entries, size):
    """A hashed region of ``size`` cells is too full for ``entries`` above a load of 0.7: linear probing
    stays short (about 2 probes a hit, 6 a miss) and a fleet-sized directory is half the bytes of 0.5."""
    return 10 * entries > 7 * size


@kernel
def _home_key(key: int, shift: int) -> int:
    """Hashed-region home of a holder chain's head: its block id alone."""
    return np.int64((np.uint64(key) * GOLDEN) >> np.uint64(shift))


@kernel
def _home_pair(key: int, t: int, shift: int) -> int:
    """Hashed-region home of a chain member past the head: its (block id, tier)."""
    x = np.uint64(key) * GOLDEN + np.uint64(t + 1)
    x = (x ^ (x >> np.uint64(31))) * MIX
    return np.int64(x >> np.uint64(shift))


@kernel
def slots_needed(filed: int, shift: int) -> int:
    """Free slots that filing ``filed`` slots may take: where members are hashed (``shift`` not 0), each may also
    take a link row for itself and one for its chain's head."""
    return filed if shift == 0 else 3 * filed


@kernel
def _row_prev(slots, s: int) -> int:
    """The previous slot in ``s``'s holder chain, kept in a link row (-1: ``s`` is the head)."""
    r = slots[s, CHAIN]
    return slots[r, LINK_PREV] if r >= 0 else -1


@kernel
def _row_next(slots, s: int) -> int:
    """The next slot in ``s``'s holder chain, kept in a link row (-1: none)."""
    r = slots[s, CHAIN]
    return slots[r, LINK_NEXT] if r >= 0 else -1


@kernel
def _row_is_head(slots, s: int) -> bool:
    """Whether slot ``s`` heads its block's holder chain (its only slot, or the first of several): link rows."""
    r = slots[s, CHAIN]
    return r < 0 or slots[r, LINK_PREV] < 0


@kernel
def _walked(d) -> bool:
    """Whether the directory walks chain members (few tiers: heads direct, no hashed region; chains singly linked
    through ``CHAIN``) rather than hashing them (chains doubly linked in link rows)."""
    return d.aux[SHIFT] == 0


@kernel
def _next(d, s: int) -> int:
    """The next slot in ``s``'s holder chain (-1: none), in either form."""
    r = d.slots[s, CHAIN]
    if r < 0 or _walked(d):
        return r
    return d.slots[r, LINK_NEXT]


@kernel
def _link(d, s: int, prev: int, nxt: int) -> None:
    """Set slot ``s``'s chain neighbours in its link row: taken from the free pool (``room`` keeps enough:
    ``slots_needed``) when it gets a neighbour, given back when it has neither."""
    slots, aux = d.slots, d.aux
    r = slots[s, CHAIN]
    if prev < 0 and nxt < 0:
        if r >= 0:
            release_slot(d, 0, r)
            aux[LINK_ROWS] -= 1
            slots[s, CHAIN] = -1
        return
    if r < 0:
        r = alloc_slot(d, 0)  # (KEY -1 from the pool, tier 0 and where -1: no slot of any tier, filed nowhere)
        aux[LINK_ROWS] += 1
        slots[s, CHAIN] = r
    slots[r, LINK_PREV] = prev
    slots[r, LINK_NEXT] = nxt


@kernel
def _home_of(slots, s: int, shift: int) -> int:
    """Hashed-region home of filed slot ``s`` (a head only where heads are hashed)."""
    if _row_is_head(slots, s):
        return _home_key(slots[s, KEY], shift)
    return _home_pair(slots[s, KEY], tier_of(slots, s), shift)


@kernel
def _cell_of_head(a, key: int) -> int:
    """The directory cell (an index of ``table``) of ``key``'s chain head, or -1 (no tier tracks ``key``)."""
    if a.aux[HEADS]:
        return key if a.table[key] >= 0 else -1
    mask = len(a.table) - 1  # (all hashed: the region is the whole table)
    i = _home_key(key, a.aux[SHIFT])
    while True:
        s = a.table[i]
        if s < 0:
            return -1
        if a.slots[s, KEY] == key and _row_is_head(a.slots, s):
            return i
        i = (i + 1) & mask


@kernel
def _cell_of(a, s: int) -> int:
    """The hashed-region cell (from the region's start) holding slot ``s``."""
    base = a.aux[HEADS]
    mask = len(a.table) - base - 1
    i = _home_of(a.slots, s, a.aux[SHIFT])
    while a.table[base + i] != s:
        i = (i + 1) & mask
    return i


@kernel
def _file_hashed(a, s: int, i: int) -> None:
    """File slot ``s`` in the first empty hashed-region cell from its home ``i`` on (linear probing)."""
    base = a.aux[HEADS]
    mask = len(a.table) - base - 1
    while a.table[base + i] >= 0:
        i = (i + 1) & mask
    a.table[base + i] = s
    a.aux[ENTRIES] += 1


@kernel
def _vacate(a, i: int) -> None:
    """Empty hashed-region cell ``i``; backward-shift deletion keeps every probe sequence unbroken."""
    base = a.aux[HEADS]
    mask = len(a.table) - base - 1
    shift = a.aux[SHIFT]
    j = i
    while True:
        j = (j + 1) & mask
        other = a.table[base + j]
        if other < 0:
            break
        home = _home_of(a.slots, other, shift)
        if (j > i and (home <= i or home > j)) or (j < i and (home <= i and home > j)):
            a.table[base + i] = other
            i = j
    a.table[base + i] = -1
    a.aux[ENTRIES] -= 1


@kernel
def head_slot(a, key: int) -> int:
    """The head of ``key``'s holder chain (a slot of some tier, resident or ghost), or -1."""
    i = _cell_of_head(a, key)
    return a.table[i] if i >= 0 else -1


@kernel
def lookup(a, t: int, key: int) -> int:
    """The slot of ``key`` in tier ``t`` (resident or ghost), or -1: the chain's head (one load with heads
    direct, else a probe), then for another member a probe of the hashed region (or a walk along the chain)."""
    base = a.aux[HEADS]
    shift = a.aux[SHIFT]
    mask = len(a.table) - base - 1
    if shift == 0:  # heads direct, members walked
        s = a.table[key]
        if s < 0:
            a.aux[ABSENT] = key  # no tier tracks key (until a slot is filed)
            return -1
        while tier_of(a.slots, s) != t:
            s = a.slots[s, CHAIN]  # (walked: the next member)
            if s < 0:
                return -1
        return s
    if base:
        s = a.table[key]
        if s < 0:
            a.aux[ABSENT] = key
            return -1
    else:
        i = _home_key(key, shift)
        while True:
            s = a.table[i]
            if s < 0:
                a.aux[ABSENT] = key
                return -1
            if a.slots[s, KEY] == key and _row_is_head(a.slots, s):
                break
            i = (i + 1) & mask
    if tier_of(a.slots, s) == t:
        return s
    if a.slots[s, CHAIN] < 0:
        return -1  # the head is the only member
    i = _home_pair(key, t, shift)
    while True:
        s = a.table[base + i]
        if s < 0:
            return -1
        if a.slots[s, KEY] == key and tier_of(a.slots, s) == t:
            return s
        i = (i + 1) & mask


@kernel
def resident(a, t: int, key: int) -> int:
    """The slot of ``key`` if it is resident in tier ``t`` (not a ghost), else -1."""
    s = lookup(a, t, key)
    if s >= 0 and where_of(a.slots, s) <= 1:
        return s
    return -1


class _Directory(NamedTuple):
    """The arrays the directory functions use, for the rarely taken paths compiled apart
    (a call passing the whole arena costs more than the work)."""

    slots: np.ndarray
    table: np.ndarray
    aux: np.ndarray


@step
def _file_member(slots, table, aux, s: int, h: int, t: int) -> None:
    """File slot ``s`` of tier ``t`` as the member after chain head ``h`` (its block has holders), in link rows."""
    d = _Directory(slots, table, aux)
    n = _row_next(slots, h)
    _link(d, s, h, n)
    _link(d, h, -1, s)
    if n >= 0:
        _link(d, n, s, _row_next(slots, n))
    _file_hashed(d, s, _home_pair(slots[s, KEY], t, aux[SHIFT]))


@step
def _unfile_member(slots, table, aux, s: int) -> None:
    """Drop slot ``s`` of a holder chain of two or more (in link rows) from the directory and the chain (a chain
    left with one member gives that member's link row back too)."""
    d = _Directory(slots, table, aux)
    p, n = _row_prev(slots, s), _row_next(slots, s)
    if p >= 0:  # a member past the head
        _vacate(d, _cell_of(d, s))
        _link(d, p, _row_prev(slots, p), n)
        if n >= 0:
            _link(d, n, p, _row_next(slots, n))
    else:  # the head: its successor takes its cell (and leaves its own, before s's is sought: a shift may move it)
        _vacate(d, _cell_of(d, n))
        if aux[HEADS]:
            table[slots[s, KEY]] = n
        else:
            table[_cell_of(d, s)] = n
        _link(d, n, -1, _row_next(slots, n))
    _link(d, s, -1, -1)


@kernel
def file_slot(a, t: int, s: int, key: int) -> None:
    """Enter slot ``s`` of tier ``t`` (which does not track ``key`` yet) under ``key``: as its block's
    chain head, or as the member after the head."""
    a.slots[s, KEY] = key
    i = -1 if a.aux[ABSENT] == key else _cell_of_head(a, key)
    a.aux[ABSENT] = NONE
    if i >= 0:
        h = a.table[i]
        if _walked(a):  # after the head, singly linked
            a.slots[s, CHAIN] = a.slots[h, CHAIN]
            a.slots[h, CHAIN] = s
        else:
            _file_member(a.slots, a.table, a.aux, s, h, t)
        return
    if a.aux[HEADS]:  # (a slot from the pool has no links: CHAIN -1)
        a.table[key] = s
    else:
        _file_hashed(a, s, _home_key(key, a.aux[SHIFT]))


@kernel
def unfile_slot(a, s: int) -> None:
    """Drop slot ``s`` from the index and from its block's holder chain (the next member becomes the head)."""
    if _walked(a):  # its previous member found from the head, at most one per tier
        key, n = a.slots[s, KEY], a.slots[s, CHAIN]
        h = a.table[key]
        if h == s:
            a.table[key] = n
        else:
            while a.slots[h, CHAIN] != s:
                h = a.slots[h, CHAIN]
            a.slots[h, CHAIN] = n
        a.slots[s, CHAIN] = -1
    elif a.slots[s, CHAIN] < 0:  # its block's only slot
        if a.aux[HEADS]:
            a.table[a.slots[s, KEY]] = -1
        else:
            _vacate(a, _cell_of(a, s))
    else:
        _unfile_member(a.slots, a.table, a.aux, s)


@njit(cache=True, _nrt=False)
def refile(slots, table, heads, shift):
    """Enter every filed slot of the pool (each holding a block id: free slots and LFU's buckets hold -1) in the empty
    directory ``table`` (``heads`` direct cells, 0: none, then a hashed region of hash ``shift``); how many went to
    the hashed region. Read from the pool, not from the directory it replaces, so that one can be let go first: a
    fleet's directory is a GiB, and growing it held both."""
    mask = len(table) - heads - 1
    hashed = 0
    for s in range(len(slots)):
        if slots[s, KEY] >= 0:
            if heads and _row_is_head(slots, s):
                table[slots[s, KEY]] = s
                continue
            i = _home_of(slots, s, shift)
            while table[heads + i] >= 0:
                i = (i + 1) & mask
            table[heads + i] = s
            hashed += 1
    return hashed


@njit(cache=True, _nrt=False)
def members(slots):
    """How many filed slots of the pool are chain members past the head (the hashed region's entries with heads
    direct)."""
    n = 0
    for s in range(len(slots)):
        if slots[s, KEY] >= 0 and not _row_is_head(slots, s):
            n += 1
    return n


@njit(cache=True, _nrt=False)
def holders(a, key, out):
    """Tiers where ``key`` is resident, written to ``out`` (as many as fit); how many there are."""
    n = 0
    s = head_slot(a, key)
    while s >= 0:
        if where_of(a.slots, s) <= 1:
            if n < len(out):
                out[n] = tier_of(a.slots, s)
            n += 1
        s = _next(a, s)
    return n


@njit(cache=True, _nrt=False)
def held_each(a, keys, wanted, out):
    """Whether each of ``keys`` is resident in some tier ``t`` with ``wanted[t]``, into ``out`` (every key answered,
    whatever the others': not a chain)."""
    for i in range(len(keys)):
        held = False
        s = head_slot(a, keys[i])
        while s >= 0:
            if where_of(a.slots, s) <= 1 and wanted[tier_of(a.slots, s)]:
                held = True
                break
            s = _next(a, s)
        out[i] = held


@njit(cache=True, _nrt=False)
def holders_chain(a, keys, first, offsets, tiers, through):
    """CSR holders of ``keys[first:]`` (``offsets[first]`` set) up to the first key held nowhere and not marked in
    ``through`` (as long as ``keys``, or empty: none marked; a key held elsewhere, as by running requests, goes on with
    no holders here): how many keys are answered, or -1 - i when ``tiers`` has no room for key i's."""
    marked = len(through) > 0
    for i in range(first, len(keys)):
        n = offsets[i]
        s = head_slot(a, keys[i])
        while s >= 0:
            if where_of(a.slots, s) <= 1:
                if n == len(tiers):
                    return -1 - i
                tiers[n] = tier_of(a.slots, s)
                n += 1
            s = _next(a, s)
        if n == offsets[i] and not (marked and through[i]):
            return i
        offsets[i + 1] = n
    return len(keys)


flush_when_sources_change(sys.modules[__name__], [Path(__file__).with_name("arena_layout.py")])  # inlines the layout
