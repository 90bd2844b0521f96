"""The multi-tier operations over one policy's compiled hooks (use, take, resize, hook), built once per policy
(``_operations``) and chosen at compile time from the arena's class (``policies/dispatch.py``): the entry points of
``sim.cache.engine`` call the stubs below (``_use``, ``_take``, ...), and each overload compiles the policy's own
version, so an entry point compiles once per policy and never dispatches per access.
"""

from __future__ import annotations

from numba.extending import overload

from sim.cache.arena import new_slot, no_history
from sim.cache.arena_layout import (
    BYTES_READ,
    BYTES_WRITTEN,
    CAP,
    DEMOTIONS,
    EVICTIONS,
    INSERTIONS,
    KEY,
    KIND,
    PREFETCHES,
    PREV,
    PROMOTIONS,
    RESIDENT,
    STAT0,
    TAKEN,
    TAKEN_WHERE,
    USERS,
    kernel,
    key_bytes,
    pinned,
    read_bytes,
    set_pin,
    set_where,
    step,
)
from sim.cache.block_index import lookup as slot_of
from sim.cache.block_index import resident
from sim.cache.policies.dispatch import BELADY, hooks_for
from sim.cache.span import DEMOTE, PREFETCH, UNREAD, span_resize, span_take, span_use
from sim.cache.span import find as _find
from sim.cache.span import untake as _untake

HOOK_ACCESS, HOOK_INSERT, HOOK_REMOVE, HOOK_VICTIM, HOOK_HISTORY, HOOK_CARRY, HOOK_PIN = range(7)
HIT, MISS, KEPT, EVICTED = 0, -1, -2, -3  # what ``use_single`` did
_OPTIONS = {"_nrt": False}


@kernel
def _pin_to(a, pin_at, s):
    """A held block's pin moves from slot ``pin_at`` (-1: none, its slot was freed as it moved up) to its new copy
    ``s``, the one a lookup finds now (an inclusive tier's copies below are not held, as in ``engine.replay``); ``s``."""
    if pin_at >= 0:
        set_pin(a.slots, pin_at, False)
    set_pin(a.slots, s, True)
    return s


