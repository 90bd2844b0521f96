"""S3-FIFO: Yang et al., "FIFO queues are all you need for cache eviction", SOSP 2023.

A small FIFO S (list 0, 10% of capacity) filters one-hit wonders; blocks reused while in S
move to the main FIFO M (list 1), which reinserts blocks with a non-zero 2-bit frequency
(decrementing it); a ghost FIFO G (list 2, keys only, 90% of capacity) remembers keys
evicted from S so that their return goes straight to M.

Variant: libCacheSim's current ``S3FIFO`` (its S3FIFO.c, 2024; the paper's version is
its ``S3FIFOv0``), so results compare exactly with the oracle: a block moves S→M after
2 hits (move-to-main threshold 2), M is evicted from only when it is over its share
or S is empty, and until the first eviction a miss that finds S full goes to M.
"""

from __future__ import annotations

from sim.cache.arena import append, free_slot, move_to_tail, new_slot, unlink
from sim.cache.arena_layout import COUNT, HEAD, NEXT, NONE, PCAP, SIZE, X0, arena_type, kernel, pinned, where_of
from sim.cache.block_index import lookup
from sim.cache.policies.base import KernelPolicy, register

KIND = 5
SLOT_FIELDS = COUNT + 1  # slot columns used: plus COUNT, the access counter
S3FIFOArena = ARENA = arena_type("S3FIFOArena", __name__)
SMALL, MAIN, GHOST = 0, 1, 2
SMALL_RATIO = 0.10
GHOST_RATIO = 0.90
MOVE_TO_MAIN_THRESHOLD = 2
MAX_FREQ = 3
SMALL_CAP, MAIN_CAP, GHOST_CAP = X0, X0 + 1, X0 + 2
HAS_EVICTED = X0 + 3  # 1 after the first eviction
VICTIM = X0 + 4  # slot chosen by victim() (-1: none)
GHOST_HIT = X0 + 5  # incoming key that victim() took out of the ghost (NONE: none)


def init(meta):
    """The policy's scalars in its tier's ``meta`` row (``PCAP`` is set)."""
    c = meta[PCAP]
    small = max(1, int(c * SMALL_RATIO))
    meta[SMALL_CAP] = small
    meta[MAIN_CAP] = c - small
    meta[GHOST_CAP] = int(c * GHOST_RATIO)
    meta[HAS_EVICTED] = 0
    meta[VICTIM] = -1
    meta[GHOST_HIT] = NONE


@kernel
def access(a, t, s, now):
    if a.slots[s, COUNT] < MAX_FREQ:
        a.slots[s, COUNT] += 1
    a.meta[t, VICTIM] = -1


@kernel
def insert(a, t, key, now):
    s = lookup(a, t, key)
    if key == a.meta[t, GHOST_HIT]:
        s = new_slot(a, t, key)  # victim() already took it out of the ghost
        append(a, t, MAIN, s)
    elif s >= 0:  # a ghost entry: straight to main
        move_to_tail(a, t, MAIN, s)
    else:
        s = new_slot(a, t, key)
        if a.meta[t, HAS_EVICTED] == 0 and a.meta[t, SIZE + SMALL] >= a.meta[t, SMALL_CAP]:
            append(a, t, MAIN, s)
        else:
            append(a, t, SMALL, s)
    a.slots[s, COUNT] = 0
    a.meta[t, VICTIM] = -1
    a.meta[t, GHOST_HIT] = NONE
    return s


@kernel
def readmit(a, t, s, now):
    """Admitted again while resident (a shared tier): its frequency restarts at 0; its queue and
    place stay."""
    a.slots[s, COUNT] = 0
    a.meta[t, VICTIM] = -1
    a.meta[t, GHOST_HIT] = NONE


