"""SIEVE: Zhang et al., "SIEVE is Simpler than LRU: an Efficient Turn-Key Eviction Algorithm for Web Caches", NSDI 2024.

New blocks enter at the newest end of a FIFO list; a hit only sets a visited bit. A hand
walks from the oldest block towards the newest, clearing visited bits, and evicts the first
unvisited block; it then rests at that block's newer neighbour, wrapping to the oldest.
"""

from __future__ import annotations

from sim.cache.arena import append, free_slot, new_slot, unlink
from sim.cache.arena_layout import COUNT, HEAD, NEXT, SIZE, X0, arena_type, kernel, pinned
from sim.cache.policies.base import KernelPolicy, register

KIND = 6
SLOT_FIELDS = COUNT + 1  # slot columns used: plus COUNT, the visited bit
SIEVEArena = ARENA = arena_type("SIEVEArena", __name__)
HAND = X0  # slot the hand rests at, -1: none (start from the oldest)


def init(meta):
    """The policy's scalars in its tier's ``meta`` row (``PCAP`` is set)."""
    meta[HAND] = -1


@kernel
def access(a, t, s, now):
    a.slots[s, COUNT] = 1


@kernel
def insert(a, t, key, now):
    s = new_slot(a, t, key)
    append(a, t, 0, s)
    a.slots[s, COUNT] = 0
    return s


@kernel
def readmit(a, t, s, now):
    """Admitted again while resident (a shared tier): its place stays, unvisited as on insertion."""
    a.slots[s, COUNT] = 0


@kernel
def history(a, t, s):
    """What the policy knows of a block a running request takes (``base``: the take rule): its visited bit."""
    return a.slots[s, COUNT]


@kernel
def carry(a, t, s, history):
    """A block just inserted as its request frees it takes on its visited bit (the hand keeps it one more pass)."""
    a.slots[s, COUNT] = history


@kernel
def remove(a, t, s):
    newer = a.slots[s, NEXT]
    unlink(a, t, s)
    if a.meta[t, HAND] == s:
        a.meta[t, HAND] = newer
    free_slot(a, t, s)


@kernel
def victim(a, t, incoming):
    """The first unvisited block from the hand on, clearing visited bits on the way; a pinned block (a hit of the
    request replayed, held until its touch) is passed over as a visited one is. -1: every block is pinned (two
    rounds: one clears every bit, the next would have found an unpinned block)."""
    s = a.meta[t, HAND]
    if s < 0:
        s = a.meta[t, HEAD]
    left = 2 * a.meta[t, SIZE] + 1
    while a.slots[s, COUNT] or pinned(a.slots, s):
        a.slots[s, COUNT] = 0
        s = a.slots[s, NEXT]
        if s < 0:
            s = a.meta[t, HEAD]
        left -= 1
        if left == 0:
            return -1
    a.meta[t, HAND] = s
    return s


@register
class SIEVE(KernelPolicy):
    name = "sieve"
    kind = KIND
