"""Belady's MIN (Belady, "A study of replacement algorithms for a virtual-storage computer", 1966).

Exact and clairvoyant: evicts the resident block whose next use is farthest in the
future; blocks never used again go first (ties: the smallest block id). Needs
``next_use[t]``: the stream index of the next access to the block accessed at index t
(``NEVER`` if none), built once (``sim.cache.access.next_use_index``) and held by the
arena (``future``). Like libCacheSim's Belady it always admits on a miss. A heap of the
resident blocks keeps every hook O(log n).
"""

from __future__ import annotations

from sim.cache.arena import (PRIO, WHERE, arena_type, free_slot, heap_fix, heap_push, heap_remove, heap_top, kernel,
                             new_slot)
from sim.cache.policies.base import KernelPolicy, register

KIND = 7
BeladyArena = ARENA = arena_type("BeladyArena", __name__)


def init(meta):
    """No scalars of its own."""


@kernel
def access(a, t, s, now):
    a.slots[s, PRIO] = a.future[now]
    heap_fix(a, t, s)


@kernel
def insert(a, t, key, now):
    s = new_slot(a, t, key)
    a.slots[s, WHERE] = 0
    a.slots[s, PRIO] = a.future[now]
    heap_push(a, t, s)
    return s


readmit = access  # admitted again while resident (a shared tier): its next use is the new one


@kernel
def remove(a, t, s):
    heap_remove(a, t, s)
    free_slot(a, t, s)


@kernel
def victim(a, t, incoming):
    return heap_top(a, t)


@register
class Belady(KernelPolicy):
    name = "belady"
    kind = KIND
    needs_future = True
