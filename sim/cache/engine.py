"""The compiled multi-tier cache: HBM → DRAM → SSD → EIC operations over a ``TierArena``.

The named operations of ``sim.cache.multitier`` (hit, promote, demote, evict, exclusive or
inclusive, write-through), compiled. A cache is a ``CacheView``: its tiers' indices in the
arena, top down (instances share their lower tiers by sharing indices). Entry points work
on a whole request's block chain, so Python pays one call per request, not per block:

- ``replay``: cache-only replay of a range of requests (plain or prefix semantics, plug-ins);
  ``replay_plain`` the same for plain semantics without plug-ins, its per-block use compiled in;
  ``replay_single`` that for a cache of one tier no other cache shares;
- ``lookup``: the tier of each block of a chain (or of its longest cached prefix); ``lookup_held`` that
  prefix where blocks in use count as the top tier's;
- ``touch_chain`` / ``take_chain``: use / take out a chain's blocks in order;
- ``resize_top``: set the top tier's capacity, demoting the overflow;
- ``hook``: one policy hook by block id (for the generic Python path and tests);
- ``holders`` / ``holders_chain`` (from ``sim.cache.arena``): the tiers holding a block, or
  each block of a chain up to the first held nowhere (the block index across tiers).

Entry points that may add blocks first check that the arena's arrays have room for them
(``arena.room``); if not they return at once, before any change (``replay``: before the
request it stopped at), and the Python wrapper grows the arena and calls again.

The operations are built once per policy (``sim.cache.operations``) with that policy's hooks inlined,
and chosen at compile time from the arena's class (``policies/dispatch.py``): each entry point
compiles once per policy and never dispatches per access.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from sim.cache.arena import room
from sim.cache.arena_layout import (
    BYTES_READ,
    BYTES_WRITTEN,
    EVICTIONS,
    HITS,
    INSERTIONS,
    RESIDENT,
    STAT0,
    CacheView,
    entry,
    kernel,
    pinned,
    set_pin,
)
from sim.cache.block_index import holders, holders_chain, resident
from sim.cache.operations import (
    EVICTED,
    HIT,
    HOOK_ACCESS,
    HOOK_CARRY,
    HOOK_INSERT,
    MISS,
    _hook,
    _resize,
    _take,
    _use,
    _use_inlined,
    _use_single_inlined,
)
from sim.cache.span import PREFETCH, UNREAD, USE
from sim.cache.span import find as _find
from sim.jit import flush_when_sources_change

NO_ROOM = -2  # ``hook``: the arena must grow first (``TierArena.reserve``)
__all__ = ["CacheView", "holders", "holders_chain", "hook", "lookup", "lookup_held", "replay", "replay_plain",
           "replay_single", "resize_top", "take_chain", "touch_chain"]


# ------------------------------------------------------------------ entry points


@kernel
def _hold(a, c, key, s, on):
    """Pin (``on``) or unpin ``key``: its slot ``s`` in the tier that holds it and, where one policy spans the tiers,
    its slot there (the policy's victims pass over pinned blocks, ``arena_layout.pinned``)."""
    if s < 0:  # (not held: a pinned block is never a victim, so it is where its lookup found it)
        return
    set_pin(a.slots, s, on)
    if c.span >= 0:
        set_pin(a.slots, resident(a, c.span, key), on)


@kernel
def _first_at(blocks, lo, j, key):
    """Whether position ``j`` is ``key``'s first in its request (positions ``lo``..``j``)."""
    for i in range(lo, j):
        if blocks[i] == key:
            return False
    return True


@entry
def replay(a, c, blocks, offsets, hit_tier, first, last, prefix, depth, sessions, previous):
    """Replay requests ``first``…``last`` (CSR ``offsets`` into ``blocks``); record each access's hit tier.
    ``blocks``: int32 ids, as a trace holds its stream (no int64 copy of it); each is widened to int64 as it is
    read, so the operations compile for the int64 keys every other entry point takes (one copy of them).

    ``prefix``: a request's hits are its longest cached prefix, each read out of the tier the lookup found
    it in (a lower tier's hit: one block's bytes read there), then its blocks are touched deepest first,
    reading nothing (``UNREAD``): a hit was read by the lookup, and a block past the first miss is recomputed;
    else every block is looked up. A hit is pinned where the lookup found it (``_hold``) until its own touch, so
    no victim of the blocks before it (the tail's admissions, their demotions, a deeper hit's promotion) is one:
    vLLM holds a request's cached blocks (``ref_cnt`` > 0, ``KVCacheManager.allocate_slots`` touches them before
    taking new blocks from the free queue), so its allocations never evict them; without the pin a hit evicted by
    its own request's tail was inserted again by its touch. A request repeating an id holds that one block until
    the touch of its first position (the last of its touches), met again before it (moved up, or a hit position
    past the first) held where it lands (``operations.use``). Where every block of a tier is pinned, a block that
    would enter it goes on down, or is not kept (``operations.use``). ``depth`` >= 0: selective write (only the
    first ``depth`` blocks of a prompt are admitted). ``previous`` (per session, the request
    index of its last turn, -1: none; empty: no session prefetch): before a turn, its
    session's previous turn is prefetched. Returns the request it stopped at: ``last``, or
    an earlier one whose uses the arena has no room for yet.
    """
    for r in range(first, last):
        lo, hi = offsets[r], offsets[r + 1]
        session = sessions[r] if len(previous) else -1
        p = previous[session] if session >= 0 else -1
        uses = hi - lo + (offsets[p + 1] - offsets[p] if p >= 0 else 0)
        if not room(a, c.guard, uses):
            return r
        if p >= 0:
            for j in range(offsets[p], offsets[p + 1]):
                _use(a, c, np.int64(blocks[j]), lo, True, PREFETCH)
        if prefix:
            held = lo  # the hits: blocks lo..held-1
            repeats = False  # a hit found held already: an id repeated within the hits (none is held between requests)
            for j in range(lo, hi):
                key = np.int64(blocks[j])
                level, s = _find(a, c, key)
                if level < 0:
                    break
                repeats = repeats or pinned(a.slots, s)
                _hold(a, c, key, s, True)
                held = j + 1
                hit_tier[j] = level
                t = c.tiers[level]
                a.meta[t, STAT0 + HITS] += 1
                if level > 0:  # served from a lower tier: read there, once
                    a.meta[t, STAT0 + BYTES_READ] += c.block_bytes * c.read_copies
            for j in range(hi - 1, lo - 1, -1):
                key = np.int64(blocks[j])
                if j < held and (not repeats or _first_at(blocks, lo, j, key)):  # (a repeated hit: at its first position)
                    _hold(a, c, key, _find(a, c, key)[1], False)
                _use(a, c, key, j, depth < 0 or j - lo < depth, UNREAD)
        else:
            for j in range(lo, hi):
                level = _use(a, c, np.int64(blocks[j]), j, depth < 0 or j - lo < depth, USE)
                hit_tier[j] = level
                if level >= 0:
                    a.meta[c.tiers[level], STAT0 + HITS] += 1
        if session >= 0:
            previous[session] = r
    return last


@entry
def replay_plain(a, c, blocks, offsets, hit_tier, first, last, depth):
    """``replay`` of plain semantics without session prefetch (libCacheSim's model, cache-only's usual
    case), with the use compiled into the loop (``_use_inlined``). The same operations as ``replay``."""
    for r in range(first, last):
        lo, hi = offsets[r], offsets[r + 1]
        if not room(a, c.guard, hi - lo):
            return r
        for j in range(lo, hi):
            level = _use_inlined(a, c, np.int64(blocks[j]), j, depth < 0 or j - lo < depth, USE)
            hit_tier[j] = level
            if level >= 0:
                a.meta[c.tiers[level], STAT0 + HITS] += 1
    return last


@entry
def replay_single(a, c, blocks, offsets, hit_tier, first, last, depth):
    """``replay_plain`` for a cache of one tier that no other cache uses (cache-only's usual case):
    the same hooks in the same order, about twice as fast (a use compiled in is a fraction of the
    multi-tier one's code, and the tier's counters are kept in locals)."""
    t = c.tiers[0]
    hits = kept = evicted = 0
    stop = last
    for r in range(first, last):
        lo, hi = offsets[r], offsets[r + 1]
        if not room(a, c.guard, hi - lo):
            stop = r
            break
        for j in range(lo, hi):
            outcome = _use_single_inlined(a, t, np.int64(blocks[j]), j, depth < 0 or j - lo < depth)
            if outcome == HIT:
                hits += 1
                hit_tier[j] = 0
            else:
                hit_tier[j] = -1
                if outcome != MISS:
                    kept += 1
                    if outcome == EVICTED:
                        evicted += 1
    a.meta[t, STAT0 + HITS] += hits
    a.meta[t, STAT0 + INSERTIONS] += kept
    a.meta[t, STAT0 + BYTES_WRITTEN] += kept * c.stored[0, 0]
    a.meta[t, STAT0 + EVICTIONS] += evicted
    return stop


@entry
def lookup(a, c, keys, first, prefix, out):
    """The topmost tier holding each of ``keys[first:]`` (-1: none) into ``out``; ``prefix``: stop
    at the first miss. Returns how many keys were found before it (all of them without
    ``prefix``). No state changes."""
    n = 0
    for i in range(first, len(keys)):
        level = _find(a, c, keys[i])[0]
        out[i] = level
        if level < 0 and prefix:
            break
        n += 1
    return n


@entry
def lookup_held(a, c, keys, held, out):
    """The longest prefix of ``keys`` whose blocks are each ``held`` (``held[i]``: in use by a running request,
    counted as the top tier, 0, whatever copies the tiers keep) or cached: the tier of each into ``out``; returns its
    length. No state changes."""
    n = 0
    for i in range(len(keys)):
        if held[i]:
            out[i] = 0
        else:
            level = _find(a, c, keys[i])[0]
            if level < 0:
                break
            out[i] = level
        n += 1
    return n


@entry
def touch_chain(a, c, keys, positions, admit, mode, out):
    """Use (``mode``: ``USE`` or ``UNREAD``) ``keys[i]`` at stream position ``positions[i]``, in order;
    ``out[i]``: the tier it was in. False (and nothing done) when the arena has no room for them yet."""
    if not room(a, c.guard, len(keys)):
        return False
    for i in range(len(keys)):
        out[i] = _use(a, c, keys[i], positions[i], admit, mode)
    return True


@entry
def take_chain(a, c, keys, out):
    """Take each key out of the cache in order (see ``take``); ``out[i]``: the tier it was in, or -1.
    False (and nothing done) when the arena has no room yet for the top tier's slots keeping their history."""
    if not room(a, c.guard[:1], len(keys)):
        return False
    for i in range(len(keys)):
        out[i] = _take(a, c, keys[i])
    return True


@entry
def resize_top(a, c, capacity):
    """Set the top tier's capacity (free HBM blocks change as requests run); overflow is demoted.
    False (and nothing done) when the arena has no room for the demotions yet."""
    if not room(a, c.guard, max(0, a.meta[c.tiers[0], RESIDENT] - max(0, capacity))):
        return False
    _resize(a, c, capacity)
    return True


@entry
def hook(a, t, op, key, now):
    """One policy hook on tier ``t`` by block id (the generic path, tests); ``NO_ROOM`` when the
    arena must grow first. ``now``: the stream position, or ``HOOK_CARRY``'s history."""
    if (op == HOOK_ACCESS or op == HOOK_INSERT or op == HOOK_CARRY) and not room(a, (t,), 1):
        return NO_ROOM
    return _hook(a, t, op, key, now)


# the entry points inline code from the operations, the arena, its layout (and the trace module its KEY_LIMIT comes
# from: Belady's compiled code holds it), the block index and the policy modules
_HERE = Path(__file__).parent
flush_when_sources_change(sys.modules[__name__], [*sorted((_HERE / "policies").glob("*.py")),
                                                  *(_HERE / name for name in ("arena.py", "arena_heap.py",
                                                                              "arena_layout.py", "block_index.py",
                                                                              "operations.py", "span.py")),
                                                  _HERE.parent.parent / "trace" / "request.py"])
