"""One eviction policy spanning an exclusive hierarchy: the policy decides *what* is cached, the tiers *where*.

Run separately per tier, an exclusive lower tier is a victim cache whose blocks leave at their first hit: its
policy never sees a reuse, and a frequency- or ghost-based policy there degenerates to a FIFO of demotions. Here one
instance of the policy runs over the union of the cache's tiers (its own tier of the arena, ``CacheView.span``, of
capacity the tiers' summed capacities; its ghosts and frequencies live there), and the tiers are positions in the
union's recency order:

- a hit anywhere is the policy's hit (``access``); the block moves to the top tier (a lower tier's is promoted);
- a miss is the policy's insertion (``insert``), placed in the top tier; when the union is full the policy's victim
  leaves from whichever tier holds it (an eviction there, no demotion);
- a tier over its capacity moves its least recently used block one tier down (a demotion), so each tier holds a
  band of LRU positions: the union's most recent blocks in HBM, the next in DRAM, and so on.

The hit ratio is thus exactly the policy's at the summed capacity (the tiers only split the hits among them, as
LRU's stack positions do), and for LRU this is the per-tier exclusive hierarchy, the same hits and tier contents (LRU of
the sum: its victim is the lowest tier's least recent block, which a per-tier hierarchy evicts at the end of the
demotion chain; only where the top tier shrinks under a full union does the span count that eviction in the top
tier), so LRU runs per tier (``multitier.SAME_WITHOUT_SPAN``).
The idea is DEMOTE-ARC's (Gill, "On multi-level exclusive caching: offline optimality and why promotions are better
than demotions", FAST 2008: ARC's T1 and T2 kept as global lists divided among the caches, "the aggregate
hit ratio is precisely equal to that obtained by a single cache of the aggregate size implementing ARC";
https://static.usenix.org/events/fast08/tech/full_papers/gill/gill_html/node28.html), applied to any policy; for LRU
it is DEMOTE (Wong & Wilkes, "My cache or yours? Making storage more exclusive", USENIX ATC 2002), as Gill cites it.

Physical tiers keep their blocks on list 0 of their own tier rows (least recent at the head), through the arena's
list primitives, not their policy's hooks; the policy's hooks run on the span tier only. A running request's take
removes the block from both, keeping the policy's history of it in a slot of the span tier (``TAKEN_WHERE``) until
the request frees it, whichever tier it came from: the policy is the union's. The top tier's capacity follows the
free HBM blocks (``resize``): the union's follows it, the policy's victims leaving when it shrinks.

Used when a cache owns its tiers alone (no other cache shares a lower tier: cache-only replay, one serving instance)
and they all run one compiled policy; otherwise each tier runs its own copy (``operations.use``).
"""

from __future__ import annotations

from numba.extending import overload

from sim.cache.arena import append, first_unpinned, free_slot, move_to_tail, new_slot, no_history, unlink
from sim.cache.arena_layout import (
    BYTES_READ,
    BYTES_WRITTEN,
    CAP,
    DEMOTIONS,
    EVICTIONS,
    HEAD,
    INSERTIONS,
    KEY,
    PREFETCHES,
    PREV,
    PROMOTIONS,
    RESIDENT,
    STAT0,
    TAKEN,
    TAKEN_WHERE,
    kernel,
    key_bytes,
    pinned,
    read_bytes,
    set_pin,
    set_where,
    step,
    where_of,
)
from sim.cache.block_index import lookup as slot_of
from sim.cache.block_index import resident
from sim.cache.policies.dispatch import hooks_for

USE, PREFETCH, DEMOTE, UNREAD = range(4)  # what a use does (``operations.use``)
_OPTIONS = {"_nrt": False}


@kernel
def find(a, c, key):
    """(level, slot) of the topmost tier holding ``key``, or (-1, -1)."""
    for level in range(len(c.tiers)):
        s = resident(a, c.tiers[level], key)
        if s >= 0:
            return level, s
    return -1, -1


