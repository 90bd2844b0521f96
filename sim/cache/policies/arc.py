"""ARC: Megiddo & Modha, "ARC: A Self-Tuning, Low Overhead Replacement Cache", FAST 2003.

T1/T2 (lists 0, 1) hold resident blocks seen once / more than once; B1/B2 (lists 2, 3) are
ghost lists of recently evicted keys whose hits adapt the target size ``p`` of T1. Follows
the paper's Fig. 4; the adaptation for an incoming key runs once, before its victim is
chosen (REPLACE depends on it) or at its insertion when no eviction is needed. ``c`` is the
capacity the policy was built with (the paper's cache size), also when the tier shrinks.
"""

from __future__ import annotations

from sim.cache.arena import append, first_unpinned, free_slot, move_to_tail, new_slot, unlink
from sim.cache.arena_layout import BASE_FIELDS, HEAD, KEY, NONE, PCAP, SIZE, X0, arena_type, kernel, where_of
from sim.cache.block_index import lookup
from sim.cache.policies.base import KernelPolicy, register

KIND = 4
SLOT_FIELDS = BASE_FIELDS  # slot columns used: the arena's base columns: four lists
ARCArena = ARENA = arena_type("ARCArena", __name__)
T1, T2, B1, B2 = 0, 1, 2, 3
PREPARED = X0  # key whose adaptation ran (NONE: none since the last insertion)
VICTIM = X0 + 1  # slot chosen by victim() (-1: none)
TO_GHOST = X0 + 2  # 1: that victim goes to its ghost list when removed
PREPARED_SLOT = X0 + 3  # the prepared key's slot (a ghost entry), -1: none


def init(meta):
    """The policy's scalars in its tier's ``meta`` row (``PCAP`` is set)."""
    meta[PREPARED] = NONE
    meta[VICTIM] = -1
    meta[TO_GHOST] = 0
    meta[PREPARED_SLOT] = -1


@kernel
def _prepare(a, t, key):
    """Adapt p on a ghost hit, or trim the ghost directory on a complete miss (paper cases II-IV).

    Returns the key's ghost slot (-1: none), remembered until the key is inserted: no ghost
    entry is freed in between (only a later preparation trims).
    """
    if a.meta[t, PREPARED] == key:
        return a.meta[t, PREPARED_SLOT]
    a.meta[t, PREPARED] = key
    s = lookup(a, t, key)
    if s >= 0 and where_of(a.slots, s) <= T2:  # resident: not a ghost hit
        s = -1
    a.meta[t, PREPARED_SLOT] = s
    c = a.meta[t, PCAP]
    t1, t2, b1, b2 = a.meta[t, SIZE + T1], a.meta[t, SIZE + T2], a.meta[t, SIZE + B1], a.meta[t, SIZE + B2]
    where = where_of(a.slots, s) if s >= 0 else -1
    if where == B1:
        a.real[t] = min(a.real[t] + max(b2 / b1, 1.0), float(c))
    elif where == B2:
        a.real[t] = max(a.real[t] - max(b1 / b2, 1.0), 0.0)
    else:
        l1 = t1 + b1
        if l1 >= c:
            if t1 < c and b1:
                g = a.meta[t, HEAD + B1]
                unlink(a, t, g)
                free_slot(a, t, g)
        elif l1 + t2 + b2 >= 2 * c and b2:
            g = a.meta[t, HEAD + B2]
            unlink(a, t, g)
            free_slot(a, t, g)
    return s


@kernel
def access(a, t, s, now):
    move_to_tail(a, t, T2, s)


@kernel
def insert(a, t, key, now):
    s = _prepare(a, t, key)
    if s >= 0:  # a ghost hit (B1 or B2) returns to T2
        move_to_tail(a, t, T2, s)
    else:
        s = new_slot(a, t, key)
        append(a, t, T1, s)
    a.meta[t, PREPARED] = NONE
    a.meta[t, VICTIM] = -1
    return s


@kernel
def readmit(a, t, s, now):
    """Admitted again while resident (a shared tier): the adaptation for the key runs as for an
    insertion (a complete miss: the ghost directory may be trimmed); its place stays."""
    _prepare(a, t, a.slots[s, KEY])
    a.meta[t, PREPARED] = NONE
    a.meta[t, VICTIM] = -1


@kernel
def history(a, t, s):
    """What the policy knows of a block a running request takes (``base``: the take rule): T1 (seen once) or T2."""
    return where_of(a.slots, s)


@kernel
def carry(a, t, s, history):
    """A block just inserted as its request frees it: one its history puts in T2 (seen more than once) joins T2,
    most recent; T1's stays where insertion put it (T1, or T2 on a ghost hit of this tier)."""
    if history == T2:
        move_to_tail(a, t, T2, s)


@kernel
def remove(a, t, s):
    ghost = a.meta[t, TO_GHOST] == 1 and s == a.meta[t, VICTIM]
    where = where_of(a.slots, s)
    unlink(a, t, s)
    if ghost:
        append(a, t, B1 if where == T1 else B2, s)
    else:
        free_slot(a, t, s)
    a.meta[t, VICTIM] = -1


@kernel
def victim(a, t, incoming):
    g = _prepare(a, t, incoming)
    where = where_of(a.slots, g) if g >= 0 else -1
    in_ghost = where == B1 or where == B2
    c = a.meta[t, PCAP]
    t1 = a.meta[t, SIZE + T1]
    p = a.real[t]
    # (pinned blocks, hits of the request replayed held until their touch, are passed over: the list's least recent
    # unpinned block, or the other list's where every block of the list is pinned; -1: every block is)
    if not in_ghost and t1 + a.meta[t, SIZE + B1] >= c and t1 >= c:
        s, to_ghost = first_unpinned(a, a.meta[t, HEAD + T1]), 0  # case IV.A: T1 is the whole cache; no ghost
    elif (t1 > 0 and (t1 > p or (where == B2 and t1 == p))) or a.meta[t, SIZE + T2] == 0:
        s, to_ghost = first_unpinned(a, a.meta[t, HEAD + T1]), 1  # REPLACE: LRU of T1 -> B1
        if s < 0:
            s = first_unpinned(a, a.meta[t, HEAD + T2])
    else:
        s, to_ghost = first_unpinned(a, a.meta[t, HEAD + T2]), 1  # REPLACE: LRU of T2 -> B2
        if s < 0:
            s = first_unpinned(a, a.meta[t, HEAD + T1])
    a.meta[t, VICTIM] = s
    a.meta[t, TO_GHOST] = to_ghost
    return s


@register
class ARC(KernelPolicy):
    name = "arc"
    kind = KIND

    @classmethod
    def slots(cls, capacity: int) -> int:
        return 2 * capacity + 2  # |T1| + |T2| + |B1| + |B2| <= 2c
