"""FIFO: evict the block admitted earliest; hits do not change the order.

Studied with LRU and MIN in Belady, "A study of replacement algorithms for a virtual-storage
computer", IBM Systems Journal 5(2), 1966 (where its capacity anomaly was later found).
LRU's list without the refresh on a hit. In the serving modes a block a running request takes leaves the list
and re-enters it freed (the take rule, ``base``), so there FIFO orders HBM's free blocks by release, as LRU does.
"""

from __future__ import annotations

from sim.cache.arena_layout import BASE_FIELDS, arena_type, kernel
from sim.cache.policies import lru
from sim.cache.policies.base import KernelPolicy, register

KIND = 2
SLOT_FIELDS = BASE_FIELDS  # slot columns used: the arena's base columns: one list
FIFOArena = ARENA = arena_type("FIFOArena", __name__)
init, insert, readmit, remove, victim = lru.init, lru.insert, lru.readmit, lru.remove, lru.victim
history, carry = lru.history, lru.carry  # no per-block state beyond its order


@kernel
def access(a, t, s, now):
    pass


@register
class FIFO(KernelPolicy):
    name = "fifo"
    kind = KIND
