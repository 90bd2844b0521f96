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

import numpy as np

from sim.tiers import Tier


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

    def occupancy(self) -> list[int]:
        return [len(t.resident) for t in self.tiers]

    # --------------------------------------------------------------- operations

    def touch(self, key: int, now: int) -> int:
        """Use ``key`` at stream position ``now``: refresh it, promote it, or admit it to the top tier.

        Returns the tier it was found in (-1: a miss, now admitted).
        """
        if self.last_pos is not None:
            self.last_pos[key] = now
        level = self.find(key)
        tiers = self.tiers
        if level == 0:
            tiers[0].policy.on_access(key, now)
            return 0
        if level > 0:
            tier = tiers[level]
            tier.stats.promotions += 1
            tier.stats.bytes_read += self.block_bytes
            if self.inclusive:
                tier.policy.on_access(key, now)
                for upper in range(level - 1, -1, -1):
                    self._insert(upper, key, now)
            else:
                tier.policy.on_remove(key)
                tier.resident.remove(key)
                self._insert(0, key, now)
            return level
        if self.inclusive:
            for i in range(len(tiers)):
                self._insert(i, key, now)
        else:
            self._insert(0, key, now)
        return -1

    def _insert(self, level: int, key: int, now: int) -> None:
        """Admit ``key`` to tier ``level``; its victim is demoted (exclusive) or evicted (inclusive/last)."""
        tiers = self.tiers
        while True:
            tier = tiers[level]
            victim = None
            if len(tier.resident) >= tier.capacity:
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
            if self.last_pos is not None:
                now = self.last_pos[key]

    # ------------------------------------------------------------------ replays

    def replay_plain(self, stream: np.ndarray, hit_tier: np.ndarray, start: int = 0) -> None:
        """Look up every block of ``stream`` (positions ``start``…); record the tier of each hit (-1 miss)."""
        if len(self.tiers) == 1 and self.last_pos is None:
            self._replay_single_tier(stream, hit_tier, start)
            return
        touch = self.touch
        stats = [t.stats for t in self.tiers]
        for offset, key in enumerate(stream.tolist()):
            level = touch(key, start + offset)
            hit_tier[start + offset] = level
            if level >= 0:
                stats[level].hits += 1

    def _replay_single_tier(self, stream: np.ndarray, hit_tier: np.ndarray, start: int) -> None:
        """``touch`` unrolled for one tier (the policy study's hot loop); same result as the general path."""
        tier = self.tiers[0]
        resident, policy, capacity = tier.resident, tier.policy, tier.capacity
        on_access, on_insert, on_remove, victim = policy.on_access, policy.on_insert, policy.on_remove, policy.victim
        add, remove = resident.add, resident.remove
        hits = evictions = 0
        now = start
        for key in stream.tolist():
            if key in resident:
                on_access(key, now)
                hit_tier[now] = 0
                hits += 1
            else:
                if len(resident) >= capacity:
                    v = victim(key)
                    on_remove(v)
                    remove(v)
                    evictions += 1
                on_insert(key, now)
                add(key)
            now += 1
        misses = len(stream) - hits
        tier.stats.hits += hits
        tier.stats.insertions += misses
        tier.stats.evictions += evictions
        tier.stats.bytes_written += misses * self.block_bytes

    def replay_prefix(self, blocks: np.ndarray, offsets: np.ndarray, hit_tier: np.ndarray,
                      first: int = 0, last: int | None = None) -> None:
        """vLLM semantics for requests ``first``…``last``: hits are each request's longest cached prefix."""
        last = len(offsets) - 1 if last is None else last
        find, touch = self.find, self.touch
        stats = [t.stats for t in self.tiers]
        for r in range(first, last):
            lo, hi = int(offsets[r]), int(offsets[r + 1])
            keys = blocks[lo:hi].tolist()
            for j, key in enumerate(keys):
                level = find(key)
                if level < 0:
                    break
                hit_tier[lo + j] = level
                stats[level].hits += 1
            for j in range(len(keys) - 1, -1, -1):  # deepest first: the prefix ends up most recent
                touch(keys[j], lo + j)