@kernel
def untake(a, t, key):
    """The policy history tier ``t`` kept of ``key`` since a running request took it (``take``), now given back
    (its slot freed); -1: none kept."""
    s = slot_of(a, t, key)
    if s < 0 or where_of(a.slots, s) != TAKEN_WHERE:
        return -1
    kept = a.slots[s, PREV]
    free_slot(a, t, s)
    a.meta[t, TAKEN] -= 1
    return kept


@kernel
def _leave(a, c, level, s):
    """The block in slot ``s`` of the tier at ``level`` leaves that tier's placement list."""
    t = c.tiers[level]
    unlink(a, t, s)
    free_slot(a, t, s)
    a.meta[t, RESIDENT] -= 1


@kernel
def _enter(a, c, level, key):
    """``key`` enters the tier at ``level`` as its most recent block, written there."""
    t = c.tiers[level]
    append(a, t, 0, new_slot(a, t, key))
    a.meta[t, RESIDENT] += 1
    a.meta[t, STAT0 + INSERTIONS] += 1
    a.meta[t, STAT0 + BYTES_WRITTEN] += key_bytes(c, level, key)


@kernel
def _below(a, c, level):
    """The first tier below ``level`` with room at all (capacity > 0; HBM fully used by running requests has
    none), or ``len(c.tiers)``."""
    level += 1
    while level < len(c.tiers) and a.meta[c.tiers[level], CAP] <= 0:
        level += 1
    return level


