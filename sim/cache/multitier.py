"""The multi-tier cache manager: HBM → DRAM → SSD → EIC, exclusive or inclusive.

A block moves by named operations, each counted per tier:
- *hit*: found in a tier at lookup;
- *promote*: a hit in a lower tier moves the block to the top tier (exclusive) or
  copies it there (inclusive);
- *demote*: making room in tier i moves its victim to tier i+1 (exclusive);
- *evict*: the victim leaves the cache (last tier, or any tier when inclusive).
Inclusive mode writes a new block through to every tier.

Two access semantics:
- ``plain``: every block of every request is looked up (libCacheSim's model);
- ``prefix``: vLLM's: a request reuses its longest cached prefix; blocks after the
  first miss are recomputed and re-inserted. Its blocks are then touched deepest
  first, so a prefix is always more recent than its continuation and a recency
  policy evicts leaves before their parents (as vLLM frees a request's blocks in
  reverse order). Its hits are held (pinned) until their touch: no victim of its
  own tail (``engine.replay``).

The operations run compiled (``sim.cache.engine``), one call per request's block chain;
a cache with a tier whose policy has no kernel runs the generic Python path
(``sim.cache.hooked``) behind the same interface. ``build_cache`` picks.

Every cache's tiers live in one ``TierArena``, which also indexes which tiers hold each block
(``holders``, ``holders_chain``: any cache's tiers, for routing across instances). The index
covers tiers run by compiled kernels; a tier of a Python-only policy keeps a Python set.
When an operation needs more room than the arena's arrays have, the compiled call returns
before changing anything, the arena grows, and the call runs again.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

import numpy as np

from sim.cache import engine
from sim.cache.arena_layout import CacheView
from sim.cache.tiers import Tier
from trace.request import BLOCK_ID_DTYPE, KEY_LIMIT

_EMPTY = np.zeros(0, dtype=np.int64)
_NO_COPIES = np.iinfo(np.int64).max  # ``CacheView.copy_from`` of a cache whose keys are all blocks
# ``lookup_prefix``: keys asked at first whether they are held; a compiled call costs ~5 us, some 50 dict lookups
HELD_CHUNK = 32


@dataclass
class CachePlugins:
    """Admission and prefetch plug-ins.

    - ``selective_write_depth`` k: only blocks at prefix depth ≤ k (the first k blocks of
      a prompt) are kept in the cache; deeper blocks are computed and used but not cached.
    - ``session_prefetch``: before a session's turn, its previous turn's blocks are brought
      up from lower tiers into HBM.
    """

    selective_write_depth: int | None = None
    session_prefetch: bool = False

    @property
    def inactive(self) -> bool:
        return self.selective_write_depth is None and not self.session_prefetch


class MultiTierCache:
    """Tiers top down (in one ``TierArena``) sharing one block-id space, run by compiled kernels.

    ``track_positions``: remember each block's last use position (clairvoyant policies in a
    lower tier need it for a demoted block); needs ``num_blocks``, the block-id space. ``copy_from``: keys from
    this one on are a Gated DeltaNet hybrid's states, each ``copy_bytes`` in a tier's byte counts (not a block's).
    """

    def __init__(self, tiers: list[Tier], block_bytes: int, inclusive: bool = False, track_positions: bool = False,
                 num_blocks: int | None = None, copy_from: int | None = None, copy_bytes: int | None = None,
                 read_copies: int = 1, span: bool = False):
        if not tiers:
            raise ValueError("a cache needs at least one tier")
        if any(t.arena is not tiers[0].arena for t in tiers):
            raise ValueError("a cache's tiers must share one arena")
        if track_positions and num_blocks is None:
            raise ValueError("tracking block positions needs num_blocks (the block-id space)")
        self.tiers = tiers
        self.block_bytes = block_bytes
        self.copy_bytes = block_bytes if copy_bytes is None else copy_bytes  # (``KVCacheManager.load``)
        self.read_copies = read_copies  # reads of a stored key one load makes (``sim.cache.tiers.read_copies``)
        self.inclusive = inclusive
        self.arena = tiers[0].arena
        for tier in tiers:
            self.arena.add_user(tier.index)
        # the block-id space compiled code indexes by id: positions tracked, or the arena's (its directory's heads
        # are direct-mapped over it, or will be as it grows)
        bounds = [num_blocks] if track_positions else []
        bounds += [self.arena.max_keys] if self.arena.max_keys is not None else []
        self._num_blocks = min(bounds) if bounds else None
        last_pos = self.arena.last_positions(num_blocks) if track_positions else _EMPTY
        self.span = self._span_tier() if span and spannable(tiers, inclusive) else -1
        indices = np.array([t.index for t in tiers], dtype=np.int64)
        self.view = CacheView(indices, inclusive, block_bytes, last_pos,
                              _NO_COPIES if copy_from is None else copy_from, self.copy_bytes, read_copies,
                              stored_bytes(tiers, block_bytes, self.copy_bytes), self.span,
                              np.concatenate([[self.span], indices]) if self.span >= 0 else indices)
        self._lower = self.view._replace(tiers=np.ascontiguousarray(self.view.tiers[1:]),  # ``lower_level``
                                         stored=np.ascontiguousarray(self.view.stored[1:]))
        self._previous: np.ndarray | None = None  # session prefetch: each session's last request
        # the top tier's capacity as ``resize_top`` last left it with nothing to demote, until a use may admit to it
        # (a take only removes): asking for it again changes nothing (``settled``)
        self._sized: int | None = None

    def _span_tier(self) -> int:
        """Add the arena tier of the one policy spanning this cache's tiers (``sim.cache.span``): their policy, of
        their summed capacity."""
        from sim.cache.policies import POLICIES

        arena, tiers = self.arena, self.tiers
        total = sum(arena.built_capacity(t.index) for t in tiers)
        bound = total if arena.max_keys is None else min(total, arena.max_keys)
        span = arena.add_tier(arena.kind(tiers[0].index), total, POLICIES[tiers[0].policy].slots(bound))
        arena.add_user(span)
        arena.set_capacity(span, sum(arena.capacity(t.index) for t in tiers))
        return span

    def _keys(self, keys) -> np.ndarray:
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        _check_ids(keys, self._num_blocks)
        return keys

    def _reserve(self) -> None:
        """Grow the arena for the block uses an entry point just asked room for."""
        self.arena.reserve(self.view.guard, self.arena.wanted)

    # ------------------------------------------------------------------ queries

    def holders(self, key: int) -> np.ndarray:
        """Arena tiers (indices, any cache's) in which ``key`` is resident (``TierArena.holders``)."""
        return self.arena.holders(key)

    def holders_chain(self, keys) -> tuple[int, np.ndarray, np.ndarray]:
        """Holders of each block of a chain up to the first held nowhere (``TierArena.holders_chain``)."""
        return self.arena.holders_chain(keys)

    def find(self, key: int) -> int:
        """Index of the topmost tier holding ``key``, or -1. No state changes."""
        out = np.empty(1, dtype=np.int8)
        engine.lookup(self.arena.state, self.view, self._keys([key]), 0, False, out)
        return int(out[0])

    def find_each(self, keys, held: Container[int] = ()) -> np.ndarray:
        """``find`` of each of ``keys`` in one compiled call, but 0 for a key ``held`` (in use by running requests,
        counted as the top tier, as ``lookup_prefix`` counts it). No state changes."""
        keys = self._keys(keys)
        out = np.empty(len(keys), dtype=np.int8)
        engine.lookup(self.arena.state, self.view, keys, 0, False, out)
        if getattr(held, "refs", held):
            out[held_mask(keys, held)] = 0
        return out

    def lower_level(self, key: int) -> int:
        """The topmost tier below the top one holding ``key`` (its index in this cache), or -1: a copy a request
        can load from although the top tier holds the block too (inclusive tiers). No state changes."""
        if len(self.tiers) < 2:
            return -1
        out = np.empty(1, dtype=np.int8)
        engine.lookup(self.arena.state, self._lower, self._keys([key]), 0, False, out)
        return int(out[0]) + 1 if out[0] >= 0 else -1

    def resident(self, level: int) -> set[int]:
        """Block ids resident in tier ``level`` (tests, inspection)."""
        return set(self.arena.resident_keys(self.tiers[level].index).tolist())

    def lookup_prefix(self, keys, held: Container[int] = ()) -> np.ndarray:
        """The tier of each block of the longest prefix of ``keys`` that is ``held`` (in use by
        running requests: counted as the top tier, whatever copies lower tiers keep) or cached.
        No state changes."""
        keys = self._keys(keys)
        out = np.empty(len(keys), dtype=np.int8)
        held = getattr(held, "refs", held)
        if not held:
            return out[:engine.lookup_held(self.arena.state, self.view, keys, np.zeros(len(keys), np.bool_), out)]
        # Whether a key is held is asked in Python, a dict lookup a key, and the prefix ends at the first block neither
        # held nor cached (5% to 18% of the keys asked, in --preset smoke serving runs), so the keys are asked in
        # chunks, each twice the last, until one ends early: the same prefix, the keys after it not asked.
        start, size = 0, HELD_CHUNK
        while start < len(keys):
            stop = min(len(keys), start + size)
            found = engine.lookup_held(self.arena.state, self.view, keys[start:stop],
                                       held_mask(keys[start:stop], held), out[start:stop])
            if start + found < stop:
                return out[:start + found]
            start, size = stop, 2 * size
        return out

    # --------------------------------------------------------------- operations

    def touch(self, key: int, now: int, admit: bool = True) -> int:
        """Use ``key`` at stream position ``now``: refresh it, promote it, or admit it to the top tier.

        Returns the tier it was found in (-1: a miss, admitted unless ``admit`` is False).
        """
        out = np.empty(1, dtype=np.int8)
        keys, positions = self._keys([key]), np.array([now], dtype=np.int64)
        self._sized = None
        while not engine.touch_chain(self.arena.state, self.view, keys, positions, admit, engine.USE, out):
            self._reserve()
        return int(out[0])

    def touch_chain(self, keys, positions, freed: bool = False) -> np.ndarray:
        """``touch`` each key at its stream position, in order; the tier each was in. ``freed``: blocks a running
        request let go, whose content is in HBM: a lower tier's copy is moved or copied up, not read."""
        keys = self._keys(keys)
        out = np.empty(len(keys), dtype=np.int8)
        positions = np.ascontiguousarray(positions, dtype=np.int64)
        mode = engine.UNREAD if freed else engine.USE
        self._sized = None
        while not engine.touch_chain(self.arena.state, self.view, keys, positions, True, mode, out):
            self._reserve()
        return out

    def take(self, key: int) -> int:
        """Remove ``key`` from the cache for use by a running request (vLLM: a cached block leaves the
        free queue); returns the tier it was in, or -1. A lower-tier copy counts as a promotion (no bytes
        read: the request's load reads what it is served); inclusive mode keeps lower copies."""
        return int(self.take_chain([key])[0])

    def take_chain(self, keys) -> np.ndarray:
        """``take`` each key in order; the tier each was in."""
        keys = self._keys(keys)
        out = np.empty(len(keys), dtype=np.int8)
        while not engine.take_chain(self.arena.state, self.view, keys, out):
            self._reserve()
        return out

    def settled(self, capacity: int) -> bool:
        """Whether ``resize_top(capacity)`` is known to change nothing (False: it may)."""
        return capacity == self._sized

    def fits(self, capacity: int) -> bool:
        """Whether the top tier's blocks fit in ``capacity``: ``resize_top(capacity)`` would push none out now (False
        where tiers are spanned: the union's overflow is not judged here)."""
        return self.span < 0 and self.arena.resident_count(self.tiers[0].index) <= max(0, capacity)

    def resize_top(self, capacity: int) -> bool:
        """Set the top tier's capacity (free HBM blocks change as requests run), at most the capacity
        it was built with (its slots are sized to it); overflow is demoted. False: nothing was demoted (nothing
        overflowed), so nothing was written below either."""
        if capacity == self._sized:
            return False
        top = self.tiers[0].index
        arena = self.arena
        if capacity == arena.capacity(top) and arena.resident_count(top) <= capacity:
            self._sized = capacity
            return False  # (the compiled call would change nothing)
        if capacity > arena.built_capacity(top):
            raise ValueError(f"top tier capacity {capacity} exceeds the {arena.built_capacity(top)} it was built with")
        if arena.resident_count(top) <= max(0, capacity):
            # nothing overflows: all the compiled resize would do is store the capacity (``operations.resize``), and
            # most resizes of a serving run are these (blocks freed, or taken from the pool's unused ones while
            # the cache holds fewer): a store here skips the compiled call's dispatch (~5 us each)
            arena.set_capacity(top, max(0, capacity))
            if self.span >= 0:  # (the union's capacity follows the top tier's)
                arena.set_capacity(self.span, sum(arena.capacity(t.index) for t in self.tiers))
            demoted = False
        else:
            while not engine.resize_top(arena.state, self.view, capacity):
                self._reserve()
            demoted = True
        self._sized = capacity if capacity >= 0 else None  # (resized: nothing overflows it now)
        return demoted

    # ------------------------------------------------------------------ replays

    def replay(self, blocks: np.ndarray, offsets: np.ndarray, hit_tier: np.ndarray, first: int, last: int,
               prefix: bool, plugins: CachePlugins | None = None, sessions: np.ndarray | None = None) -> None:
        """Replay requests ``first``…``last`` (CSR ``offsets`` into ``blocks``); record each access's hit tier.

        ``prefix=False``: every block is looked up (libCacheSim's model). ``prefix=True``:
        vLLM's semantics: hits are the request's longest cached prefix, then its blocks are
        touched deepest first so a prefix is always more recent than its continuation. A lower
        tier is read once per hit it serves, where the lookup found it (plus session prefetches);
        the touches read nothing (a block past the first miss is recomputed, not loaded).
        """
        plugins = plugins or CachePlugins()
        previous = _EMPTY
        if plugins.session_prefetch and sessions is not None and len(sessions):
            if self._previous is None:
                self._previous = np.full(max(0, int(sessions.max())) + 1, -1, dtype=np.int64)
            previous = self._previous
        depth = -1 if plugins.selective_write_depth is None else plugins.selective_write_depth
        sessions = _EMPTY if sessions is None else np.ascontiguousarray(sessions, dtype=np.int64)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        blocks = np.asarray(blocks)
        # int32, as a trace holds its stream (no copy; ids past int32 were refused with the trace or by the arena)
        _check_ids(blocks[offsets[first]:offsets[last]], KEY_LIMIT if self._num_blocks is None else self._num_blocks)
        blocks = np.ascontiguousarray(blocks, dtype=BLOCK_ID_DTYPE)
        plain = not prefix and not len(previous)
        single = plain and len(self.tiers) == 1 and self.arena.users(self.tiers[0].index) == 1
        self._sized = None
        while first < last:
            if single:
                first = engine.replay_single(self.arena.state, self.view, blocks, offsets, hit_tier, first, last, depth)
            elif plain:
                first = engine.replay_plain(self.arena.state, self.view, blocks, offsets, hit_tier, first, last, depth)
            else:
                first = engine.replay(self.arena.state, self.view, blocks, offsets, hit_tier, first, last, prefix,
                                      depth, sessions, previous)
            if first < last:
                self._reserve()


# Policies whose per-tier exclusive hierarchy is already their span (the same hits and tier contents at every
# step), so a span would only double the list work: LRU of the summed capacity is the exclusive LRU hierarchy (DEMOTE, Wong & Wilkes, USENIX ATC 2002;
# tests/test_span.py builds both and compares them step by step). Tiered LRU over 10 M Mooncake accesses: 2.35 s of
# CPU spanned, 1.50 s per tier.
SAME_WITHOUT_SPAN = frozenset({"lru"})


def _check_ids(keys: np.ndarray, bound: int | None) -> None:
    """Refuse an id of ``keys`` (an integer array) outside [0, ``bound``) (None: no bound). One pass: read as unsigned
    of its width, a negative id is larger than any bound."""
    if bound is not None and len(keys) and keys.view(f"u{keys.dtype.itemsize}").max() >= bound:
        raise ValueError(f"block id outside the cache's block-id space [0, {bound})")


def spannable(tiers: list[Tier], inclusive: bool) -> bool:
    """Whether one policy spans ``tiers`` (``sim.cache.span``): an exclusive hierarchy of two tiers or more, all
    run by one policy, that no other cache shares (a shared lower tier is part of several caches' unions), and one
    the span changes (not ``SAME_WITHOUT_SPAN``)."""
    arena = tiers[0].arena
    return (not inclusive and len(tiers) > 1 and len({t.policy for t in tiers}) == 1
            and tiers[0].policy not in SAME_WITHOUT_SPAN and all(arena.users(t.index) == 1 for t in tiers))


def held_mask(keys: np.ndarray, held: Container[int]) -> np.ndarray:
    """Which of ``keys`` are in ``held``; a container with ``refs`` (a ``BlockPool``: its blocks in use and their
    reference counts) is asked through that dict directly."""
    held = getattr(held, "refs", held)
    if not held:
        return np.zeros(len(keys), dtype=np.bool_)
    return np.fromiter(map(held.__contains__, keys.tolist()), dtype=np.bool_, count=len(keys))


def stored_bytes(tiers: list[Tier], block_bytes: int, copy_bytes: int) -> np.ndarray:
    """``CacheView.stored``: what each of ``tiers`` stores and writes for a block and a copy, ``block_bytes`` and
    ``copy_bytes`` where the tier sets none (``Tier.stored_block``)."""
    return np.array([[t.stored_block or block_bytes, t.stored_copy or copy_bytes] for t in tiers], dtype=np.int64)


def build_cache(tiers: list[Tier], block_bytes: int, inclusive: bool = False, track_positions: bool = False,
                num_blocks: int | None = None, copy_from: int | None = None, copy_bytes: int | None = None,
                read_copies: int = 1, span: bool = False):
    """A ``MultiTierCache`` when every tier's policy has a compiled kernel, else the generic path (whose policies,
    ranking blocks by their next use, never serve a Gated DeltaNet hybrid's states: ``copy_from`` is refused).
    ``block_bytes``: a block as a lower tier stores and writes it; a load reads it ``read_copies`` times."""
    if all(t.compiled for t in tiers):
        return MultiTierCache(tiers, block_bytes, inclusive, track_positions, num_blocks, copy_from, copy_bytes,
                              read_copies, span)
    if copy_from is not None:
        raise ValueError("the generic cache path counts every key as a block: states need a compiled policy")
    from sim.cache.hooked import HookedMultiTierCache

    return HookedMultiTierCache(tiers, block_bytes, inclusive, track_positions, read_copies=read_copies, span=span)