@kernel
def history(a, t, s):
    """What the policy knows of a block a running request takes (``base``: the take rule): its queue and
    frequency, as ``queue * 4 + frequency`` (queue 0: small, 1: main; frequency 0..3)."""
    return where_of(a.slots, s) * (MAX_FREQ + 1) + a.slots[s, COUNT]


@kernel
def carry(a, t, s, history):
    """A block just inserted as its request frees it: one taken from the main queue joins main (newest); one taken
    from the small queue stays where insertion put it (small, or main on a ghost hit); its frequency is the one it
    had."""
    if history // (MAX_FREQ + 1) == MAIN and where_of(a.slots, s) != MAIN:
        move_to_tail(a, t, MAIN, s)
    a.slots[s, COUNT] = history % (MAX_FREQ + 1)


@kernel
def remove(a, t, s):
    evicted = s == a.meta[t, VICTIM]
    where = where_of(a.slots, s)
    unlink(a, t, s)
    if where == SMALL and evicted and a.meta[t, GHOST_CAP] > 0:
        append(a, t, GHOST, s)
        if a.meta[t, SIZE + GHOST] > a.meta[t, GHOST_CAP]:
            g = a.meta[t, HEAD + GHOST]
            unlink(a, t, g)
            free_slot(a, t, g)
    else:
        free_slot(a, t, s)
    a.meta[t, VICTIM] = -1


@kernel
def _main_victim(a, t):
    """From main's head: a block of frequency 0 is the victim, another is reinserted one lower; a pinned block of
    frequency 0 (a hit of the request replayed, held until its touch) is passed over in place. -1: none left."""
    s = a.meta[t, HEAD + MAIN]
    while s >= 0:
        if a.slots[s, COUNT] > 0:
            after = a.slots[s, NEXT]
            a.slots[s, COUNT] -= 1
            move_to_tail(a, t, MAIN, s)
            s = after if after >= 0 else s  # (the last block: it is next again)
        elif pinned(a.slots, s):
            s = a.slots[s, NEXT]
        else:
            return s
    return -1


@kernel
def _small_victim(a, t):
    """From small's head: a block used enough moves to main, else it is the victim; a pinned one (a hit of the
    request replayed, held until its touch) is passed over in place. -1: none left."""
    s = a.meta[t, HEAD + SMALL]
    while s >= 0:
        after = a.slots[s, NEXT]
        if a.slots[s, COUNT] >= MOVE_TO_MAIN_THRESHOLD:
            move_to_tail(a, t, MAIN, s)
            a.slots[s, COUNT] = 0
        elif not pinned(a.slots, s):
            return s
        s = after
    return -1


@kernel
def victim(a, t, incoming):
    if a.meta[t, VICTIM] < 0:
        g = lookup(a, t, incoming)
        if g >= 0 and where_of(a.slots, g) == GHOST:  # a returning key leaves the ghost before eviction can push it out (libCacheSim's find)
            unlink(a, t, g)
            free_slot(a, t, g)
            a.meta[t, GHOST_HIT] = incoming
        a.meta[t, HAS_EVICTED] = 1
        if a.meta[t, SIZE + MAIN] > a.meta[t, MAIN_CAP] or a.meta[t, SIZE + SMALL] == 0:
            s = _main_victim(a, t)
            if s < 0:  # (every block of main pinned: small, whose moves may give main unpinned blocks)
                s = _small_victim(a, t)
                if s < 0:
                    s = _main_victim(a, t)
        else:
            s = _small_victim(a, t)  # (-1: small emptied into main, or every block left there pinned)
            if s < 0:
                s = _main_victim(a, t)
        if s < 0:  # every block is pinned: no victim
            return -1
        a.meta[t, VICTIM] = s
    return a.meta[t, VICTIM]


@register
class S3FIFO(KernelPolicy):
    name = "s3fifo"
    kind = KIND

    @classmethod
    def slots(cls, capacity: int) -> int:
        return capacity + int(capacity * GHOST_RATIO) + 2  # resident + ghost (+1 while the ghost overflows)
