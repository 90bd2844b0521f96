"""LFU with recency tie-break: evict the least frequently used block, the least recent among equals.

O(1) frequency buckets (Shah, Mitra & Matani, "An O(1) algorithm for implementing the LFU
cache eviction scheme", 2010): one bucket per use count held by some block, linked in
ascending count; each bucket lists its blocks in the order they reached that count. A
block's count starts at 1 when admitted and is forgotten when it leaves the tier.

Buckets are slots of the tier's pool that are not in the directory (``where == BUCKET``):
a bucket's ``count`` is its use count, ``prev``/``next`` link the buckets, ``prio`` and
``hpos`` hold its first and last block. A block's ``prio`` names its bucket and its
``prev``/``next`` link it within the bucket.
"""

from __future__ import annotations

from sim.cache.arena import alloc_slot, first_unpinned, free_slot, keep_place, new_slot, release_slot
from sim.cache.arena_layout import COUNT, HPOS, NEXT, PREV, PRIO, X0, arena_type, kernel, set_where
from sim.cache.policies.base import KernelPolicy, register

KIND = 3
SLOT_FIELDS = HPOS + 1  # slot columns used: plus COUNT, PRIO, HPOS: the frequency buckets
LFUArena = ARENA = arena_type("LFUArena", __name__)
BUCKET = 3  # ``where`` of a bucket slot
LOWEST = X0  # the bucket of the lowest count (-1: none)


def init(meta):
    """The policy's scalars in its tier's ``meta`` row."""
    meta[LOWEST] = -1


@kernel
def _new_bucket(a, t, count, after):
    """A bucket for ``count``, linked after bucket ``after`` (-1: first)."""
    b = alloc_slot(a, t)
    set_where(a.slots, b, BUCKET)
    a.slots[b, COUNT] = count
    a.slots[b, PRIO] = -1
    a.slots[b, HPOS] = -1
    nxt = a.slots[after, NEXT] if after >= 0 else a.meta[t, LOWEST]
    a.slots[b, PREV] = after
    a.slots[b, NEXT] = nxt
    if after >= 0:
        a.slots[after, NEXT] = b
    else:
        a.meta[t, LOWEST] = b
    if nxt >= 0:
        a.slots[nxt, PREV] = b
    return b


@kernel
def _join(a, t, b, s):
    """Put block ``s`` last in bucket ``b``."""
    last = a.slots[b, HPOS]
    a.slots[s, PRIO] = b
    a.slots[s, PREV] = last
    a.slots[s, NEXT] = -1
    if last >= 0:
        a.slots[last, NEXT] = s
    else:
        a.slots[b, PRIO] = s
    a.slots[b, HPOS] = s
    a.slots[s, COUNT] = a.slots[b, COUNT]


@kernel
def _leave(a, t, s):
    """Take block ``s`` out of its bucket; drop the bucket if it is left empty."""
    b = a.slots[s, PRIO]
    p, n = a.slots[s, PREV], a.slots[s, NEXT]
    if p >= 0:
        a.slots[p, NEXT] = n
    else:
        a.slots[b, PRIO] = n
    if n >= 0:
        a.slots[n, PREV] = p
    else:
        a.slots[b, HPOS] = p
    if a.slots[b, PRIO] < 0:
        bp, bn = a.slots[b, PREV], a.slots[b, NEXT]
        if bp >= 0:
            a.slots[bp, NEXT] = bn
        else:
            a.meta[t, LOWEST] = bn
        if bn >= 0:
            a.slots[bn, PREV] = bp
        release_slot(a, t, b)


@kernel
def access(a, t, s, now):
    b = a.slots[s, PRIO]
    nb = a.slots[b, NEXT]
    if nb < 0 or a.slots[nb, COUNT] != a.slots[b, COUNT] + 1:
        nb = _new_bucket(a, t, a.slots[b, COUNT] + 1, b)
    _leave(a, t, s)
    _join(a, t, nb, s)


@kernel
def insert(a, t, key, now):
    s = new_slot(a, t, key)
    set_where(a.slots, s, 0)
    b = a.meta[t, LOWEST]
    if b < 0 or a.slots[b, COUNT] != 1:
        b = _new_bucket(a, t, 1, -1)
    _join(a, t, b, s)
    return s


readmit = keep_place  # admitted again while resident (a shared tier): count and place stay


@kernel
def history(a, t, s):
    """What the policy knows of a block a running request takes (``base``: the take rule): its use count."""
    return a.slots[s, COUNT]


@kernel
def carry(a, t, s, history):
    """A block just inserted (count 1) as its request frees it takes on the count it was taken with: it joins that
    count's bucket, last (found by walking up from the lowest bucket: O(distinct counts below it in this tier), the
    one hook here that is not O(1); a tier's distinct counts are few: a count is a block's uses while cached)."""
    if history <= 1:
        return
    _leave(a, t, s)
    prev, b = -1, a.meta[t, LOWEST]
    while b >= 0 and a.slots[b, COUNT] < history:
        prev, b = b, a.slots[b, NEXT]
    if b < 0 or a.slots[b, COUNT] != history:
        b = _new_bucket(a, t, history, prev)
    _join(a, t, b, s)


@kernel
def remove(a, t, s):
    _leave(a, t, s)
    free_slot(a, t, s)


@kernel
def victim(a, t, incoming):
    """The least recent block of the lowest count that is not pinned (a hit of the request replayed, held until its
    touch), -1: every block is pinned."""
    b = a.meta[t, LOWEST]
    while b >= 0:
        s = first_unpinned(a, a.slots[b, PRIO])
        if s >= 0:
            return s
        b = a.slots[b, NEXT]
    return -1


@register
class LFU(KernelPolicy):
    name = "lfu"
    kind = KIND

    @classmethod
    def slots(cls, capacity: int) -> int:
        return 2 * capacity + 2  # blocks, and at most one bucket per block