def _operations(access, insert, readmit, remove, victim, history, carry):
    """The multi-tier operations over one policy's compiled hooks: Python functions that the
    overloads below hand to numba. The hot path (a use, an admission) inlines the hooks; the
    other operations call a compiled copy (inlining every call site would multiply compile time).
    ``keeps``: the policy keeps per-block history (``policies/base``: the take rule), a constant to numba, so
    LRU's, FIFO's and Belady's operations compile without the take rule's code."""
    access_c, insert_c, readmit_c, remove_c, victim_c, history_c, carry_c = (
        step(f.py_func) for f in (access, insert, readmit, remove, victim, history, carry))
    keeps = history is not no_history

    def use(a, c, key, now, admit, mode):
        """``USE`` ``key`` at stream position ``now``: refresh it, promote it (moved, or copied when
        inclusive), or admit it to the top tier (every tier when inclusive). ``PREFETCH``: only
        bring it up from a lower tier ahead of use (counted as a prefetch, not a promotion).
        ``DEMOTE``: admit it to the second tier (it has left the top one). ``UNREAD``: as ``USE``, but nothing
        is read out of a lower tier's copy (it moves or is copied up as on a use): a block whose content is in
        the top tier already (a running request freed it), or a prefix replay's touch (its lookup counted the
        reads of the hits it serves; the blocks past them are recomputed, not read).
        Returns the tier it was found in (-1: a miss, admitted unless ``admit`` is False).

        Admitting to tier i: its victim is demoted to tier i+1 (exclusive) or evicted (inclusive,
        or the last tier). A block a running request took out of the top tier (``take``) enters it again with the
        history the policy kept of it, then this use (a prefetch: no use yet). This is the one place the policy's
        hooks are inlined (compile time grows with every inlined copy)."""
        if c.span >= 0:  # one policy over the tiers (``sim.cache.span``)
            return span_use(a, c, key, now, admit, mode)
        first, stop, stride = 0, 0, 1  # the tiers to admit the block to
        level = -1
        origin = -1  # exclusive move up: the tier the block leaves, where it goes back if no tier above has room
        # the block is held there (pinned: a prefix replay's hit met again before its own touch, a repeated id): the pin
        # goes with it, to the copy a lookup finds (``pin_at``: the slot pinned, -1: none yet; ``engine.replay``)
        held = False
        pin_at = -1
        kept = -1  # the top tier's history of the block, kept since a running request took it (-1: none)
        if mode == DEMOTE:
            first, stop = 1, 2
        else:
            level, s = _find(a, c, key)
            if mode == PREFETCH and level <= 0:
                return level
            if keeps and a.meta[c.tiers[0], TAKEN] > 0:
                kept = _untake(a, c.tiers[0], key)
            if len(c.last_pos):
                c.last_pos[key] = now
            if level >= 0:
                t = c.tiers[level]
                if level == 0 or c.inclusive:  # a hit, or a copy kept below: refresh it there
                    access(a, t, s, now)
                if c.inclusive and mode != PREFETCH:
                    # the copies below learn the block's new next use when their policy ranks blocks by it
                    # (Belady): left at the use that put them there, it falls into the past and the farthest-
                    # next-use victim never picks them, so stale copies pin the tier (a block never used again
                    # outlives one needed next). Recency policies keep their tier's view: a hit above is no use.
                    for below in range(level + 1, len(c.tiers)):
                        tb = c.tiers[below]
                        if a.meta[tb, KIND] == BELADY:
                            sb = resident(a, tb, key)
                            if sb >= 0:
                                access(a, tb, sb, now)
                if level > 0:
                    a.meta[t, STAT0 + (PREFETCHES if mode == PREFETCH else PROMOTIONS)] += 1
                    if mode != UNREAD:
                        a.meta[t, STAT0 + BYTES_READ] += read_bytes(c, key)
                    held = pinned(a.slots, s)
                    if c.inclusive:  # copy up: write to every tier above, nearest first
                        first, stop, stride = level - 1, -1, -1
                        pin_at = s
                    else:  # move up
                        remove_c(a, t, s)
                        a.meta[t, RESIDENT] -= 1
                        stop = 1
                        origin = level
            elif admit:  # the top tier (exclusive) or every tier, top down (inclusive: write-through)
                stop = len(c.tiers) if c.inclusive else 1
        n = len(c.tiers)
        copied = False  # (inclusive copy up: whether any tier above took the block)
        for target in range(first, stop, stride):
            inserting, at, when = key, target, now
            while True:  # admit ``inserting`` to tier ``at``; a victim moves on down
                t = c.tiers[at]
                if at == origin and inserting == key:  # no tier above had room: back where it was (the room it
                    ns = insert(a, t, inserting, when)  # left), nothing moved or written
                    a.meta[t, RESIDENT] += 1
                    if held:  # (a fresh slot: the pin goes with the block, held until its own touch)
                        set_pin(a.slots, ns, True)
                    a.meta[t, STAT0 + (PREFETCHES if mode == PREFETCH else PROMOTIONS)] -= 1
                    if mode == PREFETCH:  # (nothing brought up ahead of use: nothing read)
                        a.meta[t, STAT0 + BYTES_READ] -= read_bytes(c, key)
                    break
                if a.meta[t, CAP] <= 0:  # e.g. HBM fully used by running requests: nothing can be kept here
                    if c.inclusive or at + 1 == n:
                        break
                    at += 1
                    continue
                s = resident(a, t, inserting) if a.meta[t, USERS] > 1 else -1
                if s >= 0:  # a shared tier already holding another instance's copy: the same content, so
                    readmit_c(a, t, s, when)  # nothing enters, is written or need make room (the policy sees it)
                    copied = copied or inserting == key
                    if held and inserting == key:
                        pin_at = _pin_to(a, pin_at, s)
                    break
                demoted = -1
                has_victim = a.meta[t, RESIDENT] >= a.meta[t, CAP]
                v = victim(a, t, inserting) if has_victim else -1
                if has_victim and v < 0:  # every block here is pinned (held by the request replayed): no room here
                    if c.inclusive or at + 1 == n:
                        break
                    at += 1
                    continue
                copied = copied or inserting == key
                if has_victim:
                    demoted = a.slots[v, KEY]
                    remove(a, t, v)
                    a.meta[t, RESIDENT] -= 1
                ns = insert(a, t, inserting, when)
                if held and inserting == key:  # (a held block moved or copied up: its pin goes with it)
                    pin_at = _pin_to(a, pin_at, ns)
                if keeps and kept >= 0 and at == 0 and inserting == key:  # taken, now freed: seen again
                    carry_c(a, t, ns, kept)
                    if mode != PREFETCH:
                        access_c(a, t, ns, when)
                a.meta[t, RESIDENT] += 1
                a.meta[t, STAT0 + INSERTIONS] += 1
                a.meta[t, STAT0 + BYTES_WRITTEN] += key_bytes(c, at, inserting)
                if not has_victim:
                    break
                if c.inclusive or at + 1 == n:
                    a.meta[t, STAT0 + EVICTIONS] += 1
                    break
                a.meta[t, STAT0 + DEMOTIONS] += 1
                inserting = demoted
                at += 1
                if len(c.last_pos) and c.last_pos[inserting] >= 0:  # its last use, by any cache over the arena
                    when = c.last_pos[inserting]
        if c.inclusive and level > 0 and mode != DEMOTE and not copied:  # no tier above had room for a copy: it
            t = c.tiers[level]  # stays below, not promoted (a use still read it; a prefetch read nothing ahead)
            a.meta[t, STAT0 + (PREFETCHES if mode == PREFETCH else PROMOTIONS)] -= 1
            if mode == PREFETCH:
                a.meta[t, STAT0 + BYTES_READ] -= read_bytes(c, key)
        return level

    def use_single(a, t, key, now, admit):
        """``use`` on a cache of the one tier ``t``, which no other cache uses (cache-only's usual case):
        the same hooks and order, without the tier walk, the demotion chain and the counters, which
        the caller keeps. Returns ``HIT``, ``MISS`` (not admitted), ``KEPT`` (admitted) or ``EVICTED``
        (admitted in a victim's place)."""
        s = resident(a, t, key)
        if s >= 0:
            access(a, t, s, now)
            return HIT
        if not admit or a.meta[t, CAP] <= 0:
            return MISS
        outcome = KEPT
        if a.meta[t, RESIDENT] >= a.meta[t, CAP]:  # (no block is pinned: a plain replay pins none)
            remove(a, t, victim(a, t, key))
            a.meta[t, RESIDENT] -= 1
            outcome = EVICTED
        insert(a, t, key, now)
        a.meta[t, RESIDENT] += 1
        return outcome

    def take(a, c, key):
        """Take ``key`` out of the cache for use by a running request (vLLM: a cached block leaves
        the free queue); the tier it was in, or -1. A lower-tier copy counts as a promotion (it moves up;
        inclusive mode keeps lower copies), but no bytes read: a block the request was served was read by
        its load (``KVCacheManager.load``), and one it was not (a partial last block, a block past the served
        prefix) is computed in HBM, its lower copy superseded, not read.

        A block taken out of the top tier keeps its policy history there (``policies/base``: the take rule) until
        the request frees it (``use``): a slot of the tier, filed under the block in the directory but in none of
        the policy's lists (``TAKEN_WHERE``), holding the history; so memory follows the blocks in use and finding
        it again is one directory probe. (Not when the removal left a ghost entry of the block: ARC's or S3-FIFO's
        chosen victim, taken instead; the policy then remembers it its own way.)"""
        if c.span >= 0:
            return span_take(a, c, key)
        level, s = _find(a, c, key)
        if level < 0:
            return -1
        t = c.tiers[level]
        if level > 0:
            a.meta[t, STAT0 + PROMOTIONS] += 1
        if level == 0 or not c.inclusive:
            kept = history_c(a, t, s) if keeps and level == 0 else -1
            remove_c(a, t, s)
            a.meta[t, RESIDENT] -= 1
            if kept >= 0 and slot_of(a, t, key) < 0:
                p = new_slot(a, t, key)
                set_where(a.slots, p, TAKEN_WHERE)
                a.slots[p, PREV] = kept
                a.meta[t, TAKEN] += 1
        return level

    def resize(a, c, capacity):
        """Set the top tier's capacity; its overflow is demoted (evicted when inclusive or alone)."""
        if c.span >= 0:
            span_resize(a, c, capacity)
            return
        top = c.tiers[0]
        a.meta[top, CAP] = max(0, capacity)
        while a.meta[top, RESIDENT] > a.meta[top, CAP]:
            v = victim_c(a, top, -1)
            if v < 0:  # (every block pinned: none is outside a prefix replay, which never resizes)
                break
            key = a.slots[v, KEY]
            remove_c(a, top, v)
            a.meta[top, RESIDENT] -= 1
            if c.inclusive or len(c.tiers) == 1:
                a.meta[top, STAT0 + EVICTIONS] += 1
            else:
                a.meta[top, STAT0 + DEMOTIONS] += 1
                now = c.last_pos[key] if len(c.last_pos) and c.last_pos[key] >= 0 else 0
                _use(a, c, key, now, True, DEMOTE)

    def hook(a, t, op, key, now):
        """One policy hook on tier ``t`` by block id; ``HOOK_VICTIM`` returns the victim's key, ``HOOK_HISTORY``
        the block's history; ``HOOK_CARRY`` gives the block the history passed as ``now``; ``HOOK_PIN`` pins it
        (``now`` 1) or unpins it (0)."""
        if op == HOOK_ACCESS:
            access_c(a, t, resident(a, t, key), now)
        elif op == HOOK_INSERT:  # of a resident key (a shared tier receiving another cache's copy): readmit
            s = resident(a, t, key)
            if s >= 0:
                readmit_c(a, t, s, now)
            else:
                insert_c(a, t, key, now)
                a.meta[t, RESIDENT] += 1
        elif op == HOOK_REMOVE:
            remove_c(a, t, resident(a, t, key))
            a.meta[t, RESIDENT] -= 1
        elif op == HOOK_HISTORY:
            return history_c(a, t, resident(a, t, key))
        elif op == HOOK_CARRY:
            carry_c(a, t, resident(a, t, key), now)
        elif op == HOOK_PIN:  # ``now``: 1 pins, 0 unpins
            set_pin(a.slots, resident(a, t, key), now != 0)
        else:
            if a.meta[t, RESIDENT] == 0:
                raise ValueError("victim() of an empty tier")
            v = victim_c(a, t, key)
            return a.slots[v, KEY] if v >= 0 else -1  # (-1: every block is pinned)
        return -1

    return {"use": use, "use_single": use_single, "take": take, "resize": resize, "hook": hook}


