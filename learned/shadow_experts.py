"""The learned policy's classic experts: shadow caches (ids only) fed every access beside the model
expert, so the real cache can follow whichever has had the most hits recently (``learned.kernel``):

- ARC (Megiddo & Modha, FAST 2003; the same cases as ``sim.cache.policies.arc``);
- LRU (where recency is all there is to know, LRU beats ARC, e.g. chat sessions that come back after a
  think time);
- S3-FIFO (Yang et al., SOSP 2023; the cases of ``sim.cache.policies.s3fifo``, whose queue ratios,
  move-to-main threshold and frequency cap it takes: where one-time blocks dominate it beats both).

Each is a family of intrusive doubly linked lists through two fields of the block's row. When an expert
gains or drops a block the real cache holds, the block moves to the *out-list* of the set of experts
not holding it (``expert_gains``/``expert_drops``): the real cache evicts from those lists first.
"""

from __future__ import annotations

import sys
from pathlib import Path

from learned.state_layout import (
    ARC,
    B1,
    B2,
    B_ARC,
    B_ARC_PREV,
    B_LRU_PREV,
    B_MODEL,
    B_OUT,
    B_OUT_PREV,
    B_REAL,
    B_S3,
    B_S3_PREV,
    GHOST,
    LRU,
    MAIN,
    MODEL,
    OUT_LISTS,
    S3FIFO,
    S_ARC_HEAD,
    S_ARC_SIZE,
    S_CAP,
    S_LRU_HEAD,
    S_LRU_SIZE,
    S_OUT_HEAD,
    S_S3_CAPS,
    S_S3_EVICTED,
    S_S3_HEAD,
    S_S3_SIZE,
    SMALL,
    T1,
    T2,
    X_P,
)
from sim.cache.policies import s3fifo
from sim.cache.policies.s3fifo import MAX_FREQ as S3_MAX_FREQ
from sim.cache.policies.s3fifo import MOVE_TO_MAIN_THRESHOLD as S3_TO_MAIN
from sim.jit import flush_when_sources_change, njit

# ----------------------------------------------------------------------------- linked lists


# A family of ``lists`` linked lists keeps its heads, tails and sizes in three runs of ``ints`` (the list
# whose head is ``ints[head]`` has its tail at ``ints[head + lists]`` and its size at ``ints[head + 2 * lists]``);
# a block is linked through two adjacent fields of its row, ``link`` (previous) and ``link + 1`` (next).



@njit(cache=True)
def _append(blocks, ints, key, link, head, lists):
    """Link ``key`` at the tail of a list (the end evicted last)."""
    tail = ints[head + lists]
    blocks[key, link] = tail
    blocks[key, link + 1] = -1
    if tail >= 0:
        blocks[tail, link + 1] = key
    else:
        ints[head] = key
    ints[head + lists] = key
    ints[head + 2 * lists] += 1


@njit(cache=True)
def _prepend(blocks, ints, key, link, head, lists):
    """Link ``key`` at the head of a list (the end evicted first)."""
    first = ints[head]
    blocks[key, link] = -1
    blocks[key, link + 1] = first
    if first >= 0:
        blocks[first, link] = key
    else:
        ints[head + lists] = key
    ints[head] = key
    ints[head + 2 * lists] += 1


@njit(cache=True)
def _unlink(blocks, ints, key, link, head, lists):
    """Take ``key`` out of the list it is linked in."""
    prev, nxt = blocks[key, link], blocks[key, link + 1]
    if prev >= 0:
        blocks[prev, link + 1] = nxt
    else:
        ints[head] = nxt
    if nxt >= 0:
        blocks[nxt, link] = prev
    else:
        ints[head + lists] = prev
    ints[head + 2 * lists] -= 1


@njit(cache=True)
def _arc_push(blocks, ints, lst, key):
    """Append ``key`` at the MRU end of ARC list ``lst``."""
    blocks[key, B_ARC] = lst
    _append(blocks, ints, key, B_ARC_PREV, S_ARC_HEAD + lst - 1, 4)


