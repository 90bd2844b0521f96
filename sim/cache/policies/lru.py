"""LRU: evict the least recently used block.

The classic stack algorithm (Mattson, Gecsei, Slutz & Traiger, "Evaluation techniques for
storage hierarchies", IBM Systems Journal 9(2), 1970), whose inclusion property the MRC uses.
One intrusive list, least recent at its head.
"""

from __future__ import annotations

from sim.cache.arena import (
    append,
    first_unpinned,
    free_slot,
    keep_place,
    move_to_tail,
    new_slot,
    no_carry,
    no_history,
    unlink,
)
from sim.cache.arena_layout import BASE_FIELDS, HEAD, arena_type, kernel
from sim.cache.policies.base import KernelPolicy, register

KIND = 1
SLOT_FIELDS = BASE_FIELDS  # slot columns used: the arena's base columns: one list
LRUArena = ARENA = arena_type("LRUArena", __name__)


def init(meta):
    """No scalars of its own."""


@kernel
def access(a, t, s, now):
    move_to_tail(a, t, 0, s)


@kernel
def insert(a, t, key, now):
    s = new_slot(a, t, key)
    append(a, t, 0, s)
    return s


readmit = keep_place  # admitted again while resident (a shared tier): its place stays
history, carry = no_history, no_carry  # recency is its order: a moved block enters most recent, as in LRU of the sum


@kernel
def remove(a, t, s):
    unlink(a, t, s)
    free_slot(a, t, s)


@kernel
def victim(a, t, incoming):
    """The least recent block that is not pinned (``arena_layout.pinned``: a hit of the request replayed, held until
    its touch), -1: every block is pinned."""
    return first_unpinned(a, a.meta[t, HEAD])


@register
class LRU(KernelPolicy):
    name = "lru"
    kind = KIND
