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
  reverse order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.cache.tiers import Tier


class MultiTierCache:
    """Tiers top-down sharing one block-id space."""

    def __init__(self, tiers: list[Tier], block_bytes: int, inclusive: bool = False, track_positions: bool = False):
        if not tiers:
            raise ValueError("a cache needs at least one tier")
        self.tiers = tiers
        self.block_bytes = block_bytes
        self.inclusive = inclusive
        # Clairvoyant policies need a demoted block's last access position (its next use).
        self.last_pos: dict[int, int] | None = {} if track_positions else None

    # ------------------------------------------------------------------ queries

    def find(self, key: int) -> int:
        """Index of the topmost tier holding ``key``, or -1. No state changes."""
        for i, tier in enumerate(self.tiers):
            if key in tier.resident:
                return i
        return -1

    # --------------------------------------------------------------- operations

    def touch(self, key: int, now: int, admit: bool = True) -> int:
        """Use ``key`` at stream position ``now``: refresh it, promote it, or admit it to the top tier.

        Returns the tier it was found in (-1: a miss, admitted unless ``admit`` is False).
        """
        if self.last_pos is not None:
            self.last_pos[key] = now
        level = self.find(key)
        tiers = self.tiers
        if level == 0:
            tiers[0].policy.on_access(key, now)
            return 0
        if level > 0:
            tiers[level].stats.promotions += 1
            self._move_up(level, key, now)
            return level
        if not admit:
            return -1
        if self.inclusive:
            for i in range(len(tiers)):
                self._insert(i, key, now)
        else:
            self._insert(0, key, now)
        return -1

    def take(self, key: int) -> int:
        """Remove ``key`` from the cache for use by a running request (vLLM: a cached block leaves the
        free queue); returns the tier it was in, or -1. A lower-tier copy counts as a promotion
        (bytes read); inclusive mode keeps lower copies."""
        level = self.find(key)
        if level < 0:
            return -1
        tier = self.tiers[level]
        if level > 0:
            tier.stats.promotions += 1
            tier.stats.bytes_read += self.block_bytes
        if level == 0 or not self.inclusive:
            tier.policy.on_remove(key)
            tier.resident.remove(key)
        return level

    def resize_top(self, capacity: int) -> None:
        """Set the top tier's capacity (free HBM blocks change as requests run); overflow is demoted."""
        top = self.tiers[0]
        top.capacity = max(0, capacity)
        while len(top.resident) > top.capacity:
            victim = top.policy.victim(-1)
            top.policy.on_remove(victim)
            top.resident.remove(victim)
            if self.inclusive or len(self.tiers) == 1:
                top.stats.evictions += 1
            else:
                top.stats.demotions += 1
                self._insert(1, victim, self.last_pos.get(victim, 0) if self.last_pos is not None else 0)

    def _move_up(self, level: int, key: int, now: int) -> None:
        """Bring ``key`` from tier ``level`` to the top: moved (exclusive) or copied (inclusive)."""
        tier = self.tiers[level]
        tier.stats.bytes_read += self.block_bytes
        if self.inclusive:
            tier.policy.on_access(key, now)
            for upper in range(level - 1, -1, -1):
                self._insert(upper, key, now)
        else:
            tier.policy.on_remove(key)
            tier.resident.remove(key)
            self._insert(0, key, now)

    def _insert(self, level: int, key: int, now: int) -> None:
        """Admit ``key`` to tier ``level``; its victim is demoted (exclusive) or evicted (inclusive/last)."""
        tiers = self.tiers
        while True:
            tier = tiers[level]
            victim = None
            if tier.capacity <= 0:  # e.g. HBM fully used by running requests: nothing can be kept here
                if self.inclusive or level + 1 == len(tiers):
                    return
                level += 1
                continue
            if len(tier.resident) >= tier.capacity:
                admit = getattr(tier.policy, "admit", None)
                if admit is not None and not admit(key, now):  # declined: one tier down, or out
                    if self.inclusive or level + 1 == len(tiers):
                        return
                    level += 1
                    continue
                victim = tier.policy.victim(key)
                tier.policy.on_remove(victim)
                tier.resident.remove(victim)
            tier.policy.on_insert(key, now)
            tier.resident.add(key)
            tier.stats.insertions += 1
            tier.stats.bytes_written += self.block_bytes
            if victim is None:
                return
            if self.inclusive or level + 1 == len(tiers):
                tier.stats.evictions += 1
                return
            tier.stats.demotions += 1
            key, level = victim, level + 1
            if self.last_pos is not None:  # a block another instance placed in a shared tier: use now
                now = self.last_pos.get(key, now)

    def prefetch(self, key: int, now: int) -> bool:
        """Bring ``key`` up to the top tier ahead of use if a lower tier holds it (counted, not a hit)."""
        level = self.find(key)
        if level <= 0:
            return False
        if self.last_pos is not None:
            self.last_pos[key] = now
        self.tiers[level].stats.prefetches += 1
        self._move_up(level, key, now)
        return True

    # ------------------------------------------------------------------ replays

    def replay(self, blocks: np.ndarray, offsets: np.ndarray, hit_tier: np.ndarray, first: int, last: int,
               prefix: bool, plugins: "CachePlugins | None" = None, sessions: np.ndarray | None = None) -> None:
        """Replay requests ``first``…``last`` (CSR ``offsets`` into ``blocks``); record each access's hit tier.

        ``prefix=False``: every block is looked up (libCacheSim's model). ``prefix=True``:
        vLLM's semantics: hits are the request's longest cached prefix, then its blocks are
        touched deepest first so a prefix is always more recent than its continuation.
        """
        plugins = plugins or CachePlugins()
        if not prefix and plugins.inactive and len(self.tiers) == 1 and self.last_pos is None:
            lo, hi = int(offsets[first]), int(offsets[last])
            self._replay_single_tier(blocks[lo:hi], hit_tier, lo)
            return
        find, touch = self.find, self.touch
        stats = [t.stats for t in self.tiers]
        max_depth = plugins.selective_write_depth
        previous_turn = plugins.previous_turn
        for r in range(first, last):
            lo, hi = int(offsets[r]), int(offsets[r + 1])
            keys = blocks[lo:hi].tolist()
            session = int(sessions[r]) if previous_turn is not None and sessions is not None else -1
            if session >= 0:
                for key in previous_turn.get(session, ()):
                    self.prefetch(key, lo)
            if prefix:
                for j, key in enumerate(keys):
                    level = find(key)
                    if level < 0:
                        break
                    hit_tier[lo + j] = level
                    stats[level].hits += 1
                order = range(len(keys) - 1, -1, -1)
            else:
                order = range(len(keys))
            for j in order:
                level = touch(keys[j], lo + j, admit=max_depth is None or j < max_depth)
                if not prefix:
                    hit_tier[lo + j] = level
                    if level >= 0:
                        stats[level].hits += 1
            if session >= 0:
                previous_turn[session] = keys

    def _replay_single_tier(self, stream: np.ndarray, hit_tier: np.ndarray, start: int) -> None:
        """Plain replay through one tier with no plug-ins: ``touch`` unrolled (the policy study's hot loop).

        Gives the same result as the general path (a test checks it); it only saves calls.
        """
        tier = self.tiers[0]
        resident, policy, capacity = tier.resident, tier.policy, tier.capacity
        # A policy class may define ``replay_plain``: this same loop with its own hooks inlined
        # (LRU, FIFO). Looked up on the class itself, so a subclass never inherits one silently.
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
        tier.stats.hits += hits
        tier.stats.insertions += insertions
        tier.stats.evictions += evictions
        tier.stats.bytes_written += insertions * self.block_bytes


@dataclass
class CachePlugins:
    """Admission and prefetch plug-ins.

    - ``selective_write_depth`` k: only blocks at prefix depth ≤ k (the first k blocks of
      a prompt) are kept in the cache; deeper blocks are computed and used but not cached.
    - ``previous_turn`` (session prefetch): before a session's turn, its previous turn's
      blocks are brought up from lower tiers into HBM.
    """

    selective_write_depth: int | None = None
    previous_turn: dict[int, list[int]] | None = None

    @property
    def inactive(self) -> bool:
        return self.selective_write_depth is None and self.previous_turn is None
