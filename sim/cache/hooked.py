"""The generic multi-tier path: the same operations as the compiled engine, through Python hooks.

Used for a cache with a tier whose policy has no compiled kernel (the learned policies);
its other tiers' kernels are driven through their Python hooks (``KernelPolicy``). Tests
also run it with the pure-Python reference policies (tests/reference) as the oracle the
compiled engine is compared with, access by access. Resident sets are Python sets here;
counters live in the arena, as for compiled tiers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from sim.cache.arena_layout import (
    BYTES_READ,
    BYTES_WRITTEN,
    CAP,
    DEMOTIONS,
    EVICTIONS,
    HITS,
    INSERTIONS,
    PREFETCHES,
    PROMOTIONS,
)
from sim.cache.indexed_residents import IndexedResidents
from sim.cache.policies import EvictionPolicy
from sim.cache.span_hooks import SpanHooks
from sim.cache.tiers import Tier


class HookedMultiTierCache:
    """``MultiTierCache``'s interface over Python hooks (see ``sim.cache.multitier``)."""

    def __init__(self, tiers: list[Tier], block_bytes: int, inclusive: bool = False, track_positions: bool = False,
                 hooks: list[EvictionPolicy] | None = None, read_copies: int = 1, span: bool = False,
                 span_hook: EvictionPolicy | None = None):
        """``span``: one policy over the tiers where they allow it (``multitier.spannable``): ``span_hook``, or the
        tiers' policy at their summed capacity (``SpanHooks``)."""
        from sim.cache.multitier import spannable

        self.tiers = tiers
        for tier in tiers:
            tier.arena.add_user(tier.index)
        self.block_bytes = block_bytes
        self.copy_bytes = block_bytes  # (a hybrid's other groups' copies: sliding blocks here, never states)
        self.read_copies = read_copies  # reads of a stored block one load makes (``sim.cache.tiers.read_copies``)
        self._read_bytes = block_bytes * read_copies
        self._written = [t.stored_block or block_bytes for t in tiers]  # per level (``MultiTierCache``'s ``stored``)
        self.inclusive = inclusive
        self.policies = hooks if hooks is not None else [t.hooks for t in tiers]
        for t in tiers:  # (its first cache files a Python policy's blocks in the arena's index, where it is read;
            # a compiled policy driven through its hooks files its own)
            if t.arena.index_generic and not t.compiled and not isinstance(t.resident_set, IndexedResidents):
                t.resident_set = IndexedResidents(t.arena, t.index, t.resident_set)
        self.residents: list[set[int]] = [t.resident_set for t in tiers]  # shared with other caches of a tier
        # Clairvoyant policies need a demoted block's last access position (its next use), by any cache.
        self.last_pos: dict[int, int] | None = tiers[0].arena.last_position_map() if track_positions else None
        self._previous_turn: dict[int, list[int]] = {}
        # the top tier's policy history of each block a running request took out of it, until it is freed
        # (``policies/base``: the take rule; the compiled engine keeps it in a slot of the tier)
        self._taken: dict[int, int] = {}
        self.spanned = SpanHooks(self, span_hook) if span and spannable(tiers, inclusive) else None
        # a prefix replay's hits, held until their touch where the lookup found them (an inclusive tier's copies
        # below are not): no victim there (``engine.replay``). Per tier, and the spanning policy's: each Python
        # policy shares its set; a compiled tier's pins are set in the arena too (``pin``)
        self._held: list[set[int]] = [set() for _ in tiers]
        self._span_held: set[int] = set()
        for policy, held in zip(self.policies, self._held, strict=True):
            policy.pinned = held
        if self.spanned is not None:
            self.spanned.policy.pinned = self._span_held

    def _hold(self, key: int, level: int, on: bool) -> None:
        """Pin (``on``) or unpin ``key``, held in tier ``level``, for its policy (and the spanning one)."""
        for held in (self._held[level], self._span_held):
            if on:
                held.add(key)
            else:
                held.discard(key)
        for policy in (self.spanned.policy,) if self.spanned is not None else (self.policies[level],):
            if policy.kind:  # a compiled tier: its pins are in the arena
                policy.pin(key, on)

    @contextmanager
    def _hold_where_it_lands(self, key: int, level: int) -> Iterator[None]:
        """Around a move of ``key`` up from tier ``level``: a held block (a prefix replay's hit met again before its
        own touch: a repeated id) keeps its pin, on the copy a lookup finds after the move (exclusive: where it
        went; inclusive: its new top copy, the copies below not held, as ``engine.replay``)."""
        held = key in self._held[level]
        if held:  # (off while it moves: back on where it lands)
            self._hold(key, level, False)
        yield
        if held:
            self._hold(key, self.find(key), True)

    def _capacity(self, level: int) -> int:
        return self.tiers[level].capacity

    def _counters(self, level: int) -> np.ndarray:
        """The tier's counter row (looked up each time: the arena reallocates when tiers are added)."""
        tier = self.tiers[level]
        return tier.arena.stats_row(tier.index)

    # ------------------------------------------------------------------ queries

    def find(self, key: int) -> int:
        for i, resident in enumerate(self.residents):
            if key in resident:
                return i
        return -1

    def lower_level(self, key: int) -> int:
        for i in range(1, len(self.residents)):
            if key in self.residents[i]:
                return i
        return -1

    def resident(self, level: int) -> set[int]:
        return set(self.residents[level])

    def lookup_prefix(self, keys, held=()) -> np.ndarray:
        levels = []
        for key in keys:
            level = 0 if int(key) in held else self.find(int(key))
            if level < 0:
                break
            levels.append(level)
        return np.array(levels, dtype=np.int8)

    # --------------------------------------------------------------- operations

    def touch(self, key: int, now: int, admit: bool = True, read: bool = True) -> int:
        """A use of ``key``; ``read=False``: a lower tier's copy moves or is copied up unread (engine ``UNREAD``)."""
        if self.spanned is not None:
            return self.spanned.touch(key, now, admit, read)
        if self.last_pos is not None:
            self.last_pos[key] = now
        level = self.find(key)
        kept = self._taken.pop(key, -1) if self._taken else -1
        if level >= 0 and self.inclusive:
            self._refresh_next_use_below(level, key, now)
        if level == 0:
            self.policies[0].on_access(key, now)
            return 0
        if level > 0:
            if read:
                self._counters(level)[BYTES_READ] += self._read_bytes
            if self._move_up(level, key, now, kept):  # (declined above: it stays where it was, nothing moved)
                self._counters(level)[PROMOTIONS] += 1
            return level
        if not admit:
            return -1
        if self.inclusive:
            for i in range(len(self.tiers)):
                self._insert(i, key, now, kept=kept if i == 0 else -1)
        else:
            self._insert(0, key, now, kept=kept)
        return -1

    def touch_chain(self, keys, positions, freed: bool = False) -> np.ndarray:
        # a freed block's content is in HBM: its lower copy moves up unread
        return np.array([self.touch(int(k), int(p), read=not freed) for k, p in zip(keys, positions, strict=True)],
                        dtype=np.int8)

    def take(self, key: int) -> int:
        if self.spanned is not None:
            return self.spanned.take(key)
        level = self.find(key)
        if level < 0:
            return -1
        if level > 0:  # no bytes read: the request's load reads what it is served (``MultiTierCache.take``)
            self._counters(level)[PROMOTIONS] += 1
        if level == 0 or not self.inclusive:
            kept = self.policies[0].history(key) if level == 0 else -1
            if level == 0:  # (freed back into the top tier)
                self.policies[0].on_take(key)
            else:  # (exclusive: freed into the top tier, it leaves this one)
                self.policies[level].on_remove(key)
            self.residents[level].remove(key)
            if kept >= 0:
                self._taken[key] = kept
        return level

    def take_chain(self, keys) -> np.ndarray:
        return np.array([self.take(int(k)) for k in keys], dtype=np.int8)

    def settled(self, capacity: int) -> bool:
        """Never known here: ``resize_top`` always runs (``MultiTierCache.settled``)."""
        return False

    def fits(self, capacity: int) -> bool:
        """Whether the top tier's blocks fit in ``capacity`` (``MultiTierCache.fits``)."""
        return self.spanned is None and len(self.residents[0]) <= max(0, capacity)

    def resize_top(self, capacity: int) -> None:
        self.tiers[0].arena.state.meta[self.tiers[0].index, CAP] = max(0, capacity)
        if self.spanned is not None:
            self.spanned.settle(evict=True)
            return
        top, policy = self.residents[0], self.policies[0]
        while len(top) > self._capacity(0):
            victim = policy.victim(-1)
            policy.on_remove(victim)
            top.remove(victim)
            if self.inclusive or len(self.tiers) == 1:
                self._counters(0)[EVICTIONS] += 1
            else:
                self._counters(0)[DEMOTIONS] += 1
                self._insert(1, victim, self.last_pos.get(victim, 0) if self.last_pos is not None else 0)

    def _refresh_next_use_below(self, level: int, key: int, now: int) -> None:
        """Inclusive tiers: the copies below ``level`` learn the block's new next use when their policy ranks
        blocks by it (clairvoyant policies; the engine's ``use`` does the same): left stale, a copy's next use falls
        into the past and the farthest-next-use victim never picks it. Recency policies keep their tier's view."""
        for below in range(level + 1, len(self.tiers)):
            if self.policies[below].needs_future and key in self.residents[below]:
                self.policies[below].on_access(key, now)

    def _move_up(self, level: int, key: int, now: int, kept: int = -1) -> bool:
        """Move (exclusive) or copy (inclusive) ``key`` from tier ``level`` to the top; whether it reached a tier
        above ``level`` (False: every tier above declined it, a policy's ``admit``: it stays where it was).
        ``kept``: the top tier's history of the block since a running request took it (-1: none). A held block keeps
        its pin (``_hold_where_it_lands``)."""
        with self._hold_where_it_lands(key, level):
            if self.inclusive:
                self.policies[level].on_access(key, now)
                copied = [self._insert(upper, key, now, kept=kept if upper == 0 else -1)
                          for upper in range(level - 1, -1, -1)]
                return any(copied)
            self.policies[level].on_remove(key)
            self.residents[level].remove(key)
            return self._insert(0, key, now, origin=level, kept=kept)

    def _insert(self, level: int, key: int, now: int, origin: int = -1, kept: int = -1) -> bool:
        """Admit ``key`` to tier ``level`` (or, declined or of no capacity, the next one down, exclusive), demoting
        victims down the chain; whether ``key`` entered a tier. ``origin``: the tier ``key`` is moving up from
        (exclusive), where a key declined by every tier above goes back unwritten (False). ``kept``: the top
        tier's history of ``key`` since a running request took it: entering the top tier, it takes it on, then
        counts this use (``policies/base``: the take rule)."""
        n = len(self.tiers)
        incoming = key
        while True:
            victim = None
            if key == incoming and level == origin:  # declined above: back where it was (the room it left)
                self.policies[level].on_insert(key, now)
                self.residents[level].add(key)
                return False
            if self._capacity(level) <= 0:
                if self.inclusive or level + 1 == n:
                    return key != incoming
                level += 1
                continue
            policy, resident, counters = self.policies[level], self.residents[level], self._counters(level)
            if key in resident:  # a shared tier holding another instance's copy: the same content, so nothing
                policy.on_insert(key, now)  # enters, is written or need make room (a readmission: the policy sees it)
                return True
            if len(resident) >= self._capacity(level):
                admit = getattr(policy, "admit", None)
                if admit is not None and not admit(key, now):  # declined: one tier down, or out
                    if self.inclusive or level + 1 == n:
                        return key != incoming
                    level += 1
                    continue
                victim = policy.victim(key)
                if victim < 0 or victim in self._held[level]:  # every block here pinned (or one a policy without pins
                    if self.inclusive or level + 1 == n:  # names, the learned one): no room here (``engine``)
                        return key != incoming
                    level += 1
                    continue
                policy.on_remove(victim)
                resident.remove(victim)
            policy.on_insert(key, now)
            if kept >= 0 and level == 0 and key == incoming:  # taken, now freed: seen again
                policy.carry(key, kept)
                policy.on_access(key, now)
            resident.add(key)
            counters[INSERTIONS] += 1
            counters[BYTES_WRITTEN] += self._written[level]
            if victim is None:
                return True
            if self.inclusive or level + 1 == n:
                counters[EVICTIONS] += 1
                return True
            counters[DEMOTIONS] += 1
            key, level = victim, level + 1
            if self.last_pos is not None:  # its last use, by any cache over the arena
                now = self.last_pos.get(key, now)

    def _prefetch(self, key: int, now: int) -> None:
        if self.spanned is not None:
            self.spanned.touch(key, now, True, True, prefetch=True)
            return
        level = self.find(key)
        if level <= 0:
            return
        if self.last_pos is not None:
            self.last_pos[key] = now
        if self._move_up(level, key, now):  # (declined above: nothing moved, nothing read ahead)
            self._counters(level)[PREFETCHES] += 1
            self._counters(level)[BYTES_READ] += self._read_bytes

    # ------------------------------------------------------------------ replays

    def replay(self, blocks: np.ndarray, offsets: np.ndarray, hit_tier: np.ndarray, first: int, last: int,
               prefix: bool, plugins=None, sessions: np.ndarray | None = None) -> None:
        from sim.cache.multitier import CachePlugins

        plugins = plugins or CachePlugins()
        if not prefix and plugins.inactive and len(self.tiers) == 1 and self.last_pos is None:
            lo, hi = int(offsets[first]), int(offsets[last])
            self._replay_single_tier(blocks[lo:hi], hit_tier, lo)
            return
        max_depth = plugins.selective_write_depth
        prefetch = plugins.session_prefetch and sessions is not None
        for r in range(first, last):
            lo, hi = int(offsets[r]), int(offsets[r + 1])
            keys = blocks[lo:hi].tolist()
            session = int(sessions[r]) if prefetch else -1
            if session >= 0:
                for key in self._previous_turn.get(session, ()):
                    self._prefetch(key, lo)
            held = 0
            first_at: dict[int, int] = {}  # each hit's first position: a repeated one is held until that one's touch
            if prefix:
                for j, key in enumerate(keys):
                    level = self.find(key)
                    if level < 0:
                        break
                    first_at.setdefault(key, j)
                    self._hold(key, level, True)
                    held = j + 1
                    hit_tier[lo + j] = level
                    self._counters(level)[HITS] += 1
                    if level > 0:  # served from a lower tier: read there, once (the touches below read nothing)
                        self._counters(level)[BYTES_READ] += self._read_bytes
                order = range(len(keys) - 1, -1, -1)
            else:
                order = range(len(keys))
            for j in order:
                if j < held and first_at[keys[j]] == j:
                    self._hold(keys[j], self.find(keys[j]), False)
                level = self.touch(keys[j], lo + j, admit=max_depth is None or j < max_depth, read=not prefix)
                if not prefix:
                    hit_tier[lo + j] = level
                    if level >= 0:
                        self._counters(level)[HITS] += 1
            if session >= 0:
                self._previous_turn[session] = keys

    def _replay_single_tier(self, stream: np.ndarray, hit_tier: np.ndarray, start: int) -> None:
        """Plain replay through one tier with no plug-ins: ``touch`` unrolled. A policy class may define
        ``replay_plain``, this loop with its own hooks inlined (looked up on the class itself, so a
        subclass never inherits one silently)."""
        resident, policy, capacity = self.residents[0], self.policies[0], self._capacity(0)
        kernel = type(policy).__dict__.get("replay_plain")
        declined = 0  # misses a policy's ``admit`` kept out of the cache
        if kernel is not None:
            hit_positions, evictions = kernel(policy, stream.tolist(), resident, capacity, start)
        else:
            on_access, on_insert, on_remove, victim = policy.on_access, policy.on_insert, policy.on_remove, policy.victim
            admit = getattr(policy, "admit", None)
            add, remove = resident.add, resident.remove
            hit_positions = []
            hit = hit_positions.append
            evictions = 0
            for now, key in enumerate(stream.tolist(), start):
                if key in resident:
                    on_access(key, now)
                    hit(now)
                else:
                    if len(resident) >= capacity:
                        if admit is not None and not admit(key, now):
                            declined += 1
                            continue
                        v = victim(key)
                        on_remove(v)
                        remove(v)
                        evictions += 1
                    on_insert(key, now)
                    add(key)
        hit_tier[hit_positions] = 0  # one vectorised store instead of a numpy item store per hit
        hits = len(hit_positions)
        insertions = len(stream) - hits - declined
        counters = self._counters(0)
        counters[HITS] += hits
        counters[INSERTIONS] += insertions
        counters[EVICTIONS] += evictions
        counters[BYTES_WRITTEN] += insertions * self._written[0]