def span_operations(access, insert, remove, victim, history, carry, keeps: bool) -> dict:
    """The spanning operations over one policy's compiled hooks (``keeps``: it keeps per-block history, the take
    rule), as Python functions for numba (``operations._operations``' pattern)."""

    @step
    def evict(a, c, incoming):
        """The policy's victim leaves the union, from whichever tier holds it; False: there is none (every block is
        pinned, held by the request replayed), nothing left."""
        p = c.span
        v = victim(a, p, incoming)
        if v < 0:
            return False
        key = a.slots[v, KEY]
        remove(a, p, v)
        a.meta[p, RESIDENT] -= 1
        level, s = find(a, c, key)
        _leave(a, c, level, s)
        a.meta[c.tiers[level], STAT0 + EVICTIONS] += 1
        return True

    @step
    def settle(a, c):
        """Each tier over its capacity moves its least recent blocks one tier down (the next with room), passing over
        pinned ones (hits of the request replayed, held until their touch; a tier over its capacity holds the block
        that entered it, unpinned)."""
        n = len(c.tiers)
        for level in range(n - 1):
            t = c.tiers[level]
            while a.meta[t, RESIDENT] > max(0, a.meta[t, CAP]):
                s = first_unpinned(a, a.meta[t, HEAD])
                s = s if s >= 0 else a.meta[t, HEAD]  # (not reached: see above)
                key = a.slots[s, KEY]
                _leave(a, c, level, s)
                below = _below(a, c, level)
                if below == n:  # (the union holds at most the tiers' capacities: not reached)
                    a.meta[t, STAT0 + EVICTIONS] += 1
                    remove(a, c.span, resident(a, c.span, key))
                    a.meta[c.span, RESIDENT] -= 1
                else:
                    a.meta[t, STAT0 + DEMOTIONS] += 1
                    _enter(a, c, below, key)

    @step
    def place(a, c, key, origin, mode):
        """``key``, held by the policy and by no tier, enters the top tier with room; ``origin``: the lower tier it
        moves up from (-1: a new block), where it goes back, unwritten and not promoted, when no tier above has
        room."""
        top = _below(a, c, -1)
        if origin >= 0 and top >= origin:
            t = c.tiers[origin]
            append(a, t, 0, new_slot(a, t, key))
            a.meta[t, RESIDENT] += 1
            a.meta[t, STAT0 + (PREFETCHES if mode == PREFETCH else PROMOTIONS)] -= 1
            if mode == PREFETCH:  # (nothing brought up ahead of use: nothing read)
                a.meta[t, STAT0 + BYTES_READ] -= read_bytes(c, key)
            return
        _enter(a, c, top, key)
        settle(a, c)

    def use(a, c, key, now, admit, mode):
        """``operations.use`` for a spanned cache (``USE``, ``PREFETCH`` or ``UNREAD``; a prefetch moves a block up
        and is no use of it); the tier it was found in (-1: a miss, admitted unless ``admit`` is False)."""
        p = c.span
        level, s = find(a, c, key)
        if mode == PREFETCH and level <= 0:
            return level
        kept = untake(a, p, key) if keeps and a.meta[p, TAKEN] > 0 else -1
        if len(c.last_pos):
            c.last_pos[key] = now
        if level == 0:
            access(a, p, resident(a, p, key), now)
            move_to_tail(a, c.tiers[0], 0, s)
            return 0
        if level > 0:
            t = c.tiers[level]
            if mode != PREFETCH:
                access(a, p, resident(a, p, key), now)
            a.meta[t, STAT0 + (PREFETCHES if mode == PREFETCH else PROMOTIONS)] += 1
            if mode != UNREAD:
                a.meta[t, STAT0 + BYTES_READ] += read_bytes(c, key)
            held = pinned(a.slots, s)  # (a prefix replay's hit met again before its own touch: a repeated id)
            _leave(a, c, level, s)
            place(a, c, key, level, mode)
            if held:  # it stays held in the tier it lands in (pinned after the settling, which passes over pins)
                set_pin(a.slots, find(a, c, key)[1], True)
            return level
        if not admit or a.meta[p, CAP] <= 0:
            return -1
        if a.meta[p, RESIDENT] >= a.meta[p, CAP] and not evict(a, c, key):  # every block pinned: not kept
            return -1
        ns = insert(a, p, key, now)
        a.meta[p, RESIDENT] += 1
        if keeps and kept >= 0:  # taken, now freed: seen again
            carry(a, p, ns, kept)
            if mode != PREFETCH:
                access(a, p, ns, now)
        place(a, c, key, -1, mode)
        return -1

    def take(a, c, key):
        """``operations.take`` for a spanned cache: the block leaves its tier and the policy, which keeps its history
        until the request frees it."""
        p = c.span
        level, s = find(a, c, key)
        if level < 0:
            return -1
        if level > 0:
            a.meta[c.tiers[level], STAT0 + PROMOTIONS] += 1
        _leave(a, c, level, s)
        ps = resident(a, p, key)
        kept = history(a, p, ps) if keeps else -1
        remove(a, p, ps)
        a.meta[p, RESIDENT] -= 1
        if kept >= 0 and slot_of(a, p, key) < 0:  # (no ghost entry of it left: see ``operations.take``)
            q = new_slot(a, p, key)
            set_where(a.slots, q, TAKEN_WHERE)
            a.slots[q, PREV] = kept
            a.meta[p, TAKEN] += 1
        return level

    def resize(a, c, capacity):
        """Set the top tier's capacity; the union's follows (the policy's victims leave), then the overflow of
        each tier moves down."""
        a.meta[c.tiers[0], CAP] = max(0, capacity)
        total = 0
        for t in c.tiers:
            total += a.meta[t, CAP]
        a.meta[c.span, CAP] = total
        while a.meta[c.span, RESIDENT] > total and evict(a, c, -1):  # (pins: none outside a prefix replay)
            pass
        settle(a, c)

    return {"use": use, "take": take, "resize": resize}


_BUILT: dict[type, dict] = {}


def _for(arena) -> dict:
    cls = arena.instance_class
    if cls not in _BUILT:
        access, insert, _readmit, remove, victim, history, carry = hooks_for(cls)
        _BUILT[cls] = span_operations(access, insert, remove, victim, history, carry, history is not no_history)
    return _BUILT[cls]


# Stubs the engine's compiled code calls; each overload compiles the policy's own version.
def span_use(a, c, key, now, admit, mode):
    raise NotImplementedError("compiled code only")


def span_take(a, c, key):
    raise NotImplementedError("compiled code only")


def span_resize(a, c, capacity):
    raise NotImplementedError("compiled code only")


@overload(span_use, jit_options=_OPTIONS)
def _span_use_for(a, c, key, now, admit, mode):
    return _for(a)["use"]


@overload(span_take, jit_options=_OPTIONS)
def _span_take_for(a, c, key):
    return _for(a)["take"]


@overload(span_resize, jit_options=_OPTIONS)
def _span_resize_for(a, c, capacity):
    return _for(a)["resize"]