@njit(cache=True)
def _arc_unlink(blocks, ints, key):
    _unlink(blocks, ints, key, B_ARC_PREV, S_ARC_HEAD + blocks[key, B_ARC] - 1, 4)
    blocks[key, B_ARC] = 0


@njit(cache=True)
def out_unlink(blocks, ints, key):
    """Take ``key`` off the out-list it is on, if any."""
    lst = blocks[key, B_OUT]
    if lst == 0:
        return
    _unlink(blocks, ints, key, B_OUT_PREV, S_OUT_HEAD + lst - 1, OUT_LISTS)
    blocks[key, B_OUT] = 0


@njit(cache=True)
def out_set(blocks, ints, key, lst, front):
    """Put ``key`` (in the real cache) on out-list ``lst`` (bit e: expert e does not hold it; 0: all
    hold it, no list); ``front``: it will be evicted before the others."""
    if blocks[key, B_OUT] == lst:
        return
    out_unlink(blocks, ints, key)
    if lst == 0:
        return
    blocks[key, B_OUT] = lst
    if front:
        _prepend(blocks, ints, key, B_OUT_PREV, S_OUT_HEAD + lst - 1, OUT_LISTS)
    else:
        _append(blocks, ints, key, B_OUT_PREV, S_OUT_HEAD + lst - 1, OUT_LISTS)


@njit(cache=True)
def expert_gains(blocks, ints, e, key):
    """Expert ``e`` now holds ``key``: if the real cache holds it too, one reason fewer to evict it."""
    if blocks[key, B_REAL] >= 0:
        out_set(blocks, ints, key, blocks[key, B_OUT] & ~(1 << e), False)


@njit(cache=True)
def expert_drops(blocks, ints, e, key):
    """Expert ``e`` evicted ``key``: if the real cache holds it, it joins the matching out-list (last)."""
    if blocks[key, B_REAL] >= 0:
        out_set(blocks, ints, key, blocks[key, B_OUT] | (1 << e), False)


@njit(cache=True)
def holds(blocks, e, key):
    """Whether expert ``e`` holds ``key``."""
    if key >= blocks.shape[0]:  # (an id the state has not grown to yet: nobody has seen it)
        return False
    if e == MODEL:
        return blocks[key, B_MODEL] >= 0
    if e == ARC:
        return blocks[key, B_ARC] == T1 or blocks[key, B_ARC] == T2
    if e == LRU:
        return blocks[key, B_LRU_PREV] != -2
    queue = blocks[key, B_S3] >> 2
    return queue == SMALL or queue == MAIN


# ----------------------------------------------------------------------------- experts


@njit(cache=True)
def arc_target(ints, floats, where):
    """ARC's target size of T1 (p) once an access to a block on list ``where`` adapts it: a B1 ghost's hit raises
    it, a B2 ghost's lowers it (paper cases II, III); any other access leaves it."""
    b1, b2 = ints[S_ARC_SIZE + 2], ints[S_ARC_SIZE + 3]
    if where == B1:
        return min(floats[X_P] + max(b2 / b1, 1.0), float(ints[S_CAP]))
    if where == B2:
        return max(floats[X_P] - max(b1 / b2, 1.0), 0.0)
    return floats[X_P]


@njit(cache=True)
def arc_replaces_t1(ints, p, where):
    """Whether ARC's REPLACE takes T1's least recent block (else T2's) for an access to a block on list ``where``,
    at target ``p`` (``arc_target``)."""
    t1 = ints[S_ARC_SIZE]
    return (t1 > 0 and (t1 > p or (where == B2 and t1 == p))) or ints[S_ARC_SIZE + 1] == 0


@njit(cache=True)
def _arc_trim(blocks, ints):
    """ARC's directory before a complete miss (paper case IV): L1 = T1 + B1 at c drops B1's least recent ghost (T1
    alone at c: none), else a full directory (2c) drops B2's."""
    c = ints[S_CAP]
    t1, t2 = ints[S_ARC_SIZE], ints[S_ARC_SIZE + 1]
    b1, b2 = ints[S_ARC_SIZE + 2], ints[S_ARC_SIZE + 3]
    if t1 + b1 >= c:
        if t1 < c and b1 > 0:
            _arc_unlink(blocks, ints, ints[S_ARC_HEAD + 2])
    elif t1 + b1 + t2 + b2 >= 2 * c and b2 > 0:
        _arc_unlink(blocks, ints, ints[S_ARC_HEAD + 3])