_BUILT: dict[type, dict] = {}


def _for(arena) -> dict:
    cls = arena.instance_class
    if cls not in _BUILT:
        _BUILT[cls] = _operations(*hooks_for(cls))
    return _BUILT[cls]


# Stubs that compiled code calls; each overload compiles the policy's own version.
def _use(a, c, key, now, admit, mode):
    raise NotImplementedError("compiled code only")


def _use_inlined(a, c, key, now, admit, mode):
    """``_use`` compiled into its caller: the plain replay's one call site, where a call per access
    (passing every field of the arena's arrays) costs as much as the work. One site only: each
    inlined copy of the policy's hooks adds compile time."""
    raise NotImplementedError("compiled code only")


def _use_single_inlined(a, t, key, now, admit):
    """``use_single``, compiled into ``replay_single``'s loop (its one call site)."""
    raise NotImplementedError("compiled code only")


def _take(a, c, key):
    raise NotImplementedError("compiled code only")


def _resize(a, c, capacity):
    raise NotImplementedError("compiled code only")


def _hook(a, t, op, key, now):
    raise NotImplementedError("compiled code only")


@overload(_use, jit_options=_OPTIONS)
def _use_for(a, c, key, now, admit, mode):
    return _for(a)["use"]


@overload(_use_inlined, jit_options=_OPTIONS, inline="always")
def _use_inlined_for(a, c, key, now, admit, mode):
    return _for(a)["use"]


@overload(_use_single_inlined, jit_options=_OPTIONS, inline="always")
def _use_single_inlined_for(a, t, key, now, admit):
    return _for(a)["use_single"]


@overload(_take, jit_options=_OPTIONS)
def _take_for(a, c, key):
    return _for(a)["take"]


@overload(_resize, jit_options=_OPTIONS)
def _resize_for(a, c, capacity):
    return _for(a)["resize"]


@overload(_hook, jit_options=_OPTIONS)
def _hook_for(a, t, op, key, now):
    return _for(a)["hook"]
