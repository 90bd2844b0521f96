"""Which compiled hooks the engine is built against, from the arena's class.

An arena whose kernel tiers all run one policy has that policy's class (``LRUArena``, ...):
the engine compiled for it calls (inlines) the policy's own functions, with no per-access
dispatch. An arena mixing policies (``Arena``) switches on each tier's kind at run time.
"""

from __future__ import annotations

from sim.cache.arena_layout import KIND, step
from sim.cache.policies import arc, belady, fifo, lfu, lru, s3fifo, sieve

KERNELS = {m.KIND: m for m in (lru, fifo, lfu, arc, s3fifo, sieve, belady)}  # kind -> policy module
_BY_ARENA = {m.ARENA: m for m in KERNELS.values()}
LRU, FIFO, LFU, ARC, S3FIFO, SIEVE, BELADY = lru.KIND, fifo.KIND, lfu.KIND, arc.KIND, s3fifo.KIND, sieve.KIND, belady.KIND


def hooks_for(arena_class: type) -> tuple:
    """The compiled (access, insert, readmit, remove, victim, history, carry) hooks for arenas of ``arena_class``:
    the policy's own, or for a mixed arena (``Arena``) the switches below."""
    policy = _BY_ARENA.get(arena_class)
    if policy is None:
        return access_any, insert_any, readmit_any, remove_any, victim_any, history_any, carry_any
    return policy.access, policy.insert, policy.readmit, policy.remove, policy.victim, policy.history, policy.carry


# ------------------------------------------------- mixed arenas: switch per tier (called, not inlined)


@step
def access_any(a, t, s, now):
    k = a.meta[t, KIND]
    if k == LRU:
        lru.access(a, t, s, now)
    elif k == FIFO:
        fifo.access(a, t, s, now)
    elif k == LFU:
        lfu.access(a, t, s, now)
    elif k == ARC:
        arc.access(a, t, s, now)
    elif k == S3FIFO:
        s3fifo.access(a, t, s, now)
    elif k == SIEVE:
        sieve.access(a, t, s, now)
    elif k == BELADY:
        belady.access(a, t, s, now)
    else:
        raise RuntimeError("tier has no compiled policy")


@step
def insert_any(a, t, key, now):
    k = a.meta[t, KIND]
    if k == LRU or k == FIFO:
        return lru.insert(a, t, key, now)
    if k == LFU:
        return lfu.insert(a, t, key, now)
    if k == ARC:
        return arc.insert(a, t, key, now)
    if k == S3FIFO:
        return s3fifo.insert(a, t, key, now)
    if k == SIEVE:
        return sieve.insert(a, t, key, now)
    if k == BELADY:
        return belady.insert(a, t, key, now)
    raise RuntimeError("tier has no compiled policy")


@step
def readmit_any(a, t, s, now):
    k = a.meta[t, KIND]
    if k == ARC:
        arc.readmit(a, t, s, now)
    elif k == S3FIFO:
        s3fifo.readmit(a, t, s, now)
    elif k == SIEVE:
        sieve.readmit(a, t, s, now)
    elif k == BELADY:
        belady.readmit(a, t, s, now)


@step
def remove_any(a, t, s):
    k = a.meta[t, KIND]
    if k == LRU or k == FIFO:
        lru.remove(a, t, s)
    elif k == LFU:
        lfu.remove(a, t, s)
    elif k == ARC:
        arc.remove(a, t, s)
    elif k == S3FIFO:
        s3fifo.remove(a, t, s)
    elif k == SIEVE:
        sieve.remove(a, t, s)
    elif k == BELADY:
        belady.remove(a, t, s)
    else:
        raise RuntimeError("tier has no compiled policy")


@step
def victim_any(a, t, incoming):
    k = a.meta[t, KIND]
    if k == LRU or k == FIFO:
        return lru.victim(a, t, incoming)
    if k == LFU:
        return lfu.victim(a, t, incoming)
    if k == ARC:
        return arc.victim(a, t, incoming)
    if k == S3FIFO:
        return s3fifo.victim(a, t, incoming)
    if k == SIEVE:
        return sieve.victim(a, t, incoming)
    if k == BELADY:
        return belady.victim(a, t, incoming)
    raise RuntimeError("tier has no compiled policy")


@step
def history_any(a, t, s):
    k = a.meta[t, KIND]
    if k == LFU:
        return lfu.history(a, t, s)
    if k == ARC:
        return arc.history(a, t, s)
    if k == S3FIFO:
        return s3fifo.history(a, t, s)
    if k == SIEVE:
        return sieve.history(a, t, s)
    return -1  # LRU, FIFO, Belady: no per-block state beyond order


@step
def carry_any(a, t, s, history):
    k = a.meta[t, KIND]
    if k == LFU:
        lfu.carry(a, t, s, history)
    elif k == ARC:
        arc.carry(a, t, s, history)
    elif k == S3FIFO:
        s3fifo.carry(a, t, s, history)
    elif k == SIEVE:
        sieve.carry(a, t, s, history)