@njit(cache=True)
def arc_step(blocks, ints, floats, key):
    """The ARC expert sees an access to ``key``; returns True on a hit."""
    where = blocks[key, B_ARC]
    if where == T1 or where == T2:
        _arc_unlink(blocks, ints, key)
        _arc_push(blocks, ints, T2, key)
        return True
    c = ints[S_CAP]
    if where == B1 or where == B2:
        floats[X_P] = arc_target(ints, floats, where)
    else:
        _arc_trim(blocks, ints)
    t1, t2, b1 = ints[S_ARC_SIZE], ints[S_ARC_SIZE + 1], ints[S_ARC_SIZE + 2]
    if t1 + t2 >= c:
        in_ghost = where == B1 or where == B2
        if not in_ghost and t1 + b1 >= c and t1 >= c:
            victim = ints[S_ARC_HEAD]
            _arc_unlink(blocks, ints, victim)  # case IV.A: no ghost entry
        elif arc_replaces_t1(ints, floats[X_P], where):
            victim = ints[S_ARC_HEAD]
            _arc_unlink(blocks, ints, victim)
            _arc_push(blocks, ints, B1, victim)
        else:
            victim = ints[S_ARC_HEAD + 1]
            _arc_unlink(blocks, ints, victim)
            _arc_push(blocks, ints, B2, victim)
        expert_drops(blocks, ints, ARC, victim)
    if where == B1 or where == B2:
        _arc_unlink(blocks, ints, key)
        _arc_push(blocks, ints, T2, key)
    else:
        _arc_push(blocks, ints, T1, key)
    expert_gains(blocks, ints, ARC, key)
    return False


@njit(cache=True)
def lru_step(blocks, ints, key):
    """The LRU expert sees an access to ``key``; returns True on a hit."""
    hit = blocks[key, B_LRU_PREV] != -2
    if hit:
        _unlink(blocks, ints, key, B_LRU_PREV, S_LRU_HEAD, 1)
    elif ints[S_LRU_SIZE] >= ints[S_CAP]:
        victim = ints[S_LRU_HEAD]
        _unlink(blocks, ints, victim, B_LRU_PREV, S_LRU_HEAD, 1)
        blocks[victim, B_LRU_PREV] = -2
        expert_drops(blocks, ints, LRU, victim)
    _append(blocks, ints, key, B_LRU_PREV, S_LRU_HEAD, 1)
    if not hit:
        expert_gains(blocks, ints, LRU, key)
    return hit


@njit(cache=True)
def _s3_push(blocks, ints, queue, key):
    """Append ``key`` at the tail of S3-FIFO queue ``queue`` (its frequency restarts at 0)."""
    blocks[key, B_S3] = queue << 2
    _append(blocks, ints, key, B_S3_PREV, S_S3_HEAD + queue - 1, 3)


@njit(cache=True)
def _s3_unlink(blocks, ints, key):
    _unlink(blocks, ints, key, B_S3_PREV, S_S3_HEAD + (blocks[key, B_S3] >> 2) - 1, 3)
    blocks[key, B_S3] = 0


@njit(cache=True)
def _s3_evict(blocks, ints):
    """The S3-FIFO expert frees one place (the cases of ``sim.cache.policies.s3fifo.victim``/``remove``)."""
    while True:
        if ints[S_S3_SIZE + MAIN - 1] > ints[S_S3_CAPS + MAIN - 1] or ints[S_S3_SIZE + SMALL - 1] == 0:
            key = ints[S_S3_HEAD + MAIN - 1]
            while blocks[key, B_S3] & 3:  # reinserted with its frequency decremented
                freq = (blocks[key, B_S3] & 3) - 1
                _s3_unlink(blocks, ints, key)
                _s3_push(blocks, ints, MAIN, key)
                blocks[key, B_S3] |= freq
                key = ints[S_S3_HEAD + MAIN - 1]
            _s3_unlink(blocks, ints, key)
            expert_drops(blocks, ints, S3FIFO, key)
            return
        while ints[S_S3_SIZE + SMALL - 1] > 0:  # reused while in the small queue: on to main (frequency 0)
            key = ints[S_S3_HEAD + SMALL - 1]
            freq = blocks[key, B_S3] & 3
            _s3_unlink(blocks, ints, key)
            if freq >= S3_TO_MAIN:
                _s3_push(blocks, ints, MAIN, key)
                continue
            if ints[S_S3_CAPS + GHOST - 1] > 0:
                _s3_push(blocks, ints, GHOST, key)
                if ints[S_S3_SIZE + GHOST - 1] > ints[S_S3_CAPS + GHOST - 1]:
                    _s3_unlink(blocks, ints, ints[S_S3_HEAD + GHOST - 1])
            expert_drops(blocks, ints, S3FIFO, key)
            return


@njit(cache=True)
def s3_step(blocks, ints, key):
    """The S3-FIFO expert sees an access to ``key``; returns True on a hit."""
    state = blocks[key, B_S3]
    queue = state >> 2
    if queue == SMALL or queue == MAIN:
        if state & 3 < S3_MAX_FREQ:
            blocks[key, B_S3] = state + 1
        return True
    if queue == GHOST:  # a returning key leaves the ghost before any eviction (libCacheSim's find)
        _s3_unlink(blocks, ints, key)
    if ints[S_S3_SIZE + SMALL - 1] + ints[S_S3_SIZE + MAIN - 1] >= ints[S_CAP]:
        ints[S_S3_EVICTED] = 1
        _s3_evict(blocks, ints)
    if queue == GHOST:
        _s3_push(blocks, ints, MAIN, key)
    elif ints[S_S3_EVICTED] == 0 and ints[S_S3_SIZE + SMALL - 1] >= ints[S_S3_CAPS + SMALL - 1]:
        _s3_push(blocks, ints, MAIN, key)
    else:
        _s3_push(blocks, ints, SMALL, key)
    expert_gains(blocks, ints, S3FIFO, key)
    return False


# ----------------------------------------------------------------------------- the tier's own moves


@njit(cache=True)
def readmit(blocks, ints, floats, e, key):
    """The tier admits ``key`` again while it holds it (a lower tier shared by instances receives another one's copy):
    expert ``e`` (ARC, LRU or S3-FIFO) does as its policy's ``readmit`` where it holds the block too (``sim.cache.
    policies``: LRU keeps its place, ARC trims its directory as for a complete miss and keeps its place, S3-FIFO's
    frequency restarts at 0), and inserts it as its policy would where it does not (it had evicted it: to that
    policy's tier the block is new). No lookup: nothing is scored."""
    if holds(blocks, e, key):
        if e == ARC:
            _arc_trim(blocks, ints)
        elif e == S3FIFO:
            blocks[key, B_S3] = (blocks[key, B_S3] >> 2) << 2
    elif e == ARC:
        arc_step(blocks, ints, floats, key)
    elif e == LRU:
        lru_step(blocks, ints, key)
    else:
        s3_step(blocks, ints, key)


@njit(cache=True)
def leave(blocks, ints, e, key):
    """``key`` leaves the tier other than as its victim (promoted up out of an exclusive tier): expert ``e`` (ARC, LRU
    or S3-FIFO) drops it as its policy's ``remove`` drops a block that is not its victim: no ghost. One that does not
    hold it (evicted, or a ghost) is left as it is."""
    if not holds(blocks, e, key):
        return
    if e == ARC:
        _arc_unlink(blocks, ints, key)
    elif e == LRU:
        _unlink(blocks, ints, key, B_LRU_PREV, S_LRU_HEAD, 1)
        blocks[key, B_LRU_PREV] = -2
    else:
        _s3_unlink(blocks, ints, key)


# the compiled steps inline the layout and S3-FIFO's thresholds from its policy module
flush_when_sources_change(sys.modules[__name__], [Path(__file__).with_name("state_layout.py"), Path(s3fifo.__file__)])
